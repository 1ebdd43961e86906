"""Bilingual (English / Chinese) caption templates for the synthetic physics world.

Kept apart from the renderer so wording can change without touching physics. Every motion has at least
two paraphrases per language; ``variant`` picks one (modulo the count) so a dataset sees varied wording
for the same event while evaluation prompts stay fixed.
"""

from __future__ import annotations

from ..errors import InputError

LANGUAGES = ("en", "zh")

COLOUR_WORDS: dict[str, dict[str, str]] = {
    "red": {"en": "red", "zh": "红色"},
    "green": {"en": "green", "zh": "绿色"},
    "blue": {"en": "blue", "zh": "蓝色"},
    "yellow": {"en": "yellow", "zh": "黄色"},
    "purple": {"en": "purple", "zh": "紫色"},
    "orange": {"en": "orange", "zh": "橙色"},
    "cyan": {"en": "cyan", "zh": "青色"},
    "white": {"en": "white", "zh": "白色"},
}

SHAPE_WORDS: dict[str, dict[str, str]] = {
    "circle": {"en": "circle", "zh": "圆"},
    "square": {"en": "square", "zh": "正方形"},
    "triangle": {"en": "triangle", "zh": "三角形"},
    "star": {"en": "star", "zh": "星星"},
}

SIZE_WORDS: dict[str, dict[str, str]] = {
    "small": {"en": "small", "zh": "小的"},
    "large": {"en": "large", "zh": "大的"},
}

# {obj} is "a small blue square" / "一个小的蓝色正方形"; {obj2} is the second object of a collision and
# {pair_a}/{pair_b} are the bare "red circle" / "红色的圆" forms used where an article reads badly.
MOTION_TEMPLATES: dict[str, dict[str, tuple[str, ...]]] = {
    "moves left": {
        "en": ("{obj} moves to the left", "{obj} slides left across the frame", "{obj} travels from right to left"),
        "zh": ("{obj}向左移动", "{obj}从右往左滑动", "{obj}向左边平移"),
    },
    "moves right": {
        "en": ("{obj} moves to the right", "{obj} slides right across the frame", "{obj} travels from left to right"),
        "zh": ("{obj}向右移动", "{obj}从左往右滑动", "{obj}向右边平移"),
    },
    "moves up": {
        "en": ("{obj} moves up", "{obj} rises steadily", "{obj} slides upward"),
        "zh": ("{obj}向上移动", "{obj}匀速上升", "{obj}往上滑动"),
    },
    "moves down": {
        "en": ("{obj} moves down", "{obj} sinks steadily", "{obj} slides downward"),
        "zh": ("{obj}向下移动", "{obj}匀速下降", "{obj}往下滑动"),
    },
    "falls and bounces": {
        "en": ("{obj} falls and bounces", "{obj} drops to the floor and bounces",
               "{obj} falls down and bounces off the ground"),
        "zh": ("{obj}落下并弹起", "{obj}掉到地上又弹了起来", "{obj}从上方落下，碰到地面后反弹"),
    },
    "collides": {
        "en": ("{pair_a} and {pair_b} collide", "{obj} and {obj2} move toward each other and collide",
               "{obj} crashes into {obj2}"),
        "zh": ("{pair_a}和{pair_b}相撞", "{obj}和{obj2}相向而行并碰撞", "{obj}撞上了{obj2}"),
    },
    "grows": {
        "en": ("{obj} grows", "{obj} gets bigger", "{obj} slowly grows larger"),
        "zh": ("{obj}逐渐变大", "{obj}慢慢长大", "{obj}越变越大"),
    },
    "shrinks": {
        "en": ("{obj} shrinks", "{obj} gets smaller", "{obj} slowly shrinks away"),
        "zh": ("{obj}逐渐变小", "{obj}慢慢缩小", "{obj}越变越小"),
    },
    "stays still": {
        "en": ("{obj} stays still", "{obj} rests motionless", "{obj} does not move"),
        "zh": ("{obj}静止不动", "{obj}停在原地", "{obj}一动不动"),
    },
    "camera pans left": {
        "en": ("the camera pans left over {obj}", "{obj} sits still as the camera pans to the left"),
        "zh": ("镜头向左平移，画面中有{obj}", "摄像机向左移动，拍摄{obj}"),
    },
    "camera pans right": {
        "en": ("the camera pans right over {obj}", "{obj} sits still as the camera pans to the right"),
        "zh": ("镜头向右平移，画面中有{obj}", "摄像机向右移动，拍摄{obj}"),
    },
}

MOTIONS = tuple(MOTION_TEMPLATES)


def object_phrase(shape: str, colour: str, size: str | None, language: str) -> str:
    """"a small blue square" / "一个小的蓝色正方形"; ``size=None`` leaves the size out."""
    c, s = COLOUR_WORDS[colour][language], SHAPE_WORDS[shape][language]
    if language == "zh":
        return f"一个{SIZE_WORDS[size]['zh']}{c}{s}" if size else f"一个{c}的{s}"
    words = " ".join(w for w in (SIZE_WORDS[size]["en"] if size else None, c, s) if w)
    return ("an " if words[0] in "aeiou" else "a ") + words


def bare_phrase(shape: str, colour: str, language: str) -> str:
    """"a red circle" / "红色的圆": the form used in "X and Y collide"."""
    c, s = COLOUR_WORDS[colour][language], SHAPE_WORDS[shape][language]
    if language == "zh":
        return f"{c}的{s}"
    return ("an " if c[0] in "aeiou" else "a ") + f"{c} {s}"


def render_caption(motion: str, language: str, variant: int, *, shape: str, colour: str, size: str | None,
                   shape2: str | None = None, colour2: str | None = None, size2: str | None = None) -> str:
    """Fill paraphrase ``variant`` (taken modulo the number of paraphrases) of ``motion``."""
    if language not in LANGUAGES:
        raise InputError(f"unknown caption language {language!r}; use one of {LANGUAGES}")
    if motion not in MOTION_TEMPLATES:
        raise InputError(f"unknown motion {motion!r}; use one of {MOTIONS}")
    templates = MOTION_TEMPLATES[motion][language]
    fields = {"obj": object_phrase(shape, colour, size, language), "pair_a": bare_phrase(shape, colour, language)}
    if motion == "collides":
        if shape2 is None or colour2 is None:
            raise InputError("a 'collides' caption needs shape2 and colour2 for the second object")
        fields["obj2"] = object_phrase(shape2, colour2, size2, language)
        fields["pair_b"] = bare_phrase(shape2, colour2, language)
    return templates[variant % len(templates)].format(**fields)


def caption_corpus(shapes=tuple(SHAPE_WORDS), colours=tuple(COLOUR_WORDS), sizes=tuple(SIZE_WORDS),
                   motions=MOTIONS, languages=LANGUAGES) -> list[str]:
    """Every caption the templates can make for this vocabulary (collisions with the next colour and shape
    as partner): the text a tokenizer for the world is trained on. It describes no clip, so it leaks
    nothing about which combinations a dataset holds out."""
    out: list[str] = []
    for motion in motions:
        for lang in languages:
            for variant in range(len(MOTION_TEMPLATES[motion][lang])):
                for si, shape in enumerate(shapes):
                    for ci, colour in enumerate(colours):
                        for size in (None, *sizes):
                            second = {}
                            if motion == "collides":
                                second = {"shape2": shapes[(si + 1) % len(shapes)],
                                          "colour2": colours[(ci + 1) % len(colours)], "size2": size}
                            out.append(render_caption(motion, lang, variant, shape=shape, colour=colour,
                                                      size=size, **second))
    return out
