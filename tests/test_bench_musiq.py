"""MUSIQ: native torch implementation vs pyiqa's MUSIQ architecture (oracle), plus loading and the metric.

The oracle is pyiqa's ``archs/musiq_arch.py`` loaded straight from its file (with the few pyiqa helpers it
imports loaded from their own files), so pyiqa's heavy dependencies are not needed. It is found under
``$OPENWAN_PYIQA_SRC`` (a folder holding ``pyiqa/``, e.g. an unzipped pyiqa wheel) or an installed pyiqa;
without either the parity tests skip. Nothing is downloaded here.
"""

from __future__ import annotations

import ast
import importlib.util
import os
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch

from openwan.bench.model_metrics.musiq import (
    Musiq,
    MusiqScorer,
    musiq_config_from_state_dict,
    musiq_quality,
)
from openwan.errors import InputError

SMALL = {"patch_size": 32, "hidden_size": 32, "mlp_dim": 64, "num_heads": 2, "num_layers": 2, "grid": 4}
SIDES = (64, 96)


def _pyiqa_root() -> Path | None:
    env = os.environ.get("OPENWAN_PYIQA_SRC")
    if env and (Path(env) / "pyiqa" / "archs" / "musiq_arch.py").is_file():
        return Path(env)
    try:
        spec = importlib.util.find_spec("pyiqa")  # locates without importing pyiqa's dependencies
    except (ImportError, ValueError):
        spec = None
    if spec is not None and spec.origin and (Path(spec.origin).parent / "archs" / "musiq_arch.py").is_file():
        return Path(spec.origin).parent.parent
    return None


def _load_file(name: str, path: Path) -> types.ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def oracle() -> types.ModuleType:
    root = _pyiqa_root()
    if root is None:
        pytest.skip("pyiqa's MUSIQ arch not found (set OPENWAN_PYIQA_SRC to an unzipped pyiqa wheel)")
    pkg = root / "pyiqa"
    saved = {k: v for k, v in sys.modules.items() if k == "pyiqa" or k.startswith("pyiqa.")}
    for k in saved:
        del sys.modules[k]
    try:
        for name in ("pyiqa", "pyiqa.archs", "pyiqa.data", "pyiqa.utils", "pyiqa.utils.registry"):
            m = types.ModuleType(name)
            m.__path__ = []  # a bare package: nothing of pyiqa's __init__ (and its deps) runs
            sys.modules[name] = m
        sys.modules["pyiqa.utils.registry"].ARCH_REGISTRY = types.SimpleNamespace(register=lambda: (lambda c: c))
        padding = pkg / "matlab_utils" / "padding.py"
        sys.modules["pyiqa.matlab_utils"] = _load_file("pyiqa.matlab_utils.padding", padding)
        _load_file("pyiqa.data.multiscale_trans_util", pkg / "data" / "multiscale_trans_util.py")
        # arch_util pulls in torchvision/huggingface_hub; take only its dist_to_mos, from its own source
        util = types.ModuleType("pyiqa.archs.arch_util")
        src = (pkg / "archs" / "arch_util.py").read_text()
        fn = next(n for n in ast.parse(src).body if isinstance(n, ast.FunctionDef) and n.name == "dist_to_mos")
        exec(compile(ast.Module([fn], []), "arch_util.py", "exec"), util.__dict__ | {"torch": torch}, ns := {})  # noqa: S102 - oracle code
        util.dist_to_mos = ns["dist_to_mos"]
        util.get_url_from_name = lambda name, **_: name
        util.load_pretrained_network = lambda *a, **k: None
        sys.modules["pyiqa.archs.arch_util"] = util
        mod = _load_file("pyiqa.archs.musiq_arch", pkg / "archs" / "musiq_arch.py")
    finally:
        for k in [k for k in sys.modules if k == "pyiqa" or k.startswith("pyiqa.")]:
            del sys.modules[k]
        sys.modules.update(saved)
    return mod


