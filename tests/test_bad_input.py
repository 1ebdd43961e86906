"""Every bad input fails with a message that says what is wrong and what to do, before any compute."""

from __future__ import annotations

import logging
import shutil

import pytest
import torch
from conftest import SMALL

from openwan import load_pipeline
from openwan.checkpoint.io import read_state_dict, write_pth
from openwan.checkpoint.layout import OFFICIAL_DIT, OFFICIAL_T5, OFFICIAL_VAE
from openwan.cli import main
from openwan.configs import VARIANTS
from openwan.errors import CheckpointError, InputError, NumericalError
from openwan.validation import warn_unsupported_size


def test_size_not_multiple_of_16_names_nearest(tiny_pipe):
    with pytest.raises(InputError, match=r"width 830 is not a multiple of 16.*nearest valid widths: 816 or 832"):
        tiny_pipe.generate("x", width=830, height=480, frames=5)
    with pytest.raises(InputError, match=r"height 470 .* 464 or 480"):
        tiny_pipe.generate("x", width=832, height=470, frames=5)


def test_frames_not_4n_plus_1_names_nearest(tiny_pipe):
    with pytest.raises(InputError, match=r"4n\+1.*got 80, nearest valid: 77 or 81"):
        tiny_pipe.generate("x", width=64, height=64, frames=80)
    with pytest.raises(InputError, match=r"got 0"):
        tiny_pipe.generate("x", width=64, height=64, frames=0)


def test_cli_reports_input_errors_without_traceback(tiny_official, tmp_path, capsys):
    rc = main(["generate", "x", "--model", str(tiny_official), "--frames", "8", "-o", str(tmp_path / "a.mp4")])
    assert rc == 1
    err = capsys.readouterr().err
    assert err.startswith("error: frames must be 4n+1") and "Traceback" not in err


def test_unsupported_size_warns_like_official(caplog):
    with caplog.at_level(logging.WARNING):
        msg = warn_unsupported_size(VARIANTS["t2v-1.3B"], 1280, 720)
    assert "1280x720 is not a trained size of t2v-1.3B" in msg and "832x480" in msg
    assert msg in caplog.text
    assert warn_unsupported_size(VARIANTS["t2v-1.3B"], 832, 480) is None
    assert warn_unsupported_size(VARIANTS["t2v-14B"], 1280, 720) is None


def test_missing_component_names_file_and_expected_layout(tiny_official, tmp_path):
    broken = tmp_path / "no-vae"
    shutil.copytree(tiny_official, broken)
    (broken / OFFICIAL_VAE).unlink()
    with pytest.raises(CheckpointError, match=r"no VAE found \(official layout\)[\s\S]*Wan2.1_VAE.pth"):
        load_pipeline(broken, device="cpu")
    with pytest.raises(CheckpointError, match="checkpoint path not found"):
        load_pipeline(tmp_path / "nowhere", device="cpu")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match=r"neither an official nor a diffusers[\s\S]*model_index.json"):
        load_pipeline(tmp_path / "empty", device="cpu")


def test_wrong_file_in_a_slot_is_named(tiny_official, tmp_path):
    swapped = tmp_path / "swapped"
    shutil.copytree(tiny_official, swapped)
    shutil.copy(swapped / OFFICIAL_VAE, swapped / OFFICIAL_T5)  # the VAE where the text encoder belongs
    with pytest.raises(CheckpointError, match=r"wrong file for the umT5 text encoder: .*models_t5.* holds a Wan-VAE"):
        load_pipeline(swapped, device="cpu")


def test_mismatched_tensors_list_missing_unexpected_and_shapes(tiny_official, tmp_path):
    bad = tmp_path / "bad"
    shutil.copytree(tiny_official, bad)
    vae = read_state_dict(bad / OFFICIAL_VAE)
    vae.pop("conv1.weight")
    vae["extra.weight"] = torch.zeros(1)
    vae["conv2.bias"] = torch.zeros(3)
    write_pth(vae, bad / OFFICIAL_VAE)
    with pytest.raises(CheckpointError) as e:
        load_pipeline(bad, device="cpu")
    msg = str(e.value)
    assert "Wan2.1_VAE.pth does not match the model" in msg
    assert "missing keys (1): conv1.weight" in msg
    assert "unexpected keys (1): extra.weight" in msg
    assert "conv2.bias: checkpoint (3,)" in msg
    assert "expected: official layout" in msg


def test_corrupt_file_is_named(tiny_official, tmp_path):
    bad = tmp_path / "corrupt"
    shutil.copytree(tiny_official, bad)
    (bad / OFFICIAL_DIT).write_bytes(b"not a safetensors file")
    with pytest.raises(CheckpointError, match=r"could not read checkpoint .*diffusion_pytorch_model.safetensors"):
        load_pipeline(bad, device="cpu")


def test_nan_in_latents_raises_with_fp16_hint(tiny_official):
    pipe = load_pipeline(tiny_official, device="cpu")
    with torch.no_grad():
        pipe.dit.head.head.weight.fill_(float("nan"))
    with pytest.raises(NumericalError, match="NaN or inf values in the DiT output at step 1"):
        pipe.generate("x", progress=False, **SMALL)
    pipe.dtype = torch.float16  # what the message says depends on the precision in use
    with pytest.raises(NumericalError, match="use --dtype bf16"):
        pipe.generate("x", progress=False, **SMALL)


def test_unwritable_output_fails_before_loading_or_compute(tiny_pipe, tmp_path, capsys, monkeypatch):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    target = blocker / "out.mp4"  # parent is a file: cannot be created even as root
    monkeypatch.setattr(type(tiny_pipe), "_denoise", lambda *a, **k: pytest.fail("computed before checking output"))
    with pytest.raises(InputError, match="cannot write output"):
        tiny_pipe.generate("x", output=target, **SMALL)
    with pytest.raises(InputError, match=r"must end in \.mp4"):
        tiny_pipe.generate("x", output=tmp_path / "x.gif", **SMALL)
    # The CLI checks the output before it even reads the (here nonexistent) checkpoint.
    assert main(["generate", "x", "--model", str(tmp_path / "nowhere"), "-o", str(target)]) == 1
    assert "cannot write output" in capsys.readouterr().err


def test_empty_prompt_is_allowed_and_logged(tiny_pipe, caplog):
    with caplog.at_level(logging.INFO):
        r = tiny_pipe.generate("", progress=False, **SMALL)
    assert r.frames.shape[0] == 5
    assert "empty prompt" in caplog.text


class _Payload:
    """Unpickling this would run code; weights_only loading must refuse it."""

    def __reduce__(self):
        return (print, ("pickle code ran",))


def test_pth_is_loaded_without_executing_pickled_code(tmp_path, capsys):
    from openwan.checkpoint.io import read_state_dict

    path = tmp_path / "evil.pth"
    torch.save({"weight": torch.zeros(1), "payload": _Payload()}, path)
    with pytest.raises(CheckpointError, match="could not read checkpoint .*evil.pth"):
        read_state_dict(path)
    assert "pickle code ran" not in capsys.readouterr().out
