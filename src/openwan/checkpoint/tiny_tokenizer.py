"""A tiny umT5-style tokenizer trained offline, for random-weight checkpoints and tests (no model hub).

The folder it writes looks like the released ``google/umt5-xxl`` one (``spiece.model`` +
``tokenizer.json`` + ``tokenizer_config.json``) and loads as a transformers ``T5Tokenizer``: ids
``<pad>`` 0, ``</s>`` 1, ``<unk>`` 2, ``</s>`` appended to every sequence, right padding. Extra
``<extra_id_N>`` sentinels (as in T5) fill the vocabulary up to the size asked for.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import sentencepiece as spm
from transformers import AutoTokenizer

from openwan.configs import DEFAULT_NEGATIVE_PROMPT

# Learned pieces; the rest of vocab_size is sentinels. 256 stays well under what this corpus supports.
SPM_PIECES = 256

CORPUS = [
    "A cat walks on the grass in the soft morning light.",
    "Two anthropomorphic cats in comfy boxing gear fight intensely on a spotlighted stage.",
    "A drone shot flies over snowy mountains at sunrise, mist drifting through the valleys.",
    "The camera pans slowly across a neon-lit city street at night while rain falls.",
    "A young woman reads a book by the window of a quiet cafe, steam rising from her cup.",
    "Close-up of ocean waves crashing against black volcanic rocks, slow motion.",
    "An astronaut rides a horse across the surface of the moon, cinematic lighting.",
    "A red fox runs through an autumn forest, leaves swirling behind it.",
    "Time-lapse of clouds moving over a golden wheat field under a blue sky.",
    "A chef chops vegetables quickly in a busy restaurant kitchen.",
    "Children fly colorful kites on a windy beach in summer.",
    "A vintage train crosses a stone bridge above a deep green river.",
    "A panda eats bamboo in a misty forest, gentle handheld camera.",
    "Fireworks explode above a harbor, reflections shimmering on the water.",
    "An old man plays the violin on a street corner as people walk by.",
    "A golden retriever catches a frisbee in a sunny park.",
    "一只猫在清晨柔和的阳光下走过草地。",
    "两只穿着拳击装备的拟人化猫咪在聚光灯照亮的舞台上激烈搏斗。",
    "无人机在日出时飞越雪山，薄雾在山谷间飘荡。",
    "镜头缓缓扫过夜晚霓虹闪烁的城市街道，细雨纷飞。",
    "一位年轻女子在安静咖啡馆的窗边读书，杯中热气升腾。",
    "海浪拍打黑色火山岩的特写，慢动作。",
    "宇航员骑着马穿越月球表面，电影级光影。",
    "一只红狐狸跑过秋天的森林，落叶在身后飞舞。",
    "大熊猫在云雾缭绕的竹林里吃竹子，手持镜头轻轻晃动。",
    "一位老人在街角拉小提琴，行人从旁边走过。",
    DEFAULT_NEGATIVE_PROMPT,
]


def build_tiny_tokenizer(out_dir: Path, vocab_size: int = 512, corpus: list[str] | None = None,
                         pieces: int = SPM_PIECES, symbols: list[str] | None = None) -> Path:
    """Train a unigram SentencePiece model with ``pieces`` pieces on ``corpus`` (default CORPUS) and save
    it as a T5 tokenizer folder. ``symbols`` are always single pieces: without them, unsegmented Chinese
    lets whole phrases ("一个红色的圆") become one piece, and attribute words never become tokens.

    ``len(AutoTokenizer.from_pretrained(out_dir))`` equals ``vocab_size``, so a model with that many
    embeddings covers every id. Deterministic (single-threaded training) and about a second.
    """
    if vocab_size < pieces:
        raise ValueError(f"vocab_size must be at least {pieces}, got {vocab_size}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)

    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(corpus if corpus is not None else CORPUS),
        model_writer=model,
        model_type="unigram",
        vocab_size=pieces,
        pad_id=0,
        eos_id=1,
        unk_id=2,
        bos_id=-1,  # T5 has no BOS
        character_coverage=1.0,  # keep every CJK character of the corpus
        user_defined_symbols=list(symbols or []),
        num_threads=1,
        minloglevel=2,
    )
    (out_dir / "spiece.model").write_bytes(model.getvalue())
    config = {"tokenizer_class": "T5Tokenizer", "extra_ids": vocab_size - pieces, "model_max_length": 512}
    (out_dir / "tokenizer_config.json").write_text(json.dumps(config, indent=2))

    # transformers converts spiece.model into its tokenizers backend; saving adds tokenizer.json, the
    # file the released folders load from.
    tokenizer = AutoTokenizer.from_pretrained(str(out_dir), local_files_only=True)
    tokenizer.save_pretrained(str(out_dir))
    return out_dir
