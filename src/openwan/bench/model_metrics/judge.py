"""A vision-language model as judge for qualities no embedding measures: physics, objects, counts,
spatial layout, actions, style.

Only OpenAI-compatible HTTP servers are supported (``HTTPJudge``): a local model is served with vLLM,
SGLang, llama.cpp's server or Ollama, which already handle batching and the model's own chat format,
and the URL is passed as ``--judge http://host:port/v1``. In-process local judges are not implemented.

Each dimension has a fixed rubric (``RUBRICS``); the judge sees the prompt, the rubric and a few frames
spread over the clip, and must answer with a 0-10 score. A judge that fails (unreachable, HTTP error,
no score in the reply) yields a "failed: ..." result instead of stopping the benchmark.
"""

from __future__ import annotations

import base64
import io
import json
import re
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from openwan.bench.model_metrics.frames import check_video, sample_indices
from openwan.bench.result import MetricResult
from openwan.errors import InputError, OpenWanError

JUDGE_NEEDS = "a VLM judge (--judge URL or PATH)"
JUDGE_FRAMES = 4  # enough to see motion and change; more frames cost tokens on every question
MAX_FRAME_SIDE = 512  # frames are downscaled to this longest side before sending

_ANSWER_FORMAT = ("Answer with a short justification, then on the last line exactly 'Score: N/10' "
                  "where N is an integer from 0 (worst) to 10 (best).")
RUBRICS: dict[str, str] = {
    "physical_plausibility": (
        "Rate the physical plausibility of the video: objects keep their shape and size, do not "
        "pass through each other or appear/vanish without cause, and motion obeys gravity, momentum "
        "and contact as in the real world. Ignore whether it matches the prompt."),
    "object_accuracy": (
        "Rate whether every object named in the prompt is present and recognisable, with the "
        "attributes (colour, material, shape) the prompt gives it, and no prominent object contradicts it."),
    "count_accuracy": (
        "Rate whether the number of each object or person in the video matches the number the prompt "
        "asks for. If the prompt gives no counts, rate whether the visible counts stay constant across frames."),
    "spatial_accuracy": (
        "Rate whether the spatial relations in the prompt (left of, on top of, behind, inside, near) "
        "hold in the video."),
    "action_following": (
        "Rate whether the subjects perform the actions and motions the prompt describes, in the "
        "described direction and order, across the frames."),
    "stylisation": (
        "Rate whether the video has the visual style the prompt asks for (e.g. watercolour, anime, "
        "film noir, photorealistic) consistently in every frame. If no style is requested, rate "
        "whether the style is coherent across frames."),
}


class JudgeError(OpenWanError):
    """The judge could not give an answer (unreachable, HTTP error, malformed reply)."""


class Judge(Protocol):
    def ask(self, question: str, frames: Sequence[np.ndarray]) -> str:
        """Send one question with the frames; return the model's text reply or raise JudgeError."""
        ...


def frame_data_url(frame: np.ndarray) -> str:
    """A frame as a base64 PNG data URL, the form OpenAI-compatible servers accept for images."""
    from PIL import Image

    img = Image.fromarray(frame)
    scale = MAX_FRAME_SIDE / max(img.size)
    if scale < 1:
        img = img.resize((max(1, round(img.width * scale)), max(1, round(img.height * scale))), Image.BICUBIC)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


