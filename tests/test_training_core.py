"""Training building blocks: config parsing/validation, flow matching, LR schedule, EMA, checkpoints."""

from __future__ import annotations

import math
import textwrap

import pytest
import torch

from openwan.errors import InputError
from openwan.training.config import FlowConfig, StageConfig, config_from_dict, load_config
from openwan.training.flow_matching import noisy_latents, sample_sigmas
from openwan.training.optim import EMA, stage_lr

BASE = {
    "model": {"base": "/some/ckpt"},
    "datasets": [{"name": "clips", "manifest": "clips.jsonl"}],
    "stages": [{"name": "s1", "steps": 4, "batch_size": 2, "buckets": ["64x64x5"], "datasets": {"clips": 1.0}}],
}


def _raw(**changes):
    import copy

    raw = copy.deepcopy(BASE)
    for k, v in changes.items():
        raw[k] = v
    return raw


def test_toml_and_yaml_parse_to_the_same_config(tmp_path):
    toml = tmp_path / "run.toml"
    toml.write_text(textwrap.dedent("""
        [run]
        output_dir = "out"
        seed = 3
        [model]
        base = "ckpt"
        [[datasets]]
        name = "clips"
        manifest = "clips.jsonl"
        [[stages]]
        name = "images"
        steps = 10
        batch_size = 4
        buckets = ["64x64"]
        datasets = { clips = 1.0 }
        [[stages]]
        name = "video"
        steps = 20
        batch_size = 2
        buckets = ["64x64x17", "96x64x17"]
        lr = 5e-5
        schedule = "cosine"
        warmup_steps = 5
        datasets = { clips = 2 }
    """))
    yaml = tmp_path / "run.yaml"
    yaml.write_text(textwrap.dedent("""
        run: {output_dir: out, seed: 3}
        model: {base: ckpt}
        datasets: [{name: clips, manifest: clips.jsonl}]
        stages:
          - {name: images, steps: 10, batch_size: 4, buckets: ["64x64"], datasets: {clips: 1.0}}
          - {name: video, steps: 20, batch_size: 2, buckets: ["64x64x17", "96x64x17"], lr: 5.0e-5,
             schedule: cosine, warmup_steps: 5, datasets: {clips: 2}}
    """))
    a, b = load_config(toml), load_config(yaml)
    assert a.to_dict() == b.to_dict()
    assert a.total_steps == 30 and a.stages[1].datasets == {"clips": 2.0}
    assert a.run.output_dir == str((tmp_path / "out").resolve())  # relative to the config file
    assert a.datasets[0].manifest == str((tmp_path / "clips.jsonl").resolve())


@pytest.mark.parametrize("change, message", [
    (dict(stages=[{"name": "s", "steps": 2, "batch_size": 1, "buckets": ["64x64x5"], "datasets": {"clips": 1},
                   "lrr": 1e-4}]), r"unknown key 'stages\[0\]\.lrr' \(did you mean 'lr'\?\)"),
    (dict(stages=[{"name": "s", "steps": "ten", "datasets": {"clips": 1}}]), r"stages\[0\]\.steps must be int"),
    (dict(stages=[{"name": "s", "steps": 2, "datasets": {"other": 1}}]), r"stages\[0\]\.datasets\.other is not a "
                                                                           r"defined dataset"),
    (dict(stages=[{"name": "s", "steps": 2, "datasets": {"clips": 1}, "buckets": ["64x64x6"]}]),
     r"stages\[0\]\.buckets\[0\]"),
    (dict(flow={"timesteps": "cosine"}), r"flow\.timesteps must be one of 'uniform', 'logit_normal'"),
    (dict(stages=[{"name": "s", "steps": 2, "datasets": {"clips": 1}, "flow": {"shift": 0.0}}]),
     r"stages\[0\]\.flow\.shift must be > 0"),
    (dict(stages=[{"name": "s", "steps": 2, "datasets": {"clips": 1}, "flow": {"mask_weight": 2.0}}]),
     r"unknown key 'stages\[0\]\.flow\.mask_weight'; known keys: timesteps, logit_mean, logit_std, shift"),
    (dict(optim={"lr": -1.0}), r"optim\.lr must be > 0"),
    (dict(model={}), r"model\.base must name a checkpoint"),
    (dict(model={"base": "x", "init": "random", "dit": {"depth": 3}}), r"model\.dit\.depth is not a DiT config"),
    (dict(datasets=[]), r"datasets must list at least one"),
    (dict(runn={}), r"unknown key 'runn' \(did you mean 'run'\?\)"),
])
def test_config_errors_name_the_key(change, message):
    with pytest.raises(InputError, match=message):
        config_from_dict(_raw(**change))


