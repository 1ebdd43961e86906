"""LoRA: training touches only the adapters; saved files (diffusers, ComfyUI, kohya, official naming) merge
back to the same model; diffusers/peft LoRAs load into ours and ours into diffusers; the CLI's --lora."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch
from conftest import SMALL
from PIL import Image

from openwan.checkpoint.lora_keys import normalize_lora, read_lora
from openwan.cli import main
from openwan.errors import CheckpointError, InputError
from openwan.media import sidecar_path
from openwan.pipelines import WanPipeline
from openwan.training.lora import LoRAConfig, add_lora, lora_state_dict, merge_lora, save_lora, unmerge_lora

IMAGE = dict(SMALL, frames=1, steps=3)  # one frame keeps the VAE cheap; PNG is lossless, so CLI frames compare exactly
PROMPT = "a red kite over the sea"
DIFFUSERS_TARGETS = ["to_q", "to_k", "to_v", "to_out.0", "ffn.net.0.proj", "ffn.net.2"]


def _pipe(tiny_pipe, dit) -> WanPipeline:
    """A pipeline around ``dit`` sharing the session pipeline's VAE and text encoder (never mutated)."""
    return WanPipeline(dit, tiny_pipe.vae, tiny_pipe.text_encoder, device="cpu", source=tiny_pipe.source)


def _inputs(dit, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(1, dit.config.in_dim, 2, 8, 8, generator=g)
    context = torch.zeros(1, dit.config.text_len, dit.config.text_dim)  # zero padding, as both pipelines do
    context[:, :12] = torch.randn(1, 12, dit.config.text_dim, generator=g)
    return x, torch.tensor([637.0]), context


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).norm() / b.norm()).item()


@pytest.fixture(scope="module")
def lora_model(tiny_pipe):
    """Our DiT with rank-4, alpha-8 adapters whose B is random, so the LoRA visibly changes the output."""
    model = add_lora(copy.deepcopy(tiny_pipe.dit), LoRAConfig(rank=4, alpha=8.0))
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if ".lora_B." in name:
                p.copy_(0.05 * torch.randn(p.shape, generator=g))
    return model.eval()


def test_training_changes_only_lora_parameters(tiny_pipe):
    model = add_lora(copy.deepcopy(tiny_pipe.dit), LoRAConfig(rank=4))
    assert type(model).__name__ == "WanDiT"
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(".lora_A." in n or ".lora_B." in n for n in trainable)
    assert len(trainable) == 2 * 10 * model.config.num_layers  # A and B for 10 targets per block
    base = {n: p.detach().clone() for n, p in model.named_parameters() if n not in trainable}
    lora = {n: p.detach().clone() for n, p in model.named_parameters() if n in trainable}

    x, t, context = _inputs(model)
    target = torch.randn(x.shape, generator=torch.Generator().manual_seed(3))
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    model.train()
    losses = []
    for _ in range(6):
        loss = torch.nn.functional.mse_loss(model(x, t, context), target)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] - 1e-3, losses
    for n, p in model.named_parameters():
        if n in base:
            assert torch.equal(p, base[n]), f"base parameter {n} changed"
    changed = [n for n in lora if not torch.equal(dict(model.named_parameters())[n], lora[n])]
    assert len(changed) == len(lora)


@pytest.fixture(scope="module")
def generated(tiny_pipe, lora_model):
    """The same generation without the LoRA and with the in-memory peft model, made once."""
    base = tiny_pipe.generate(PROMPT, progress=False, **IMAGE)
    ref = _pipe(tiny_pipe, lora_model).generate(PROMPT, progress=False, **IMAGE)
    assert (base.latents - ref.latents).abs().max().item() > 1e-2  # the LoRA matters, so equality means something
    return base, ref


@pytest.mark.parametrize("naming", ["diffusers", "comfy", "official"])
def test_saved_lora_merged_into_fresh_model_generates_the_same(tiny_pipe, lora_model, generated, tmp_path, naming):
    path = save_lora(lora_model, tmp_path / f"style-{naming}.safetensors", naming=naming, metadata={"trigger": "sks"})
    lf = read_lora(path)
    assert set(lf.modules) == set(_module_names(lora_model))
    assert lf.metadata["lora_rank"] == "4" and lf.metadata["lora_alpha"] == "8.0"
    assert lf.metadata["trigger"] == "sks" and json.loads(lf.metadata["base_model_config"])["dim"] == 256

    base, ref = generated
    pipe = _pipe(tiny_pipe, copy.deepcopy(tiny_pipe.dit))
    pipe.load_lora(path)
    got = pipe.generate(PROMPT, progress=False, **IMAGE)
    assert got.metadata["loras"] == [{"path": str(path), "scale": 1.0}] and base.metadata["loras"] == []
    assert (got.latents - ref.latents).abs().max().item() <= 1e-5
    assert np.abs(got.frames.astype(int) - ref.frames.astype(int)).max() <= 1


