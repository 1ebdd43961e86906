"""`openwan recipe`: the checked-in shapes-world recipe, shortened, runs end to end and resumes."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import SHORT_SHAPES_RECIPE_ARGS as SHORT
from conftest import torch_threads
from safetensors.torch import load_file

from openwan.cli import main
from openwan.data.synth_world import PAN_MOTIONS, SynthWorldConfig
from openwan.errors import InputError

RECIPE = Path(__file__).resolve().parents[1] / "configs" / "shapes-world" / "recipe.toml"
# two pan clips over mottled walls instead, read by the DiT's pans dataset instead of [data]'s clips
EXTRA = ('extra_data=[{name="mottled-pans", clips=2, seed=1, backgrounds=["mottled"], '
         'motions=["camera pans left", "camera pans right"], datasets=["pans"]}]')


@pytest.fixture(scope="module")
def recipe_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("recipe") / "run"
    with torch_threads(1):
        assert main(["recipe", str(RECIPE), "--set", f"output_dir={json.dumps(str(out))}", *SHORT]) == 0
    return out


def test_shortened_recipe_builds_a_model_that_generates_with_its_own_defaults(recipe_run):
    import openwan
    from openwan.data.synth_world import SynthWorldConfig, heldout_prompts

    model = recipe_run / "model"
    for name in ("config.json", "diffusion_pytorch_model.safetensors", "Wan2.1_VAE.pth", "vae_config.json",
                 "models_t5_umt5-xxl-enc-bf16.pth", "google/umt5-xxl/tokenizer.json", "sample_config.json"):
        assert (model / name).is_file(), name
    # Latent statistics were measured on the trained VAE's latents, not copied from Wan-VAE.
    vae_cfg = json.loads((model / "vae_config.json").read_text())
    assert len(vae_cfg["latents_mean"]) == 16 and all(s > 0 for s in vae_cfg["latents_std"])
    # The DiT trained: its weights differ from the scaffold's placeholder DiT.
    assert json.loads((model / "config.json").read_text())["dim"] == 256
    # Both DiT stages ran; the second mixes in the direction-motion subset of the same manifest.
    from openwan.training.logger import read_metrics

    ends = [(r["step"], r["stage"]) for r in read_metrics(recipe_run / "dit" / "metrics.jsonl")]
    assert ends == [(3, "t2v"), (5, "motions")], ends
    # The model's DiT is the fine-tune's, which continued the dit step's weights on its latent cache.
    dit_file = "diffusion_pytorch_model.safetensors"
    shipped, tuned, first = (load_file(d / dit_file) for d in (model, recipe_run / "dit-finetune" / "final",
                                                                 recipe_run / "dit" / "final"))
    assert all(torch.equal(shipped[k], tuned[k]) for k in tuned)
    assert any(not torch.equal(tuned[k], first[k]) for k in first)
    assert (recipe_run / "dit-finetune" / "cache").resolve() == (recipe_run / "dit" / "cache").resolve()
    # The pans dataset read the extra_data clips (2 px/frame pans), the others the [data] world.
    from openwan.data.manifest import read_manifest
    from openwan.training.latent_cache import clips_fingerprint

    cached = {name: json.loads((recipe_run / "dit" / "cache" / name / "source.json").read_text())["clips"]
              for name in ("pans", "world")}
    assert cached["pans"] == clips_fingerprint(read_manifest(recipe_run / "data-fast-pans" / "train.jsonl"), True)
    world = read_manifest(recipe_run / "data" / "train.jsonl")
    assert cached["world"] == clips_fingerprint(world, True)
    world_pans = [e for e in world if e.extra["motion_label"].startswith("camera pans")]
    assert cached["pans"] != clips_fingerprint(world_pans, True)
    # The model reads the caption-trained encoder of the text step, not the scaffold's random one.
    t5 = "models_t5_umt5-xxl-enc-bf16.pth"
    shipped, trained, random = (torch.load(d / t5, weights_only=True)
                                for d in (model, recipe_run / "text", recipe_run / "scaffold"))
    assert all(torch.equal(shipped[k], trained[k]) for k in trained)
    assert not torch.equal(trained["token_embedding.weight"], random["token_embedding.weight"])
    accuracy = json.loads((recipe_run / "text" / "caption_encoder.json").read_text())["heldout_accuracy"]
    assert set(accuracy) == {"shape", "colour", "size", "motion", "shape2", "colour2"}

    pipe = openwan.load_pipeline(model)
    # The tokenizer was trained on the world's captions: no prompt of either language has unknown pieces.
    tok = pipe.text_encoder.tokenizer
    for row in heldout_prompts(SynthWorldConfig()):
        assert tok.unk_token_id not in tok(row["prompt"]).input_ids, row["prompt"]
    # Chinese attribute words are pieces of their own, not merged into "一个红色的圆"-style phrases
    pieces = tok.convert_ids_to_tokens(tok("一个小的绿色正方形向左移动").input_ids)
    assert {"小的", "绿色", "正方形"} <= set(pieces), pieces
    # The model's VAE is the decoder step's: the VAE step's encoder (so the DiT's latents), a new decoder.
    vae_file = "Wan2.1_VAE.pth"
    shipped, tuned, first = (torch.load(d / vae_file, weights_only=True)
                             for d in (model, recipe_run / "decoder" / "final", recipe_run / "vae" / "final"))
    assert all(torch.equal(shipped[k], tuned[k]) for k in tuned)
    encoder = [k for k in first if k.startswith(("encoder.", "conv1."))]
    assert encoder and all(torch.equal(shipped[k], first[k]) for k in encoder)
    assert any(not torch.equal(shipped[k], first[k]) for k in first if k.startswith("decoder."))
    result = pipe.generate("一个红色的圆落下并弹起", seed=1, progress=False)
    m = result.metadata
    assert result.frames.shape == (17, 64, 64, 3)
    assert (m["steps"], m["guidance"], m["shift"], m["negative_prompt"]) == (30, 4.0, 3.0, "")
    assert m["guidance_interval"] == [0.3, 1.0]  # recipe.toml's [sample] reaches the model's sample_config.json


def test_rerunning_the_recipe_skips_finished_steps(recipe_run, capsys):
    vae_file = recipe_run / "vae" / "final" / "Wan2.1_VAE.pth"
    dit_file = recipe_run / "dit" / "final" / "diffusion_pytorch_model.safetensors"
    before = vae_file.stat().st_mtime_ns, dit_file.stat().st_mtime_ns
    environment = recipe_run / "environment.jsonl"
    runs_before = len(environment.read_text().splitlines())
    assert main(["recipe", str(RECIPE), "--set", f"output_dir={json.dumps(str(recipe_run))}", *SHORT]) == 0
    assert (vae_file.stat().st_mtime_ns, dit_file.stat().st_mtime_ns) == before
    log = capsys.readouterr().out
    assert "vae training" not in log and "dit training" not in log and "decoder" not in log
    assert "dit fine-tuning" not in log
    # each invocation records what it ran with: one more line, after the first run's
    runs = [json.loads(line) for line in environment.read_text().splitlines()]
    assert runs_before >= 1 and len(runs) == runs_before + 1 and runs[-1]["recipe"] == str(RECIPE)
    import av

    now = runs[-1]
    assert now["packages"]["torch"] == torch.__version__ and now["packages"]["av"] == av.__version__
    assert now["ffmpeg"]["libavcodec"] == ".".join(map(str, av.library_versions["libavcodec"]))
    assert now["torch_threads"] == torch.get_num_threads() and runs[0]["torch_threads"] == 1  # the fixture's


def test_a_new_scaffold_reruns_only_the_text_side(recipe_run, tmp_path):
    """Replacing the tokenizer/text encoder keeps the trained VAE and decoder: the latents step takes text
    from the text step, so the final model carries the new tokenizer with the old VAE."""
    import shutil

    run = tmp_path / "run"
    shutil.copytree(recipe_run, run)
    for step in ("scaffold", "text", "latents", "dit", "model"):
        shutil.rmtree(run / step)
    vae_file, decoder_file = (run / step / "final" / "Wan2.1_VAE.pth" for step in ("vae", "decoder"))
    before = vae_file.stat().st_mtime_ns, decoder_file.stat().st_mtime_ns
    assert main(["recipe", str(RECIPE), "--set", f"output_dir={json.dumps(str(run))}", "--set", "tokenizer.pieces=140",
                 *SHORT]) == 0
    assert (vae_file.stat().st_mtime_ns, decoder_file.stat().st_mtime_ns) == before
    tokenizer = "google/umt5-xxl/tokenizer.json"
    assert (run / "model" / tokenizer).read_bytes() == (run / "scaffold" / tokenizer).read_bytes()
    assert (run / "model" / tokenizer).read_bytes() != (recipe_run / "model" / tokenizer).read_bytes()
    new_vae, old_vae = (torch.load(f, weights_only=True) for f in (run / "model" / "Wan2.1_VAE.pth", decoder_file))
    assert new_vae.keys() == old_vae.keys() and all(torch.equal(new_vae[k], old_vae[k]) for k in old_vae)
    # The DiT fine-tune continued the old DiT, so it was made again from the new one.
    dit_file = "diffusion_pytorch_model.safetensors"
    new_dit, tuned, old_dit = (load_file(d / dit_file) for d in (run / "model", run / "dit-finetune" / "final",
                                                                 recipe_run / "model"))
    assert all(torch.equal(new_dit[k], tuned[k]) for k in tuned)
    assert any(not torch.equal(new_dit[k], old_dit[k]) for k in old_dit)


def test_data_without_masks_is_rendered_again_with_identical_clips(recipe_run, tmp_path):
    """A recipe folder from before synth-world wrote object masks resumes: the data step renders again,
    the clips come out the same (so the trained VAE stays valid; H.264 may encode a clip a little
    differently from run to run) and the manifest names the masks."""
    import shutil

    from openwan.data.manifest import read_manifest
    from openwan.media import read_video
    from openwan.training.recipe import build_data, load_recipe

    data = tmp_path / "data"
    shutil.copytree(recipe_run / "data", data)
    rows = [json.loads(line) for line in (data / "train.jsonl").read_text().splitlines()]
    (data / "train.jsonl").write_text("".join(json.dumps({k: v for k, v in r.items() if k != "mask"}) + "\n"
                                              for r in rows))
    for f in data.glob("train/*.mask.mp4"):
        f.unlink()
    clips = {f.name: read_video(f)[0] for f in data.glob("train/*.mp4")}
    recipe = load_recipe(RECIPE, ["data.clips=8"])
    manifest = build_data(recipe, data)
    entries = read_manifest(manifest)
    assert len(entries) == 8 and all(e.mask is not None and e.mask.is_file() for e in entries)
    again = {f.name: read_video(f)[0] for f in data.glob("train/clip_?????.mp4")}
    assert again.keys() == clips.keys()
    for name, frames in clips.items():
        assert np.abs(again[name].astype(float) - frames).mean() < 2.0, name


def test_recipe_errors_name_the_key(tmp_path):
    from openwan.training.recipe import load_recipe

    with pytest.raises(InputError, match="data.clipz"):
        load_recipe(RECIPE, ["data.clipz=3"])
    with pytest.raises(InputError, match="data.size"):
        load_recipe(RECIPE, ["data.size='big'"])
    with pytest.raises(InputError, match="text_encoder.train_steps"):
        load_recipe(RECIPE, ["text_encoder.train_steps=-1"])
    with pytest.raises(InputError, match="recipe file not found"):
        load_recipe(tmp_path / "nope.toml")


def test_extra_data_is_rendered_once_and_read_only_by_the_datasets_it_names(tmp_path, monkeypatch):
    from openwan.data.manifest import read_manifest
    from openwan.training import recipe as recipe_mod
    from openwan.training import trainer

    recipe = recipe_mod.load_recipe(RECIPE, [EXTRA])
    manifests = recipe_mod.build_extra_data(recipe, tmp_path)
    pans = tmp_path / "data-mottled-pans" / "train.jsonl"
    assert manifests == {"pans": pans}
    rows = [e.extra for e in read_manifest(pans)]
    assert len(rows) == 2 and {r["background"] for r in rows} == {"mottled"}
    assert {r["motion_label"] for r in rows} <= {"camera pans left", "camera pans right"}
    stamp = pans.stat().st_mtime_ns
    assert recipe_mod.build_extra_data(recipe, tmp_path) == manifests and pans.stat().st_mtime_ns == stamp

    seen = {}

    def fake_train(cfg):
        seen.update({d.name: d.manifest for d in cfg.datasets})
        return type("Result", (), {"export_dir": tmp_path / "export"})()

    monkeypatch.setattr(trainer, "train", fake_train)
    recipe_mod._train(recipe.dit, [], output_dir=tmp_path / "dit", base=tmp_path, manifest=tmp_path / "world.jsonl",
                      extra=manifests)
    assert seen.pop("pans") == str(pans)
    assert seen and set(seen.values()) == {str(tmp_path / "world.jsonl")}


def test_data_rendered_with_other_settings_is_an_error_not_reused(tmp_path, capsys):
    """A run folder's data is reused only if it was rendered with the settings the recipe asks for now;
    otherwise the VAE and DiT would train on data the recipe does not describe."""
    from openwan.training.recipe import build_data, build_extra_data, load_recipe

    manifest = build_data(load_recipe(RECIPE, ["data.clips=2"]), tmp_path / "data")
    stamp = manifest.stat().st_mtime_ns
    assert build_data(load_recipe(RECIPE, ["data.clips=2"]), tmp_path / "data") == manifest
    assert manifest.stat().st_mtime_ns == stamp
    with pytest.raises(InputError, match=r"\[data\]: .*data was rendered with other settings \(num_clips 2 -> 3, "
                                         r"seed 0 -> 4\); delete that folder"):
        build_data(load_recipe(RECIPE, ["data.clips=3", "data.seed=4"]), tmp_path / "data")
    build_extra_data(load_recipe(RECIPE, [EXTRA]), tmp_path)
    with pytest.raises(InputError, match=r"extra_data 'mottled-pans': .* \(backgrounds \['mottled'\] -> "):
        build_extra_data(load_recipe(RECIPE, [EXTRA.replace('"mottled"]', '"mottled", "floor"]')]), tmp_path)
    # Data from an openwan that kept no record of its settings is reused, and the log says it went unchecked.
    (manifest.parent / "train.world.json").unlink()
    assert build_data(load_recipe(RECIPE, ["data.clips=3"]), tmp_path / "data") == manifest
    assert manifest.stat().st_mtime_ns == stamp and "reused without checking its settings" in capsys.readouterr().out


def test_data_backgrounds_choose_the_world_walls(tmp_path):
    from openwan.training.recipe import _world_config, build_data, load_recipe

    default = load_recipe(RECIPE)
    assert _world_config(default).backgrounds == SynthWorldConfig().backgrounds
    walls = load_recipe(RECIPE, ["data.clips=3", 'data.backgrounds=["windows"]'])
    manifest = build_data(walls, tmp_path / "data")
    assert {r["background"] for r in map(json.loads, manifest.read_text().splitlines())} == {"windows"}
    with pytest.raises(InputError, match=r"\[data\]: .*data was rendered with other settings \(backgrounds"):
        build_data(load_recipe(RECIPE, ["data.clips=3"]), tmp_path / "data")
    with pytest.raises(InputError, match=r"\[data\]: backgrounds must be distinct values from .*moon"):
        load_recipe(RECIPE, ['data.backgrounds=["moon"]'])


def test_data_pan_backgrounds_choose_the_walls_behind_pans_and_extra_sets_keep_them(tmp_path):
    from openwan.training.recipe import _world_config, build_data, load_recipe

    assert _world_config(load_recipe(RECIPE)).pan_backgrounds is None
    walls = load_recipe(RECIPE, ["data.clips=24", 'data.pan_backgrounds=["windows"]', EXTRA])
    config = _world_config(walls)
    assert config.pan_backgrounds == ("windows",) and config.backgrounds == SynthWorldConfig().backgrounds
    rows = [json.loads(r) for r in build_data(walls, tmp_path / "data").read_text().splitlines()]
    walls_by_pan = {True: set(), False: set()}
    for r in rows:
        walls_by_pan[r["motion_label"] in PAN_MOTIONS].add(r["background"])
    assert walls_by_pan[True] == {"windows"} and walls_by_pan[False] and "windows" not in walls_by_pan[False]
    # an extra set that names its walls draws every clip over them; one that does not keeps [data]'s
    assert _world_config(walls, walls.extra_data[0]).backgrounds == ("mottled",)
    assert _world_config(walls, walls.extra_data[0]).pan_backgrounds is None
    plain = load_recipe(RECIPE, ['data.pan_backgrounds=["windows"]', EXTRA.replace(', backgrounds=["mottled"]', "")])
    assert _world_config(plain, plain.extra_data[0]).pan_backgrounds == ("windows",)
    with pytest.raises(InputError, match=r"\[data\]: .*data was rendered with other settings \(pan_backgrounds"):
        build_data(load_recipe(RECIPE, ["data.clips=24"]), tmp_path / "data")
    with pytest.raises(InputError, match=r"\[data\]: pan_backgrounds must be distinct values from .*moon"):
        load_recipe(RECIPE, ['data.pan_backgrounds=["moon"]'])


def test_extra_data_errors_come_before_any_step(tmp_path):
    from openwan.training.recipe import _world_config, load_recipe, run_recipe

    out = f"output_dir={json.dumps(str(tmp_path / 'run'))}"
    with pytest.raises(InputError, match="extra_data 'mottled-pans': backgrounds must be distinct values from"):
        load_recipe(RECIPE, [EXTRA.replace('"mottled"', '"moon"')])
    with pytest.raises(InputError, match="extra_data 'mottled-pans': pan_speed 3 px/frame shifts a 64-px-wide"):
        load_recipe(RECIPE, [EXTRA.replace("seed=1", "seed=1, pan_speed=3")])
    fast = load_recipe(RECIPE, [EXTRA.replace("seed=1", "seed=1, pan_speed=2")])
    assert _world_config(fast, fast.extra_data[0]).pan_speed == 2 and _world_config(fast).pan_speed == 0
    with pytest.raises(InputError, match="datasets must name the DiT"):
        load_recipe(RECIPE, [EXTRA.replace('datasets=["pans"]', "datasets=[]")])
    with pytest.raises(InputError, match="name must be a non-empty word"):
        load_recipe(RECIPE, [EXTRA.replace('"mottled-pans"', '"../up"')])
    with pytest.raises(InputError, match=r"feeds datasets \['panz'\], which no DiT config .* are \[.*'pans'"):
        run_recipe(load_recipe(RECIPE, [out, EXTRA.replace('["pans"]', '["panz"]')]))
    twice = EXTRA.replace("}]", '}, {name="more", clips=2, datasets=["pans"]}]')
    with pytest.raises(InputError, match="dataset 'pans' is fed by two extra_data sets, 'mottled-pans' and 'more'"):
        run_recipe(load_recipe(RECIPE, [out, twice]))
    same_name = EXTRA.replace("}]", '}, {name="mottled-pans", clips=2, datasets=["moves"]}]')
    with pytest.raises(InputError, match="extra_data name 'mottled-pans' is used twice"):
        load_recipe(RECIPE, [same_name])  # both would render into one data-mottled-pans folder
    assert not (tmp_path / "run").exists()


def test_a_dit_finetune_must_continue_the_dit(tmp_path):
    from openwan.training.recipe import load_recipe, run_recipe

    recipe = load_recipe(RECIPE, [f"output_dir={json.dumps(str(tmp_path / 'run'))}",
                                  'dit_finetune="dit-motions.toml"'])
    recipe.dit_finetune_overrides += ['model.init="random"']
    with pytest.raises(InputError,
                       match=r"dit_finetune = .*dit-motions\.toml must be a DiT run .*model\.init = 'base'"):
        run_recipe(recipe)
    assert not (tmp_path / "run").exists()  # checked before any step


def test_a_torch_compile_that_cannot_work_stops_the_recipe_before_any_step(tmp_path, monkeypatch):
    """dit.toml sets run.compile: a machine without a C++ compiler must hear it before the VAE's hour."""
    from openwan.training.recipe import load_recipe, run_recipe

    def no_compiler(fn):
        raise RuntimeError("InvalidCxxCompiler: No working C++ compiler found")

    monkeypatch.setattr(torch, "compile", no_compiler)
    recipe = load_recipe(RECIPE, [f"output_dir={json.dumps(str(tmp_path / 'run'))}"])
    with pytest.raises(InputError, match=r"dit\.toml: run\.compile = true, but torch\.compile does not work on cpu "
                                         r"here \(RuntimeError: InvalidCxxCompiler.*C\+\+ compiler.*"
                                         r"run\.compile = false"):
        run_recipe(recipe)
    assert not (tmp_path / "run").exists()