def test_a_dataset_can_be_a_subset_of_a_manifest_by_field(tmp_path):
    import json

    from openwan.training.data_mixture import load_entries

    rows = [{"path": f"{i}.mp4", "caption": f"clip {i}", "motion_label": m}
            for i, m in enumerate(["moves left", "falls and bounces", "camera pans right", "grows"])]
    (tmp_path / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    p = tmp_path / "c.toml"
    p.write_text(textwrap.dedent("""
        [model]
        base = "b"
        [[datasets]]
        name = "world"
        manifest = "train.jsonl"
        [[datasets]]
        name = "motions"
        manifest = "train.jsonl"
        where = { motion_label = ["moves left", "camera pans right"] }
        [[stages]]
        name = "s"
        steps = 2
        datasets = { world = 0.5, motions = 0.5 }
    """))
    cfg = load_config(p)
    world, motions = cfg.datasets
    assert [e.caption for e in load_entries(world)] == [f"clip {i}" for i in range(4)]
    assert [e.caption for e in load_entries(motions)] == ["clip 0", "clip 2"]
    nothing = load_config(p, ['datasets.1.where={ motion_label = ["moves sideways"] }']).datasets[1]
    with pytest.raises(InputError, match=r"dataset 'motions': no rows of .*train\.jsonl pass .*moves sideways"):
        load_entries(nothing)


def test_overrides_edit_nested_keys_and_list_items(tmp_path):
    p = tmp_path / "c.toml"
    p.write_text('[model]\nbase = "b"\n[[datasets]]\nname = "d"\nmanifest = "m.jsonl"\n'
                 '[[stages]]\nname = "s"\nsteps = 100\ndatasets = { d = 1 }\n')
    cfg = load_config(p, ["stages.0.steps=3", "optim.lr=0.001", "run.precision=bf16"])
    assert cfg.stages[0].steps == 3 and cfg.optim.lr == 0.001 and cfg.run.precision == "bf16"
    with pytest.raises(InputError, match="has no item 4"):
        load_config(p, ["stages.4.steps=3"])
    with pytest.raises(InputError, match=r"stages\[0\]\.steps must be >= 1"):
        load_config(p, ["stages.0.steps=0"])


def test_flow_matching_interpolates_and_targets_velocity():
    x0, noise = torch.randn(3, 16, 2, 4, 4), torch.randn(3, 16, 2, 4, 4)
    sigma = torch.tensor([0.0, 0.5, 1.0])
    x_t, v = noisy_latents(x0, noise, sigma)
    torch.testing.assert_close(x_t[0], x0[0])
    torch.testing.assert_close(x_t[2], noise[2])
    torch.testing.assert_close(x_t[1], 0.5 * (x0[1] + noise[1]))
    # The target is dx/dσ: a finite difference along the path gives it back.
    x_t2, _ = noisy_latents(x0, noise, sigma + 1e-3)
    torch.testing.assert_close((x_t2 - x_t) / 1e-3, v, atol=1e-3, rtol=1e-3)


def test_sigma_sampling_distributions():
    g = torch.Generator().manual_seed(0)
    u = sample_sigmas(4000, FlowConfig(timesteps="uniform"), g)
    assert 0 < u.min() and u.max() < 1 and abs(u.mean().item() - 0.5) < 0.01
    ln = sample_sigmas(20000, FlowConfig(timesteps="logit_normal", logit_mean=0.0, logit_std=1.0), g)
    logit = torch.log(ln / (1 - ln))
    assert abs(logit.mean().item()) < 0.03 and abs(logit.std().item() - 1.0) < 0.03
    shifted = sample_sigmas(20000, FlowConfig(timesteps="logit_normal", shift=3.0), g)
    assert shifted.median() > ln.median() + 0.2  # shift > 1 moves mass to high noise
    # Same generator state -> same draw (the resume guarantee rests on this).
    a = sample_sigmas(8, FlowConfig(), torch.Generator().manual_seed(5))
    b = sample_sigmas(8, FlowConfig(), torch.Generator().manual_seed(5))
    assert torch.equal(a, b)


def test_stage_lr_warmup_cosine_constant():
    cos = StageConfig(name="s", steps=110, lr=1.0, warmup_steps=10, schedule="cosine", min_lr_ratio=0.1)
    lrs = [stage_lr(cos, 9.0, i) for i in range(110)]
    assert lrs[0] == pytest.approx(1 / 11) and lrs[9] == pytest.approx(10 / 11)
    assert lrs[10] == pytest.approx(1.0)
    assert lrs[60] == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 0.5)))
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:]))  # monotone decay after warm-up
    const = StageConfig(name="s", steps=5, schedule="constant")
    assert [stage_lr(const, 3e-4, i) for i in range(5)] == [3e-4] * 5  # the optim.lr default