def _randomize(model: torch.nn.Module, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.startswith(("gn", "block1.gn")) or ".norm" in name or "encoder_norm" in name:
                # norm affine near identity so activations stay in a realistic range
                p.copy_((1.0 if name.endswith("weight") else 0.0) + 0.1 * torch.randn(p.shape, generator=g))
            else:
                p.copy_(0.6 * torch.randn(p.shape, generator=g) / max(p[0].numel(), 1) ** 0.5)


@pytest.mark.parametrize("num_class", [1, 5])
def test_parity_with_pyiqa(oracle: types.ModuleType, num_class: int, tmp_path: Path) -> None:
    torch.manual_seed(0)
    ref = oracle.MUSIQ(patch_size=32, hidden_size=32, mlp_dim=64, num_heads=2, num_layers=2,
                       spatial_pos_grid_size=4, num_class=num_class, pretrained=False,
                       longer_side_lengths=list(SIDES)).eval()
    _randomize(ref, seed=num_class)
    path = tmp_path / "musiq.pth"
    torch.save(ref.state_dict(), path)
    ours = MusiqScorer.from_path(path, num_heads=2, longer_side_lengths=SIDES).model
    g = torch.Generator().manual_seed(1)
    worst = 0.0
    for h, w in [(64, 64), (50, 70), (96, 40), (33, 130), (100, 100)]:
        x = torch.rand(2, 3, h, w, generator=g)
        with torch.no_grad():
            want = ref(x).reshape(-1)
            got = ours(x)
        worst = max(worst, float((want - got).abs().max()))
    assert worst <= 1e-4, worst


def test_checkpoint_roundtrip_and_config(tmp_path: Path) -> None:
    pytest.importorskip("safetensors")
    from safetensors.torch import save_file

    torch.manual_seed(0)
    m = Musiq(**SMALL, num_class=10, longer_side_lengths=SIDES)
    sd = m.state_dict()
    cfg = musiq_config_from_state_dict(sd)
    assert cfg == {"patch_size": 32, "hidden_size": 32, "mlp_dim": 64, "num_layers": 2, "num_scales": 3,
                   "grid": 4, "num_class": 10}
    save_file({k: v.contiguous() for k, v in sd.items()}, tmp_path / "m.safetensors")
    torch.save({"params": {f"module.{k}": v for k, v in sd.items()}}, tmp_path / "m.pth")
    x = torch.rand(1, 3, 40, 60)
    with torch.no_grad():
        want = m.eval()(x)
        for name in ("m.safetensors", "m.pth"):
            got = MusiqScorer.from_path(tmp_path / name, num_heads=2, longer_side_lengths=SIDES).model(x)
            torch.testing.assert_close(got, want)
    assert 1.0 <= float(want) <= 10.0  # AVA-style head: mean of a 1..10 rating distribution


def test_musiq_quality_metric(tmp_path: Path) -> None:
    torch.manual_seed(0)
    path = tmp_path / "m.pth"
    torch.save(Musiq(**SMALL, longer_side_lengths=SIDES).state_dict(), path)
    scorer = MusiqScorer.from_path(path, num_heads=2, longer_side_lengths=SIDES)
    video = np.random.default_rng(0).integers(0, 256, (10, 40, 56, 3), dtype=np.uint8)
    r = musiq_quality(video, scorer, frames=3)
    assert r.name == "musiq" and r.ok and r.status == "ok"
    assert r.details["frames"] == [0, 4, 9] and len(r.details["scores"]) == 3
    assert abs(r.value - float(np.mean(r.details["scores"]))) < 1e-3
    with pytest.raises(InputError):
        musiq_quality(video.astype(np.float32), scorer)


def test_bad_files_are_input_errors(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="not found"):
        MusiqScorer.from_path(tmp_path / "missing.pth")
    torch.save({"weight": torch.zeros(2)}, tmp_path / "other.pth")
    with pytest.raises(InputError, match="not a MUSIQ checkpoint"):
        MusiqScorer.from_path(tmp_path / "other.pth")
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(InputError, match="cannot read"):
        MusiqScorer.from_path(tmp_path / "junk.pth")
    torch.manual_seed(0)
    torch.save(Musiq(**SMALL, longer_side_lengths=SIDES).state_dict(), tmp_path / "m.pth")
    with pytest.raises(InputError, match="scale"):  # 3 scale embeddings but only one resized scale
        MusiqScorer.from_path(tmp_path / "m.pth", num_heads=2, longer_side_lengths=(64,))
