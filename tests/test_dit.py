"""Wan 2.1 DiT: official key names and sizes, parity with diffusers' WanTransformer3DModel, 3D RoPE,
key/config mapping, precision handling and input validation. Tiny fp32 configs, random weights."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F

from openwan.checkpoint.keymap_dit import (
    dit_config_from_diffusers,
    dit_config_from_state_dict,
    dit_config_to_diffusers,
    dit_diffusers_to_official,
    dit_official_to_diffusers,
)
from openwan.configs import VARIANTS, DiTConfig
from openwan.errors import CheckpointError, InputError
from openwan.models.attention import attention
from openwan.models.dit import WanDiT, sinusoidal_embedding
from openwan.models.rope import apply_rope, rope_axis_pairs, rope_tables

# head_dim 32 -> rotary pairs 6/5/5, so the three axes get different sub-dimensions.
TINY = DiTConfig(dim=128, ffn_dim=256, num_heads=4, num_layers=2, text_dim=32, freq_dim=256)
TINY_BY_TYPE = {
    "t2v": TINY,
    "i2v": replace(TINY, model_type="i2v", in_dim=36),
    "flf2v": replace(TINY, model_type="flf2v", in_dim=36),
}


@torch.no_grad()
def _randomized(cfg: DiTConfig, seed: int = 0) -> WanDiT:
    """A model whose every tensor is non-trivial (the official init zeroes the head and would hide bugs)."""
    g = torch.Generator().manual_seed(seed)
    model = WanDiT(cfg).eval()
    for name, p in model.named_parameters():
        noise = torch.randn(p.shape, generator=g)
        p.copy_(1 + 0.1 * noise if "norm" in name else 0.1 * noise)
    return model


def _inputs(cfg: DiTConfig, b: int = 2, grid=(3, 8, 8), text_tokens: int = 7, seed: int = 1) -> dict:
    g = torch.Generator().manual_seed(seed)
    out = dict(
        x=torch.randn(b, 16, *grid, generator=g),
        timestep=torch.tensor([999, 347][:b]),
        context=torch.randn(b, text_tokens, cfg.text_dim, generator=g),
    )
    if cfg.has_image_input:
        out["y"] = torch.randn(b, cfg.in_dim - 16, *grid, generator=g)
        tokens = 2 * cfg.image_tokens if cfg.model_type == "flf2v" else cfg.image_tokens
        out["clip_fea"] = torch.randn(b, tokens, cfg.image_dim, generator=g)
    return out


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a.double() - b.double()).norm() / b.double().norm()).item()


# ----------------------------------------------------------------------------------------------
# Structure: official names and parameter counts


def _expected_official_keys(cfg: DiTConfig) -> set[str]:
    """Official WanModel keys, written from the reference description (not from our module tree)."""
    lin = lambda p: {f"{p}.weight", f"{p}.bias"}  # noqa: E731
    keys = lin("patch_embedding") | lin("text_embedding.0") | lin("text_embedding.2")
    keys |= lin("time_embedding.0") | lin("time_embedding.2") | lin("time_projection.1")
    keys |= {"head.modulation"} | lin("head.head")
    for n in range(cfg.num_layers):
        b = f"blocks.{n}"
        keys |= {f"{b}.modulation", f"{b}.norm3.weight", f"{b}.norm3.bias"} | lin(f"{b}.ffn.0") | lin(f"{b}.ffn.2")
        for attn in ("self_attn", "cross_attn"):
            for p in "qkvo":
                keys |= lin(f"{b}.{attn}.{p}")
            keys |= {f"{b}.{attn}.norm_q.weight", f"{b}.{attn}.norm_k.weight"}
        if cfg.has_image_input:
            keys |= lin(f"{b}.cross_attn.k_img") | lin(f"{b}.cross_attn.v_img") | {f"{b}.cross_attn.norm_k_img.weight"}
    if cfg.has_image_input:
        for i in (0, 1, 3, 4):
            keys |= lin(f"img_emb.proj.{i}")
    if cfg.model_type == "flf2v":
        keys.add("img_emb.emb_pos")
    return keys


@pytest.mark.parametrize(
    "name, params",
    [("t2v-1.3B", 1_418_996_800), ("t2v-14B", 14_288_491_584), ("i2v-14B", 16_394_878_784),
     ("flf2v-14B", 16_395_536_704)],
)
def test_released_shapes_on_meta(name, params):
    cfg = VARIANTS[name].dit
    with torch.device("meta"):
        model = WanDiT(cfg)
    sd = model.state_dict()
    assert sum(t.numel() for t in sd.values()) == params
    assert set(sd) == _expected_official_keys(cfg)
    assert sd["patch_embedding.weight"].shape == (cfg.dim, cfg.in_dim, 1, 2, 2)
    assert sd["blocks.0.modulation"].shape == (1, 6, cfg.dim)
    assert sd["head.modulation"].shape == (1, 2, cfg.dim)
    assert sd["head.head.weight"].shape == (16 * 4, cfg.dim)
    if cfg.model_type == "flf2v":
        assert sd["img_emb.emb_pos"].shape == (1, 514, 1280)
    # The shapes alone give the config back (heads = dim // 128 for every release).
    assert dit_config_from_state_dict(sd) == cfg


def test_official_init():
    torch.manual_seed(0)
    model = WanDiT(TINY_BY_TYPE["flf2v"])
    assert torch.count_nonzero(model.head.head.weight) == 0
    assert torch.count_nonzero(model.blocks[0].self_attn.q.bias) == 0
    assert torch.count_nonzero(model.img_emb.emb_pos) == 0
    assert abs(model.text_embedding[0].weight.std().item() - 0.02) < 0.002
    bound = math.sqrt(6 / (2 * TINY.dim))  # xavier-uniform of a square Linear
    w = model.blocks[0].self_attn.q.weight
    assert w.abs().max() <= bound and w.abs().max() > 0.9 * bound
    assert abs(model.blocks[1].modulation.std().item() - TINY.dim**-0.5) < 0.2 * TINY.dim**-0.5
    # A zero head makes the freshly initialised model predict exactly zero.
    with torch.no_grad():
        assert torch.count_nonzero(model(**_inputs(model.config))) == 0


def test_meta_build_then_load_matches():
    from openwan.checkpoint.io import load_into

    model = _randomized(TINY_BY_TYPE["i2v"])
    with torch.device("meta"):
        shell = WanDiT(model.config)
    load_into(shell, model.state_dict(), source="test")
    inp = _inputs(model.config)
    with torch.no_grad():
        assert torch.equal(shell(**inp), model(**inp))
        # One timestep for the whole batch, as a plain number, broadcasts.
        same_t = {**inp, "timestep": torch.tensor([500, 500])}
        assert torch.equal(model(**{**inp, "timestep": 500}), model(**same_t))


# ----------------------------------------------------------------------------------------------
# Parity with diffusers


def _diffusers_model(model: WanDiT):
    diffusers = pytest.importorskip("diffusers")
    ref = diffusers.WanTransformer3DModel(**dit_config_to_diffusers(model.config)).eval()
    ref.load_state_dict(dit_official_to_diffusers(model.state_dict()), strict=True)
    # The official sinusoid is computed in float64, diffusers' in fp32 (a ~1e-5 difference at t ~ 1000
    # that would blur this comparison); give diffusers the float64 one so the rest is compared exactly.
    # test_sinusoidal_embedding checks the sinusoid itself against diffusers.
    ref.condition_embedder.timesteps_proj.forward = lambda t: sinusoidal_embedding(t, model.config.freq_dim).float()
    return ref


@pytest.mark.parametrize("model_type", ["t2v", "i2v", "flf2v"])
def test_parity_with_diffusers(model_type):
    model = _randomized(TINY_BY_TYPE[model_type])
    ref = _diffusers_model(model)
    inp = _inputs(model.config)
    with torch.no_grad():
        ours = model(**inp)
        # diffusers takes the text zero-padded to 512 rows, y already concatenated, and FLF2V's
        # first/last-frame CLIP features stacked on the batch axis (the official layout).
        x = torch.cat([inp["x"], inp["y"]], 1) if "y" in inp else inp["x"]
        clip = inp["clip_fea"].reshape(-1, 257, 1280) if "clip_fea" in inp else None
        theirs = ref(x, inp["timestep"], F.pad(inp["context"], (0, 0, 0, 512 - 7)),
                     encoder_hidden_states_image=clip, return_dict=False)[0]
        if model_type == "flf2v":  # our model accepts the official stacked layout too
            assert torch.equal(model(**{**inp, "clip_fea": clip}), ours)
    assert ours.dtype == torch.float32 and ours.shape == (2, 16, 3, 8, 8)
    assert _rel(ours, theirs) <= 1e-5
    # Each sample has its own timestep: the two halves of the batch are not computed alike.
    assert _rel(ours[1], theirs[1]) <= 1e-5 and _rel(ours[0], ours[1]) > 0.1


def test_sinusoidal_embedding():
    t = torch.tensor([0, 1, 347, 999])
    emb = sinusoidal_embedding(t, 256)
    assert emb.dtype == torch.float64 and emb.shape == (4, 256)
    i = torch.arange(128, dtype=torch.float64)
    args = t.double()[:, None] * 10000.0 ** (-i / 128)
    assert torch.equal(emb, torch.cat([args.cos(), args.sin()], dim=1))
    diffusers = pytest.importorskip("diffusers")
    theirs = diffusers.models.embeddings.Timesteps(256, flip_sin_to_cos=True, downscale_freq_shift=0)(t)
    assert (emb - theirs.double()).abs().max() < 1e-3  # diffusers' fp32 phase error at t ~ 1000


# ----------------------------------------------------------------------------------------------
# Key map and configs


def test_keymap_round_trip_and_unknown_keys():
    model = _randomized(TINY_BY_TYPE["flf2v"])  # has every kind of key
    sd = model.state_dict()
    diff = dit_official_to_diffusers(sd)
    assert len(diff) == len(sd)
    assert "condition_embedder.image_embedder.pos_embed" in diff and "blocks.1.attn2.norm_added_k.weight" in diff
    back = dit_diffusers_to_official(diff)
    assert list(back) == list(sd) and all(back[k] is sd[k] for k in sd)
    with pytest.raises(CheckpointError, match="blocks.0.foo"):
        dit_official_to_diffusers({**sd, "blocks.0.foo.weight": torch.zeros(1)})
    with pytest.raises(CheckpointError):
        dit_diffusers_to_official(sd)  # official keys are not diffusers keys


@pytest.mark.parametrize("model_type", ["t2v", "i2v", "flf2v"])
def test_config_inference_and_diffusers_config(model_type):
    cfg = TINY_BY_TYPE[model_type]
    sd = WanDiT(cfg).state_dict()
    assert dit_config_from_state_dict(sd, num_heads=4) == cfg
    assert dit_config_from_state_dict(sd) == replace(cfg, num_heads=1)  # 128 // 128
    assert dit_config_from_diffusers(dit_config_to_diffusers(cfg)) == cfg


def test_config_inference_needs_heads_for_odd_width():
    sd = WanDiT(replace(TINY, dim=96, num_heads=2, num_layers=1)).state_dict()
    with pytest.raises(CheckpointError, match="config.json"):
        dit_config_from_state_dict(sd)
    assert dit_config_from_state_dict(sd, num_heads=2).num_heads == 2
    with pytest.raises(CheckpointError, match="head.head.weight"):
        dit_config_from_state_dict(dit_official_to_diffusers(sd), num_heads=2)


# ----------------------------------------------------------------------------------------------
# RoPE


def _rope_reference(x: torch.Tensor, grid: tuple[int, int, int]) -> torch.Tensor:
    """Straight from the formula: float64 complex rotation of adjacent pairs, per-axis frequencies."""
    d = x.shape[-1]
    pairs_f = d // 2 - 2 * (d // 6)
    splits = [pairs_f, d // 6, d // 6]
    f, h, w = grid
    pos = torch.stack(torch.meshgrid(torch.arange(f), torch.arange(h), torch.arange(w), indexing="ij"), -1)
    pos = pos.reshape(-1, 3).double()  # [L, 3]
    angles = []
    for axis, n in enumerate(splits):
        freqs = 10000.0 ** (-torch.arange(0, 2 * n, 2, dtype=torch.float64) / (2 * n))
        angles.append(pos[:, axis : axis + 1] * freqs)
    rot = torch.polar(torch.ones(1, dtype=torch.float64), torch.cat(angles, -1))[None, :, None]  # [1, L, 1, d/2]
    xc = torch.view_as_complex(x.double().reshape(*x.shape[:-1], -1, 2))
    return torch.view_as_real(xc * rot).flatten(-2)


@pytest.mark.parametrize("head_dim, pairs", [(128, (22, 21, 21)), (32, (6, 5, 5))])
def test_rope_matches_complex_reference(head_dim, pairs):
    assert rope_axis_pairs(head_dim) == pairs
    grid = (3, 5, 7)
    x = torch.randn(2, math.prod(grid), 3, head_dim, generator=torch.Generator().manual_seed(0))
    cos, sin = rope_tables(grid, head_dim)
    ours = apply_rope(x, cos, sin)
    ref = _rope_reference(x, grid)
    assert ours.dtype == torch.float32 and (ours.double() - ref).abs().max() < 2e-6
    assert torch.equal(ours[:, 0], x[:, 0])  # position (0, 0, 0) is not rotated
    bf = apply_rope(x.bfloat16(), cos, sin)
    assert bf.dtype == torch.bfloat16 and _rel(bf, ref) < 1e-2


# ----------------------------------------------------------------------------------------------
# Precision, training and attention backends


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_reduced_precision_forward(dtype):
    model = _randomized(TINY_BY_TYPE["i2v"])
    inp = _inputs(model.config)
    with torch.no_grad():
        ref = model(**inp)
        low = model.to(dtype)(**inp)
    assert low.dtype == torch.float32 and model.head.head.weight.dtype == dtype
    assert _rel(low, ref) < 0.05


def test_gradient_checkpointing_gives_same_gradients():
    model = _randomized(TINY).train()
    inp = _inputs(TINY, grid=(1, 4, 4))
    grads = []
    for ckpt in (False, True):
        model.zero_grad()
        model.gradient_checkpointing = ckpt
        model(**inp).square().mean().backward()
        grads.append(torch.cat([p.grad.flatten() for p in model.parameters()]))
    assert grads[0].abs().sum() > 0 and torch.allclose(grads[0], grads[1], rtol=1e-5, atol=1e-8)


def test_attention_sdpa_and_forced_backends(monkeypatch):
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, n, 3, 16, generator=g) for n in (5, 9, 9))
    probs = torch.einsum("bqhd,bkhd->bhqk", q, k).div(4).softmax(-1)
    assert torch.allclose(attention(q, k, v), torch.einsum("bhqk,bkhd->bqhd", probs, v), atol=1e-6)
    assert torch.equal(attention(q, k, v, backend="sdpa"), attention(q, k, v))
    with pytest.raises(InputError, match="CUDA|not installed"):
        attention(q, k, v, backend="flash2")  # never silently falls back
    monkeypatch.setenv("OPENWAN_ATTENTION", "flash3")
    with pytest.raises(InputError, match="flash3"):
        attention(q, k, v)
    monkeypatch.setenv("OPENWAN_ATTENTION", "xformers")
    with pytest.raises(InputError, match="unknown attention backend"):
        attention(q, k, v)


def test_cpu_training_attention_on_short_sequences_runs_in_fp32_even_under_autocast():
    """bf16 SDPA's CPU backward is slow at short lengths, so training computes attention in fp32 there
    (benchmarks/bench_attention.py); inference and long sequences keep bf16."""
    import torch.nn.functional as F

    from openwan.models.attention import _UPCAST_MAX_SCORES

    g = torch.Generator().manual_seed(0)

    def qkv(lq: int, lk: int, grad: bool) -> list[torch.Tensor]:
        return [torch.randn(2, n, 4, 32, generator=g).bfloat16().requires_grad_(grad) for n in (lq, lk, lk)]

    def sdpa(q, k, v):  # [B, L, H, D] in and out
        return F.scaled_dot_product_attention(*(t.transpose(1, 2) for t in (q, k, v))).transpose(1, 2)

    q, k, v = qkv(80, 64, grad=True)
    fp32 = sdpa(q.float(), k.float(), v.float()).bfloat16()
    with torch.autocast("cpu", dtype=torch.bfloat16):  # how the trainer runs the DiT with precision = "bf16"
        out = attention(q, k, v)
    assert out.dtype == torch.bfloat16 and torch.equal(out, fp32)
    assert not torch.equal(out, sdpa(q, k, v))  # the bf16 kernel rounds differently: the fp32 path did run
    out.float().square().sum().backward()
    assert all(t.grad is not None and t.grad.dtype == torch.bfloat16 and t.grad.abs().sum() > 0 for t in (q, k, v))

    with torch.no_grad():  # inference: the input dtype, as before
        assert torch.equal(attention(q, k, v), sdpa(q, k, v))
    long_len = int(_UPCAST_MAX_SCORES**0.5) + 1  # long sequences: the bf16 kernel is as fast or faster
    q, k, v = qkv(long_len, long_len, grad=True)
    assert torch.equal(attention(q, k, v), sdpa(q, k, v))

# ----------------------------------------------------------------------------------------------
# Input validation


def test_bad_inputs_raise_input_error():
    t2v, i2v = _randomized(TINY), _randomized(TINY_BY_TYPE["i2v"])
    ok = _inputs(TINY)
    with pytest.raises(InputError, match="divisible by the patch"):
        t2v(**{**ok, "x": torch.randn(2, 16, 3, 8, 7)})
    with pytest.raises(InputError, match="input channels"):
        t2v(**{**ok, "x": torch.randn(2, 4, 3, 8, 8)})
    with pytest.raises(InputError, match="text_len"):
        t2v(**{**ok, "context": torch.randn(2, 513, TINY.text_dim)})
    with pytest.raises(InputError, match="timestep"):
        t2v(**{**ok, "timestep": torch.tensor([1, 2, 3])})
    with pytest.raises(InputError, match="no clip_fea"):
        t2v(**ok, clip_fea=torch.randn(2, 257, 1280))
    good = _inputs(i2v.config)
    with pytest.raises(InputError, match="needs clip_fea"):
        i2v(**{**good, "clip_fea": None})
    with pytest.raises(InputError, match="conditioning latents y"):
        i2v(**{**good, "y": None})