def test_sample_config_sets_generate_defaults_and_bad_files_are_named(tmp_path):
    from openwan.errors import CheckpointError
    from openwan.pipelines.loading import read_sample_defaults

    (tmp_path / "sample_config.json").write_text(json.dumps({"size": [96, 64], "frames": 9, "steps": 12,
                                                             "guidance": 3.0, "negative_prompt": ""}))
    d = read_sample_defaults(tmp_path)
    assert (d.size, d.frames, d.steps, d.guidance, d.negative_prompt) == ((96, 64), 9, 12, 3.0, "")
    assert d.supported_sizes == ((96, 64),)
    assert read_sample_defaults(tmp_path / "missing") is None
    (tmp_path / "sample_config.json").write_text(json.dumps({"stepz": 3}))
    with pytest.raises(CheckpointError, match="sample_config.json: unknown keys \\['stepz'\\]"):
        read_sample_defaults(tmp_path)
    (tmp_path / "sample_config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="not valid JSON"):
        read_sample_defaults(tmp_path)


def test_missing_bundled_model_is_a_clear_error(monkeypatch, tmp_path):
    import openwan.bundled as bundled
    from openwan.errors import CheckpointError

    monkeypatch.setattr(bundled, "BUNDLED_MODEL_NAME", "not-there")
    with pytest.raises(CheckpointError, match="bundled model is missing.*--model"):
        bundled.bundled_model_path()


def test_the_decoder_step_must_keep_the_encoder(recipe_run, tmp_path):
    from openwan.training.recipe import load_recipe, run_recipe, take_decoder

    # a decoder config that would train the encoder too is refused before any step runs
    recipe = load_recipe(RECIPE, [f"output_dir={json.dumps(str(tmp_path / 'run'))}", 'decoder="decoder.toml"'])
    recipe.decoder_overrides = ["vae.freeze_encoder=false"]
    with pytest.raises(InputError, match="vae.freeze_encoder = true"):
        run_recipe(recipe)
    assert not (tmp_path / "run").exists()
    # and a VAE file whose encoder differs from the model's is not put into the model
    model = tmp_path / "model"
    shutil.copytree(recipe_run / "model", model)
    other = tmp_path / "other"
    shutil.copytree(recipe_run / "decoder" / "final", other)
    state = torch.load(other / "Wan2.1_VAE.pth", weights_only=True)
    key = next(k for k in state if k.startswith("encoder."))
    state[key] = state[key] + 1
    torch.save(state, other / "Wan2.1_VAE.pth")
    before = (model / "Wan2.1_VAE.pth").read_bytes()
    with pytest.raises(InputError, match="does not keep the model's encoder"):
        take_decoder(other, model)
    assert (model / "Wan2.1_VAE.pth").read_bytes() == before