def _module_names(peft_model) -> list[str]:
    return [n for n, m in peft_model.named_modules() if hasattr(m, "base_layer")]


def _diffusers_transformer(tiny_diffusers):
    from diffusers import WanTransformer3DModel

    return WanTransformer3DModel.from_pretrained(tiny_diffusers / "transformer", torch_dtype=torch.float32).eval()


def test_diffusers_made_lora_merges_to_the_diffusers_lora_output(tiny_pipe, tiny_diffusers, tmp_path):
    from diffusers import WanPipeline as DiffusersWanPipeline
    from peft import LoraConfig, get_peft_model_state_dict

    theirs = _diffusers_transformer(tiny_diffusers)
    # A realistic peft config: non-default alpha, plus a per-module rank and alpha override.
    theirs.add_adapter(LoraConfig(r=4, lora_alpha=8, target_modules=DIFFUSERS_TARGETS,
                                  rank_pattern={"blocks.0.ffn.net.2": 2}, alpha_pattern={"blocks.1.attn1.to_q": 3}))
    g = torch.Generator().manual_seed(2)
    with torch.no_grad():
        for name, p in theirs.named_parameters():
            if "lora_B" in name:
                p.copy_(0.05 * torch.randn(p.shape, generator=g))
    DiffusersWanPipeline.save_lora_weights(tmp_path, transformer_lora_layers=get_peft_model_state_dict(theirs),
                                           transformer_lora_adapter_metadata=theirs.peft_config["default"].to_dict())
    path = tmp_path / "pytorch_lora_weights.safetensors"

    lf = read_lora(path)
    assert lf.naming == "diffusers/peft" and len(lf.modules) == 20
    assert lf.modules["blocks.1.self_attn.q"].alpha == 3.0 and lf.modules["blocks.0.ffn.2"].rank == 2

    ours = copy.deepcopy(tiny_pipe.dit)
    x, t, context = _inputs(ours)
    with torch.no_grad():
        base = ours(x, t, context)
        merge_lora(ours, path)
        got = ours(x, t, context)
        want = theirs(x, t, context, return_dict=False)[0]
        theirs.disable_adapters()
        want_base = theirs(x, t, context, return_dict=False)[0]
    assert _rel(base, want_base) <= 1e-4  # same base model
    assert _rel(want, want_base) > 1e-2  # the LoRA changes the output well beyond the tolerance
    assert _rel(got, want) <= 1e-4


@pytest.mark.parametrize("naming", ["diffusers", "comfy"])
def test_our_lora_files_load_in_diffusers(tiny_diffusers, lora_model, tmp_path, naming):
    from diffusers import WanPipeline as DiffusersWanPipeline

    path = save_lora(lora_model, tmp_path / "ours.safetensors", naming=naming)
    # diffusers converts ComfyUI-named files (alpha included) in lora_state_dict; its own naming passes through.
    sd = DiffusersWanPipeline.lora_state_dict(str(path))
    theirs = _diffusers_transformer(tiny_diffusers)
    theirs.load_lora_adapter(sd, prefix="transformer", adapter_name="ours")
    x, t, context = _inputs(lora_model, seed=4)
    with torch.no_grad():
        want = lora_model(x, t, context)
        got = theirs(x, t, context, return_dict=False)[0]
    assert _rel(got, want) <= 1e-4


def test_kohya_flattened_names_read_like_comfy(lora_model):
    comfy = lora_state_dict(lora_model, "comfy")
    kohya = {}
    # diffusion_model.blocks.0.self_attn.q.lora_down.weight -> lora_unet_blocks_0_self_attn_q.lora_down.weight
    for k, v in comfy.items():
        name = k.removeprefix("diffusion_model.")
        module = next(name[: -len(s)] for s in (".lora_down.weight", ".lora_up.weight", ".alpha") if name.endswith(s))
        kohya["lora_unet_" + module.replace(".", "_") + name[len(module):]] = v
    assert "lora_unet_blocks_0_cross_attn_o.lora_down.weight" in kohya
    a, b = normalize_lora(comfy), normalize_lora(kohya)
    assert a.naming == "ComfyUI" and b.naming.startswith("kohya")
    assert a.modules.keys() == b.modules.keys()
    for name, w in a.modules.items():
        v = b.modules[name]
        assert torch.equal(w.A, v.A) and torch.equal(w.B, v.B) and w.alpha == v.alpha == 8.0


