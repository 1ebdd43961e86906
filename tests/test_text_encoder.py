"""umT5 text encoder: official <-> transformers key map, parity with an independent forward written from
the official t5.py semantics, Wan's trim-and-zero-pad encode, prompt cleaning and tokenizer loading."""

from __future__ import annotations

import copy
import filecmp
import math
import time
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from transformers import AutoTokenizer

from openwan.checkpoint.io import load_into, read_state_dict, write_pth
from openwan.checkpoint.keymap_t5 import (
    TRANSFORMERS_EMBEDDINGS,
    t5_official_to_transformers,
    t5_transformers_to_official,
)
from openwan.checkpoint.tiny_tokenizer import build_tiny_tokenizer
from openwan.errors import CheckpointError, InputError
from openwan.models.text_encoder import (
    WanTextEncoder,
    build_umt5_encoder,
    clean_prompt,
    load_tokenizer,
    umt5_config_from_official_state_dict,
    umt5_xxl_config,
)

VOCAB = 320
TINY = dict(dim=32, dim_attn=32, dim_ffn=64, num_heads=4, num_layers=2, num_buckets=32)
PROMPTS = ["A cat walks on the grass in the soft morning light.", "一只猫在清晨柔和的阳光下走过草地。", "fox"]


def official_state_dict(vocab: int, dim: int, dim_attn: int, dim_ffn: int, num_heads: int, num_layers: int,
                        num_buckets: int, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random weights in the official T5Encoder layout; norms near 1 and distinct everywhere, so any
    swapped or dropped tensor in a mapping changes the output."""
    g = torch.Generator().manual_seed(seed)

    def randn(*shape, std=1.0):
        return std * torch.randn(*shape, generator=g)

    sd = {"token_embedding.weight": randn(vocab, dim)}
    for i in range(num_layers):
        p = f"blocks.{i}."
        sd[p + "norm1.weight"] = 1 + randn(dim, std=0.1)
        for name in "qkv":
            sd[p + f"attn.{name}.weight"] = randn(dim_attn, dim, std=dim**-0.5)
        sd[p + "attn.o.weight"] = randn(dim, dim_attn, std=dim_attn**-0.5)
        sd[p + "pos_embedding.embedding.weight"] = randn(num_buckets, num_heads, std=0.5)
        sd[p + "norm2.weight"] = 1 + randn(dim, std=0.1)
        sd[p + "ffn.gate.0.weight"] = randn(dim_ffn, dim, std=dim**-0.5)
        sd[p + "ffn.fc1.weight"] = randn(dim_ffn, dim, std=dim**-0.5)
        sd[p + "ffn.fc2.weight"] = randn(dim, dim_ffn, std=dim_ffn**-0.5)
    sd["norm.weight"] = 1 + randn(dim, std=0.1)
    return sd


# --- independent reference: the official T5Encoder forward (wan/modules/t5.py), on official keys ----------

def ref_bucket(rel: torch.Tensor, num_buckets: int, max_dist: int = 128) -> torch.Tensor:
    """Bidirectional T5 bucket: half the buckets per direction, exact up to a quarter, log-spaced after."""
    half = num_buckets // 2
    exact = half // 2
    bucket = (rel > 0).long() * half
    dist = rel.abs()
    log_part = exact + (torch.log(dist.float() / exact) / math.log(max_dist / exact) * (half - exact)).long()
    return bucket + torch.where(dist < exact, dist, log_part.clamp(max=half - 1))


def ref_norm(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    return weight * (x * torch.rsqrt(x.float().pow(2).mean(-1, keepdim=True) + 1e-6))


def ref_gelu_tanh(x: torch.Tensor) -> torch.Tensor:
    return 0.5 * x * (1 + torch.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x**3)))


def reference_encoder(sd: dict[str, torch.Tensor], ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    b, n = ids.shape
    num_buckets, heads = sd["blocks.0.pos_embedding.embedding.weight"].shape
    layers = 1 + max(int(k.split(".")[1]) for k in sd if k.startswith("blocks."))
    pos = torch.arange(n)
    buckets = ref_bucket(pos[None, :] - pos[:, None], num_buckets)  # [query, key]
    x = sd["token_embedding.weight"][ids]
    for i in range(layers):
        w = {k.removeprefix(f"blocks.{i}."): v for k, v in sd.items() if k.startswith(f"blocks.{i}.")}
        h = ref_norm(x, w["norm1.weight"])
        q, k, v = (F.linear(h, w[f"attn.{c}.weight"]).view(b, n, heads, -1) for c in "qkv")
        bias = w["pos_embedding.embedding.weight"][buckets].permute(2, 0, 1)[None]  # per-layer table
        logits = torch.einsum("bihd,bjhd->bhij", q, k) + bias  # no 1/sqrt(d) scaling in T5
        logits = logits.masked_fill(mask[:, None, None, :] == 0, torch.finfo(x.dtype).min)
        attn = logits.float().softmax(-1).type_as(logits)
        x = x + F.linear(torch.einsum("bhij,bjhd->bihd", attn, v).reshape(b, n, -1), w["attn.o.weight"])
        h = ref_norm(x, w["norm2.weight"])
        gated = ref_gelu_tanh(F.linear(h, w["ffn.gate.0.weight"])) * F.linear(h, w["ffn.fc1.weight"])
        x = x + F.linear(gated, w["ffn.fc2.weight"])
    return ref_norm(x, sd["norm.weight"])


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a.double() - b.double()).norm() / b.double().norm()).item()


# --- fixtures ------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def tokenizer_dir(tmp_path_factory):
    return build_tiny_tokenizer(tmp_path_factory.mktemp("tok") / "umt5", vocab_size=VOCAB)


@pytest.fixture(scope="module")
def tokenizer(tokenizer_dir):
    return load_tokenizer(tokenizer_dir)


@pytest.fixture(scope="module")
def official_sd():
    return official_state_dict(VOCAB, **TINY)


def encoder_from_official(sd, tokenizer, text_len: int = 512) -> WanTextEncoder:
    """The loader's path: infer the config, build on meta, assign the mapped weights strictly."""
    model = build_umt5_encoder(umt5_config_from_official_state_dict(sd), device="meta")
    load_into(model, t5_official_to_transformers(sd), source="test umT5")
    return WanTextEncoder(model, tokenizer, text_len=text_len)


@pytest.fixture(scope="module")
def encoder(official_sd, tokenizer):
    return encoder_from_official(official_sd, tokenizer)


# --- key map -------------------------------------------------------------------------------------------------

def test_official_pth_round_trips_through_transformers_keys(tmp_path, official_sd):
    path = write_pth({k: v.bfloat16() for k, v in official_sd.items()}, tmp_path / "models_t5_umt5-xxl-enc-bf16.pth")
    loaded = read_state_dict(path)

    mapped = t5_official_to_transformers(loaded)
    model_sd = build_umt5_encoder(umt5_config_from_official_state_dict(loaded)).state_dict()
    assert set(mapped) == set(model_sd)
    assert {k: tuple(v.shape) for k, v in mapped.items()} == {k: tuple(v.shape) for k, v in model_sd.items()}
    assert mapped["shared.weight"] is mapped["encoder.embed_tokens.weight"] is loaded["token_embedding.weight"]
    assert mapped["encoder.block.1.layer.1.DenseReluDense.wi_0.weight"] is loaded["blocks.1.ffn.gate.0.weight"]

    back = t5_transformers_to_official(mapped)
    assert set(back) == set(loaded)
    for k, v in loaded.items():
        assert back[k] is v  # renamed, never copied
        assert back[k].dtype == torch.bfloat16 and torch.equal(back[k], official_sd[k].bfloat16())


def test_transformers_state_dict_round_trips_and_loads_strictly(official_sd):
    model = build_umt5_encoder(umt5_config_from_official_state_dict(official_sd), device="cpu")
    own = model.state_dict()
    again = t5_official_to_transformers(t5_transformers_to_official(own))
    assert set(again) == set(own) and all(torch.equal(again[k], own[k]) for k in own)

    # Saved checkpoints often hold only one embedding name; either one maps back.
    others = {k: v for k, v in own.items() if k not in TRANSFORMERS_EMBEDDINGS}
    for kept in TRANSFORMERS_EMBEDDINGS:
        partial = {**others, kept: own[kept]}
        assert torch.equal(t5_transformers_to_official(partial)["token_embedding.weight"], own[kept])

    # A strict load by assignment into a meta model (what the loader does) accepts the mapped dict.
    meta = build_umt5_encoder(model.config)
    meta.load_state_dict(t5_official_to_transformers(official_sd), strict=True, assign=True)
    assert not any(p.is_meta for p in meta.parameters())


def test_key_map_rejects_unknown_and_foreign_keys(official_sd):
    with pytest.raises(CheckpointError, match="blocks.0.attn.bogus.weight"):
        t5_official_to_transformers({**official_sd, "blocks.0.attn.bogus.weight": torch.zeros(1)})
    with pytest.raises(CheckpointError, match="token_embedding.weight"):
        t5_official_to_transformers(t5_official_to_transformers(official_sd))
    with pytest.raises(CheckpointError, match="shared.weight"):
        t5_transformers_to_official(official_sd)


# --- configs -------------------------------------------------------------------------------------------------

def test_config_inferred_from_official_shapes():
    sd = official_state_dict(100, dim=24, dim_attn=48, dim_ffn=40, num_heads=3, num_layers=3, num_buckets=16)
    c = umt5_config_from_official_state_dict(sd)
    assert (c.vocab_size, c.d_model, c.d_kv, c.d_ff, c.num_heads, c.num_layers, c.relative_attention_num_buckets) \
        == (100, 24, 16, 40, 3, 3, 16)
    assert c.relative_attention_max_distance == 128 and c.layer_norm_epsilon == 1e-6
    assert c.is_gated_act and c.dense_act_fn == "gelu_new"

    plain_t5 = {k: v for k, v in sd.items() if "pos_embedding" not in k}
    plain_t5["pos_embedding.embedding.weight"] = torch.zeros(16, 3)
    with pytest.raises(CheckpointError, match="plain T5"):
        umt5_config_from_official_state_dict(plain_t5)


def test_umt5_xxl_config_has_the_released_parameter_count():
    c = umt5_xxl_config()
    assert (c.vocab_size, c.d_model, c.d_ff, c.num_heads, c.num_layers, c.d_kv) == (256384, 4096, 10240, 64, 24, 64)
    model = build_umt5_encoder(c)  # meta: instant, no memory
    assert sum(p.numel() for p in model.parameters()) == 5_680_910_336  # 5.68 B, embedding counted once
    attn = model.encoder.block[23].layer[0].SelfAttention
    assert attn.has_relative_attention_bias and attn.scaling == 1.0


# --- parity with the official forward ------------------------------------------------------------------------

def test_encoder_matches_official_forward_including_far_positions(official_sd, encoder):
    # Row 0 fills all 512 positions, so relative distances reach the log-spaced and clamped buckets.
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(3, VOCAB, (2, 512), generator=g)
    mask = torch.ones(2, 512, dtype=torch.long)
    mask[1, 37:] = 0
    ids[1, 37:] = 0
    with torch.no_grad():
        ours = encoder.model(input_ids=ids, attention_mask=mask).last_hidden_state
    assert rel_err(ours, reference_encoder(official_sd, ids, mask)) <= 1e-5


def test_encode_matches_official_and_diffusers_semantics(official_sd, encoder, tokenizer):
    emb, lengths = encoder.encode(PROMPTS)

    tokens = tokenizer(PROMPTS, padding="max_length", max_length=512, truncation=True, return_tensors="pt")
    ref = reference_encoder(official_sd, tokens.input_ids, tokens.attention_mask)
    for i, n in enumerate(tokens.attention_mask.sum(1).tolist()):
        assert lengths[i] == n
        assert rel_err(emb[i, :n], ref[i, :n]) <= 1e-5

    pipeline_wan = pytest.importorskip("diffusers.pipelines.wan.pipeline_wan")
    fake_pipe = SimpleNamespace(tokenizer=tokenizer, text_encoder=encoder.model, _execution_device=torch.device("cpu"))
    theirs = pipeline_wan.WanPipeline._get_t5_prompt_embeds(
        fake_pipe, PROMPTS, max_sequence_length=512, device=torch.device("cpu"), dtype=torch.float32)
    torch.testing.assert_close(emb, theirs, rtol=1e-6, atol=1e-6)


# --- encode semantics -------------------------------------------------------------------------------------------

def test_encode_trims_and_zero_pads(encoder, tokenizer):
    emb, lengths = encoder.encode(PROMPTS)
    assert emb.shape == (3, 512, 32) and emb.dtype == torch.float32
    assert lengths.dtype == torch.int64
    assert lengths.tolist() == [len(tokenizer(p).input_ids) for p in PROMPTS]  # </s> included
    for row, n in zip(emb, lengths.tolist()):
        assert torch.all(row[n:] == 0)
        assert torch.all(row[:n].abs().sum(-1) > 0)
    # Padding never leaks between prompts of a batch.
    for i, p in enumerate(PROMPTS):
        alone, _ = encoder.encode([p])
        torch.testing.assert_close(alone[0], emb[i], rtol=1e-5, atol=1e-6)


def test_encode_truncates_to_text_len(encoder, official_sd, tokenizer):
    long_prompt = "a red fox runs through an autumn forest " * 200
    _, lengths = encoder.encode([long_prompt])
    assert lengths.tolist() == [512]

    short = encoder_from_official(official_sd, tokenizer, text_len=16)
    emb, lengths = short.encode([long_prompt, "fox"])
    assert emb.shape == (2, 16, 32) and lengths.tolist() == [16, len(tokenizer("fox").input_ids)]
    assert torch.all(emb[0].abs().sum(-1) > 0)


def test_empty_prompt_is_just_eos(encoder):
    emb, lengths = encoder.encode(["", "fox"])
    assert lengths[0] == 1
    assert emb[0, 0].abs().sum() > 0 and torch.all(emb[0, 1:] == 0)


def test_bad_prompts_raise_input_error(encoder):
    with pytest.raises(InputError):
        encoder.encode([])
    with pytest.raises(InputError):
        encoder.encode(["ok", 3])


def test_prompt_cleaning():
    assert clean_prompt("  A&amp;amp;B\n\t\u3000c  ") == "A&B c"  # double unescape, Unicode whitespace
    assert clean_prompt("cafÃ© au lait") == "café au lait"  # mojibake fixed by ftfy
    assert clean_prompt("一只猫，  在草地上") == "一只猫, 在草地上"  # ftfy also folds full-width punctuation
    assert clean_prompt("") == ""


def test_encode_cleans_prompts(encoder):
    messy, messy_len = encoder.encode(["  a   red fox &amp;amp; a cat\n"])
    clean, clean_len = encoder.encode(["a red fox & a cat"])
    assert torch.equal(messy, clean) and torch.equal(messy_len, clean_len)


def test_encoder_keeps_model_dtype_and_one_embedding(official_sd, encoder, tokenizer):
    model = encoder.model
    assert model.encoder.embed_tokens.weight is model.shared.weight  # re-tied after assignment
    bf16 = WanTextEncoder(copy.deepcopy(model).to(torch.bfloat16), tokenizer)
    emb, _ = bf16.encode(PROMPTS[:1])
    ref, _ = encoder.encode(PROMPTS[:1])
    assert emb.dtype == torch.bfloat16
    assert rel_err(emb, ref) < 5e-2


# --- tokenizer -----------------------------------------------------------------------------------------------

def test_tiny_tokenizer_behaves_like_umt5(tmp_path, tokenizer_dir):
    start = time.perf_counter()
    again = build_tiny_tokenizer(tmp_path / "again", vocab_size=VOCAB)
    assert time.perf_counter() - start < 2.0
    for f in sorted(p.name for p in tokenizer_dir.iterdir()):
        assert filecmp.cmp(tokenizer_dir / f, again / f, shallow=False), f"{f} differs between builds"
    assert {"spiece.model", "tokenizer.json", "tokenizer_config.json"} <= {p.name for p in again.iterdir()}

    tok = AutoTokenizer.from_pretrained(str(again), local_files_only=True)
    assert type(tok).__name__ == "T5Tokenizer" and len(tok) == VOCAB
    assert (tok.pad_token, tok.pad_token_id, tok.eos_token, tok.eos_token_id, tok.unk_token, tok.unk_token_id) \
        == ("<pad>", 0, "</s>", 1, "<unk>", 2)
    out = tok(["a cat", "一只猫在草地上"], padding="max_length", max_length=12, truncation=True,
              add_special_tokens=True, return_attention_mask=True)
    for ids, mask in zip(out.input_ids, out.attention_mask):
        n = sum(mask)
        assert ids[n - 1] == 1 and ids[n:] == [0] * (12 - n) and 2 not in ids  # </s> appended, no <unk>
    assert tok("").input_ids == [1]


def test_load_tokenizer_errors_name_the_folder(tmp_path, tokenizer_dir):
    assert load_tokenizer(tokenizer_dir)("fox").input_ids[-1] == 1
    empty = tmp_path / "google" / "umt5-xxl"
    empty.mkdir(parents=True)
    with pytest.raises(CheckpointError, match=str(empty)) as err:
        load_tokenizer(empty)
    assert "tokenizer.json" in str(err.value)
    with pytest.raises(CheckpointError, match="not found"):
        load_tokenizer(tmp_path / "missing")


def test_write_pth_is_byte_reproducible(tmp_path) -> None:
    """The same weights give the same .pth bytes, whatever temporary file the atomic write went through (the
    zip's record prefix must not carry the temporary name), so a re-run of a recipe can be checked with cmp."""
    sd = {"a.weight": torch.arange(6, dtype=torch.bfloat16).reshape(2, 3), "b": torch.ones(4)}
    one = write_pth(sd, tmp_path / "one" / "models_t5_umt5-xxl-enc-bf16.pth")
    two = write_pth(sd, tmp_path / "two" / "models_t5_umt5-xxl-enc-bf16.pth")
    assert one.read_bytes() == two.read_bytes()
    back = read_state_dict(two)
    assert set(back) == set(sd) and all(torch.equal(back[k], sd[k]) for k in sd)