def test_ema_tracks_an_exponential_average():
    model = torch.nn.Linear(2, 2)
    ema = EMA(model, decay=0.9)
    start = model.weight.detach().clone()
    with torch.no_grad():
        model.weight.add_(1.0)
    ema.update()
    torch.testing.assert_close(ema.shadow["weight"], start + 0.1)
    other = torch.nn.Linear(2, 2)
    ema.copy_to(other)
    torch.testing.assert_close(other.weight, start + 0.1)


def test_checkpoint_manager_saves_atomically_and_skips_incomplete(tmp_path, caplog):
    from openwan.training.checkpoint import CheckpointManager, rng_state, set_rng_state

    manager = CheckpointManager(tmp_path / "ckpt", keep=2)
    model = torch.nn.Linear(3, 2)
    for step in (1, 2, 3):
        with torch.no_grad():
            model.weight.fill_(float(step))
        manager.save(step, {"model": model.state_dict()}, {"step": step, "rng": rng_state()})
    assert [s for s, _ in manager.complete_checkpoints()] == [2, 3]  # keep = 2
    # A save that died before COMPLETE (the .tmp folder) and a folder without the marker are ignored.
    (tmp_path / "ckpt" / "step-00000004.tmp").mkdir()
    (tmp_path / "ckpt" / "step-00000005").mkdir()
    with caplog.at_level("WARNING"):
        latest = manager.latest()
    assert latest.name == "step-00000003"
    assert "interrupted" in caplog.text and "no COMPLETE marker" in caplog.text
    fresh = torch.nn.Linear(3, 2)
    sd = fresh.state_dict()
    per_rank = manager.load(latest, {"model": sd})
    fresh.load_state_dict(sd)
    assert per_rank["step"] == 3 and torch.all(fresh.weight == 3.0)
    # RNG states round-trip: the same draws follow.
    set_rng_state(per_rank["rng"])
    a = (torch.rand(3), __import__("random").random(), __import__("numpy").random.rand())
    set_rng_state(per_rank["rng"])
    b = (torch.rand(3), __import__("random").random(), __import__("numpy").random.rand())
    assert torch.equal(a[0], b[0]) and a[1:] == b[1:]
    # The next save clears the stale .tmp.
    manager.save(6, {"model": model.state_dict()}, {"step": 6})
    assert not (tmp_path / "ckpt" / "step-00000004.tmp").exists()


def test_checked_in_configs_are_valid():
    from pathlib import Path

    configs = sorted((Path(__file__).resolve().parents[1] / "configs" / "train").glob("*.toml"))
    assert configs
    for path in configs:
        cfg = load_config(path)
        assert cfg.stages and cfg.total_steps > 0