def test_stacked_loras_add_up_unmerge_restores_and_are_listed(tiny_pipe, lora_model, tmp_path):
    p1 = save_lora(lora_model, tmp_path / "one.safetensors", naming="comfy")
    p2 = tmp_path / "two.safetensors"
    from safetensors.torch import save_file

    save_file({k: (2 * v if "lora_B" in k else v) for k, v in lora_state_dict(lora_model, "official").items()}, p2)
    model = copy.deepcopy(tiny_pipe.dit)
    w0 = model.blocks[1].ffn[2].weight.detach().clone()
    pipe = _pipe(tiny_pipe, model)
    pipe.load_lora(p1, 0.5)
    pipe.load_lora(p2, -0.25)
    d = read_lora(p1).modules["blocks.1.ffn.2"].delta()
    # 0.5·Δ + (-0.25)·2Δ = 0: stacking adds the scaled updates
    torch.testing.assert_close(model.blocks[1].ffn[2].weight, w0 + 0.5 * d - 0.5 * d, atol=1e-6, rtol=0)
    meta = pipe.generate("x", progress=False, **dict(IMAGE, steps=1, guidance=1.0)).metadata
    assert meta["loras"] == [{"path": str(p1), "scale": 0.5}, {"path": str(p2), "scale": -0.25}]

    fresh = copy.deepcopy(tiny_pipe.dit)
    merged = merge_lora(fresh, p1, 1.5)
    assert not torch.equal(fresh.blocks[0].self_attn.q.weight, tiny_pipe.dit.blocks[0].self_attn.q.weight)
    unmerge_lora(fresh, merged)
    for (n, p), q in zip(fresh.named_parameters(), tiny_pipe.dit.parameters()):
        torch.testing.assert_close(p, q, atol=2e-6, rtol=0, msg=n)


def test_bf16_merge_rounds_once_from_fp32(tiny_pipe, lora_model):
    model = copy.deepcopy(tiny_pipe.dit).to(torch.bfloat16)
    w = model.blocks[0].cross_attn.v.weight.detach().clone()
    sd = lora_state_dict(lora_model, "diffusers")
    merge_lora(model, sd, 0.7)
    delta = normalize_lora(sd).modules["blocks.0.cross_attn.v"].delta(0.7)
    assert model.blocks[0].cross_attn.v.weight.dtype == torch.bfloat16
    assert torch.equal(model.blocks[0].cross_attn.v.weight, (w.float() + delta).to(torch.bfloat16))