@dataclass
class HTTPJudge:
    """POSTs to ``{base_url}/chat/completions`` (OpenAI chat-completions API, temperature 0)."""

    base_url: str
    model: str
    api_key: str | None = None
    timeout: float = 120.0
    max_tokens: int = 300

    def __post_init__(self) -> None:
        if not re.match(r"^https?://[^/\s]+", self.base_url or ""):
            raise InputError(f"--judge {self.base_url!r}: expected an http(s) URL such as http://localhost:8000/v1")
        if not self.model:
            raise InputError("the judge needs a model name (the name the server serves it under)")
        self.base_url = self.base_url.rstrip("/")

    def request_body(self, question: str, frames: Sequence[np.ndarray]) -> dict:
        content: list[dict] = [{"type": "text", "text": question}]
        content += [{"type": "image_url", "image_url": {"url": frame_data_url(f)}} for f in frames]
        return {"model": self.model, "messages": [{"role": "user", "content": content}],
                "temperature": 0, "max_tokens": self.max_tokens}

    def ask(self, question: str, frames: Sequence[np.ndarray]) -> str:
        url = f"{self.base_url}/chat/completions"
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        data = json.dumps(self.request_body(question, frames)).encode()
        req = urllib.request.Request(url, data=data, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                raw = resp.read()
        except urllib.error.HTTPError as e:
            body = e.read().decode("utf-8", "replace")[:300]
            raise JudgeError(f"HTTP {e.code} from {url}: {body}") from e
        except urllib.error.URLError as e:
            if isinstance(e.reason, TimeoutError):
                raise JudgeError(f"no reply from {url} within {self.timeout:g} s") from e
            raise JudgeError(f"could not reach {url}: {e.reason}") from e
        except TimeoutError as e:  # timeout while reading the body
            raise JudgeError(f"no reply from {url} within {self.timeout:g} s") from e
        except OSError as e:  # connection reset mid-reply and similar
            raise JudgeError(f"connection to {url} failed: {e}") from e
        return _reply_text(raw, url)


def _reply_text(raw: bytes, url: str) -> str:
    try:
        reply = json.loads(raw)
        content = reply["choices"][0]["message"]["content"]
    except json.JSONDecodeError as e:
        raise JudgeError(f"reply from {url} was not JSON: {raw[:200]!r}") from e
    except (KeyError, IndexError, TypeError) as e:
        raise JudgeError(f"reply from {url} had no choices[0].message.content: {raw[:200]!r}") from e
    if isinstance(content, list):  # some servers return content parts even for text
        content = "".join(p.get("text", "") for p in content if isinstance(p, dict))
    if not isinstance(content, str):
        raise JudgeError(f"reply from {url} had non-text content: {raw[:200]!r}")
    return content


_NUM = r"(-?\d+(?:\.\d+)?)"
# Only structured answers count: a number in free prose ("there are 3 cats") is not a score.
_SCORE_PATTERNS = [
    re.compile(r"score[\s:=*\"'`]{0,6}" + _NUM + r"(?:\s*/\s*10)?", re.IGNORECASE),
    re.compile(_NUM + r"\s*/\s*10\b"),
    re.compile(r"^\s*" + _NUM + r"\s*\.?\s*$"),
]


def parse_score(reply: str) -> float | None:
    """The 0-10 score in a judge reply: JSON {"score": N}, "Score: N/10", "N/10" or a bare "N".
    The last match wins (rubrics ask for the score on the last line). None if there is none."""
    for match in re.finditer(r"\{[^{}]*\}", reply):
        try:
            obj = json.loads(match.group(0))
        except json.JSONDecodeError:
            continue
        if isinstance(obj, dict) and isinstance(obj.get("score"), (int, float)) and not isinstance(obj["score"], bool):
            return float(obj["score"])
    for pattern in _SCORE_PATTERNS:
        found = pattern.findall(reply)
        if found:
            return float(found[-1])
    return None


def rubric_question(prompt: str, dimension: str, num_frames: int) -> str:
    return (f"You are judging a generated video, shown as {num_frames} frames in temporal order.\n"
            f"The video was generated from this prompt: \"{prompt}\"\n\n{RUBRICS[dimension]}\n{_ANSWER_FORMAT}")


def judge_video(video: np.ndarray, prompt: str, dimension: str, judge: Judge, *,
                frames: int = JUDGE_FRAMES, name: str | None = None) -> MetricResult:
    """Ask ``judge`` the rubric question for ``dimension`` about ``frames`` evenly spaced frames.
    Value is the 0-10 score; judge failures give value None with a "failed: ..." status."""
    video = check_video(video)
    if dimension not in RUBRICS:
        raise InputError(f"unknown judge dimension {dimension!r}; choose from {', '.join(RUBRICS)}")
    if not isinstance(prompt, str) or not prompt.strip():
        raise InputError("the judge needs the video's prompt")
    name = name or f"judge_{dimension}"
    idx = sample_indices(len(video), frames)
    question = rubric_question(prompt, dimension, len(idx))
    try:
        reply = judge.ask(question, [video[i] for i in idx])
    except JudgeError as e:
        return MetricResult(name, None, f"failed: {e}", {"frames": idx})
    score = parse_score(reply)
    if score is None:
        return MetricResult(name, None, f"failed: judge reply had no score: {reply[:200]!r}",
                            {"frames": idx, "reply": reply})
    if not 0 <= score <= 10:
        return MetricResult(name, None, f"failed: judge score {score:g} is outside 0-10",
                            {"frames": idx, "reply": reply})
    return MetricResult(name, score, details={"frames": idx, "reply": reply})