def test_bad_lora_files_and_configs_raise_clear_errors(tiny_pipe, tiny_official, lora_model, tmp_path):
    model = copy.deepcopy(tiny_pipe.dit)
    diffusers_sd = lora_state_dict(lora_model, "diffusers")
    with pytest.raises(CheckpointError, match=r"(?s)detected naming: diffusers.*attn1\.to_x"):
        normalize_lora({**diffusers_sd, "transformer.blocks.0.attn1.to_x.lora_A.weight": torch.zeros(4, 256)})
    with pytest.raises(CheckpointError, match=r"(?s)not LoRA factors.*transformer\.blocks\.0\.attn1\.to_q\.scale"):
        normalize_lora({**diffusers_sd, "transformer.blocks.0.attn1.to_q.scale": torch.ones(())})
    with pytest.raises(CheckpointError, match=r"blocks\.0\.ffn\.0: has only A; needs both"):
        normalize_lora({"blocks.0.ffn.0.lora_A.weight": torch.zeros(4, 256)})
    with pytest.raises(CheckpointError, match=r"(?s)mytest.*does not have.*blocks\.5\.self_attn\.q"):
        merge_lora(model, normalize_lora({"blocks.5.self_attn.q.lora_A.weight": torch.zeros(4, 256),
                                          "blocks.5.self_attn.q.lora_B.weight": torch.zeros(256, 4)},
                                         source="mytest"))
    with pytest.raises(CheckpointError, match=r"mismatch.*blocks\.0\.ffn\.0: LoRA \(256, 256\) vs model \(512, 256"):
        merge_lora(model, {"blocks.0.ffn.0.lora_A.weight": torch.zeros(4, 256),
                           "blocks.0.ffn.0.lora_B.weight": torch.zeros(256, 4)})
    with pytest.raises(CheckpointError, match=r"DoRA|diffs"):
        normalize_lora({**diffusers_sd, "diffusion_model.blocks.0.ffn.0.diff_b": torch.zeros(512)})
    # Everything is checked before any weight changes.
    assert all(torch.equal(p, q) for p, q in zip(model.parameters(), tiny_pipe.dit.parameters()))
    full = tiny_official / "diffusion_pytorch_model.safetensors"
    with pytest.raises(CheckpointError, match=r"not a LoRA file.*full model checkpoint \(dit-official\)"):
        read_lora(full)
    with pytest.raises(CheckpointError, match=r"not a LoRA file.*peft adapters injected.*save_lora"):
        normalize_lora(lora_model.state_dict())
    with pytest.raises(CheckpointError, match=r"LoRA file not found: .*nope\.safetensors"):
        read_lora(tmp_path / "nope.safetensors")
    with pytest.raises(InputError, match=r"match no module.*self_attn\.zz"):
        add_lora(copy.deepcopy(tiny_pipe.dit), LoRAConfig(targets=("self_attn.q", "self_attn.zz")))
    with pytest.raises(InputError, match=r"must be Linear.*norm_q"):
        add_lora(copy.deepcopy(tiny_pipe.dit), LoRAConfig(targets=("self_attn.norm_q",)))
    with pytest.raises(InputError, match=r"rank"):
        LoRAConfig(rank=0)
    with pytest.raises(InputError, match=r"plain model"):
        merge_lora(lora_model, diffusers_sd)
    with pytest.raises(InputError, match=r"finite"):
        merge_lora(model, diffusers_sd, float("nan"))


def _png(path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


def _cli(tiny_official, out, *extra) -> int:
    args = ["generate", PROMPT, "--model", str(tiny_official), "-o", str(out), "--no-progress",
            "--size", f"{IMAGE['width']}x{IMAGE['height']}", "--frames", "1", "--steps", str(IMAGE["steps"]),
            "--seed", str(IMAGE["seed"])]
    return main(args + list(extra))


def test_cli_lora_scale_matches_api_and_zero_scale_is_no_lora(tiny_pipe, tiny_official, lora_model, generated,
                                                              tmp_path):
    path = save_lora(lora_model, tmp_path / "style.safetensors", naming="comfy")
    assert _cli(tiny_official, tmp_path / "half.png", "--lora", f"{path}:0.5") == 0
    assert _cli(tiny_official, tmp_path / "zero.png", "--lora", f"{path}:0") == 0
    sidecar = json.loads(sidecar_path(tmp_path / "half.png").read_text())
    assert sidecar["loras"] == [{"path": str(path), "scale": 0.5}]

    pipe = _pipe(tiny_pipe, copy.deepcopy(tiny_pipe.dit))
    pipe.load_lora(path, 0.5)
    api = pipe.generate(PROMPT, progress=False, **IMAGE).frames[0]
    base = generated[0].frames[0]
    assert np.array_equal(_png(tmp_path / "half.png"), api)
    assert np.array_equal(_png(tmp_path / "zero.png"), base)
    assert np.abs(api.astype(int) - base.astype(int)).mean() > 1.0


def test_cli_lora_errors(tiny_official, tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        _cli(tiny_official, tmp_path / "a.png", "--lora", "style.safetensors:strong")
    assert e.value.code == 2
    assert "LoRA scale must be a number" in capsys.readouterr().err
    missing = tmp_path / "missing.safetensors"
    assert _cli(tiny_official, tmp_path / "a.png", "--lora", f"{missing}:0.8") == 1
    assert f"error: LoRA file not found: {missing}" in capsys.readouterr().err
    full = tiny_official / "diffusion_pytorch_model.safetensors"
    assert _cli(tiny_official, tmp_path / "a.png", "--lora", str(full)) == 1
    err = capsys.readouterr().err
    assert "is not a LoRA file" in err and str(full) in err and "Traceback" not in err
    assert not (tmp_path / "a.png").exists()
