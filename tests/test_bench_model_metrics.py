"""Model-based bench metrics on tiny random CLIP / DINO models saved to disk, and the HTTP judge
against a local fake OpenAI-compatible server."""

from __future__ import annotations

import base64
import io
import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest
import torch

from openwan.bench.model_metrics import (
    ClipScorer,
    DinoScorer,
    HTTPJudge,
    ModelMetrics,
    clip_frame_consistency,
    clip_text_alignment,
    id_consistency,
    judge_video,
    parse_score,
)
from openwan.bench.result import MetricResult
from openwan.errors import InputError


def _byte_level_vocab() -> list[str]:
    # GPT-2/CLIP byte->unicode table, so every byte is a token and no merges are needed.
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    chars = [chr(c) for c in cs]
    return chars + [c + "</w>" for c in chars] + ["<|startoftext|>", "<|endoftext|>"]


@pytest.fixture(scope="module")
def clip_dir(tmp_path_factory):
    from transformers import (
        CLIPConfig,
        CLIPImageProcessor,
        CLIPModel,
        CLIPProcessor,
        CLIPTokenizer,
    )

    d = tmp_path_factory.mktemp("clip")
    vocab = _byte_level_vocab()
    (d / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(vocab)}))
    (d / "merges.txt").write_text("#version: 0.2\n")
    tok = CLIPTokenizer(str(d / "vocab.json"), str(d / "merges.txt"))
    torch.manual_seed(0)
    cfg = CLIPConfig(
        text_config={"vocab_size": len(vocab), "hidden_size": 32, "intermediate_size": 37, "num_hidden_layers": 1,
                         "num_attention_heads": 2, "max_position_embeddings": 77,
                         "bos_token_id": len(vocab) - 2, "eos_token_id": len(vocab) - 1,
                         "pad_token_id": len(vocab) - 1},
        vision_config={"hidden_size": 32, "intermediate_size": 37, "num_hidden_layers": 1, "num_attention_heads": 2,
                           "image_size": 32, "patch_size": 8},
        projection_dim=16)
    CLIPModel(cfg).save_pretrained(d)
    ip = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    CLIPProcessor(image_processor=ip, tokenizer=tok).save_pretrained(d)
    return d


@pytest.fixture(scope="module", params=["dinov2", "vit"])
def dino_dir(request, tmp_path_factory):
    from transformers import (
        BitImageProcessor,
        Dinov2Config,
        Dinov2Model,
        ViTConfig,
        ViTImageProcessor,
        ViTModel,
    )

    d = tmp_path_factory.mktemp(request.param)
    torch.manual_seed(0)
    small = {"hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 37,
                 "image_size": 32, "patch_size": 8}
    if request.param == "dinov2":
        Dinov2Model(Dinov2Config(**small)).save_pretrained(d)
        BitImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(d)
    else:
        ViTModel(ViTConfig(**small)).save_pretrained(d)
        ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(d)
    return d


@pytest.fixture(scope="module")
def clip(clip_dir):
    return ClipScorer.from_path(clip_dir)


def _static(frames=6, seed=1) -> np.ndarray:
    img = np.random.default_rng(seed).integers(0, 256, (40, 48, 3), dtype=np.uint8)
    return np.repeat(img[None], frames, axis=0)


def _cut(frames=6) -> np.ndarray:
    # Second half is a different picture: a smooth gradient instead of noise.
    v = _static(frames)
    grad = np.linspace(0, 255, 48, dtype=np.uint8)[None, :, None]
    v[frames // 2:] = np.broadcast_to(grad, (40, 48, 3))
    return v


# --- CLIP -------------------------------------------------------------------------------------

def test_clip_static_video_is_fully_consistent(clip):
    r = clip_frame_consistency(_static(), clip)
    assert r.ok and r.status == "ok"
    assert r.value == pytest.approx(1.0, abs=1e-5)
    assert len(r.details["per_frame"]) == 5


def test_clip_scene_cut_lowers_consistency(clip):
    static = clip_frame_consistency(_static(), clip).value
    cut = clip_frame_consistency(_cut(), clip).value
    assert cut < static - 1e-3
    assert 0.0 <= cut <= 1.0


def test_clip_text_alignment_range_and_prompt_sensitivity(clip):
    video = _cut(frames=12)
    a = clip_text_alignment(video, "a red cat jumping over a fence", clip)
    b = clip_text_alignment(video, "an aerial view of a snowy mountain range", clip)
    for r in (a, b):
        assert r.ok and np.isfinite(r.value) and -1.0 <= r.value <= 1.0
    assert a.value != pytest.approx(b.value, abs=1e-6)
    # 8 frames spread from the first to the last
    assert a.details["frames"][0] == 0 and a.details["frames"][-1] == 11 and len(a.details["frames"]) == 8
    # the score is the mean of the per-frame cosines (not a pooled video embedding)
    assert a.value == pytest.approx(np.mean(a.details["per_frame"]), abs=1e-6)


def test_clip_text_alignment_long_prompt_is_truncated_not_an_error(clip):
    r = clip_text_alignment(_static(), "word " * 200, clip)
    assert r.ok


def test_single_frame_consistency_is_not_run(clip):
    r = clip_frame_consistency(_static(frames=1), clip)
    assert r.value is None and r.status == "not run: needs >= 2 frames"


def test_bad_inputs_raise_input_error(clip, tmp_path):
    with pytest.raises(InputError, match="uint8"):
        clip_frame_consistency(_static().astype(np.float32), clip)
    with pytest.raises(InputError, match=r"\[T, H, W, 3\]"):
        clip_frame_consistency(_static()[..., 0], clip)
    with pytest.raises(InputError, match="prompt"):
        clip_text_alignment(_static(), "  ", clip)
    with pytest.raises(InputError, match="not a directory"):
        ClipScorer.from_path(tmp_path / "nope")
    with pytest.raises(InputError, match="could not load"):
        ClipScorer.from_path(tmp_path)  # exists but empty


# --- DINO -------------------------------------------------------------------------------------

def test_dino_id_consistency(dino_dir):
    dino = DinoScorer.from_path(dino_dir)
    same = id_consistency(_static(), dino)
    assert same.value == pytest.approx(1.0, abs=1e-5)
    cut = id_consistency(_cut(), dino)
    assert cut.ok and cut.value < same.value - 1e-3


def test_dino_rejects_non_vit_model(clip_dir):
    with pytest.raises(InputError, match="model type 'clip'"):
        DinoScorer.from_path(clip_dir)


# --- ModelMetrics -----------------------------------------------------------------------------

def test_missing_models_are_not_run_with_exact_needs():
    results = ModelMetrics().run(_static(), "a cat", ["clip_text_alignment", "scene_consistency",
                                                      "id_consistency", "judge_physical_plausibility"])
    assert {k: (r.value, r.status) for k, r in results.items()} == {
        "clip_text_alignment": (None, "not run: needs CLIP weights (--clip PATH)"),
        "scene_consistency": (None, "not run: needs CLIP weights (--clip PATH)"),
        "id_consistency": (None, "not run: needs DINO weights (--dino PATH)"),
        "judge_physical_plausibility": (None, "not run: needs a VLM judge (--judge URL or PATH)"),
    }
    assert ModelMetrics.from_options().clip is None


def test_model_metrics_runs_loaded_scorers(clip_dir, dino_dir):
    mm = ModelMetrics.from_options(clip=clip_dir, dino=dino_dir)
    res = mm.run(_static(), "a cat", ["clip_text_alignment", "scene_consistency", "clip_frame_consistency",
                                      "id_consistency", "judge_stylisation"])
    assert res["scene_consistency"].name == "scene_consistency"
    assert res["scene_consistency"].value == pytest.approx(res["clip_frame_consistency"].value)
    assert res["id_consistency"].value == pytest.approx(1.0, abs=1e-5)
    assert res["clip_text_alignment"].ok
    assert res["judge_stylisation"].status == "not run: needs a VLM judge (--judge URL or PATH)"
    # prompt-free videos: prompt metrics cannot run, the rest still do
    res = mm.run(_static(), None, ["clip_text_alignment", "scene_consistency"])
    assert res["clip_text_alignment"].status == "not run: needs a prompt"
    assert res["scene_consistency"].ok


def test_model_metrics_user_errors(tmp_path):
    with pytest.raises(InputError, match="unknown model metric"):
        ModelMetrics().run(_static(), "a cat", ["fvd"])
    with pytest.raises(InputError, match="not a directory"):
        ModelMetrics.from_options(clip=tmp_path / "missing")
    with pytest.raises(InputError, match="only OpenAI-compatible HTTP"):
        ModelMetrics.from_options(judge=str(tmp_path))
    with pytest.raises(InputError, match="model name"):
        ModelMetrics.from_options(judge="http://localhost:1/v1")


# --- judge ------------------------------------------------------------------------------------

class _FakeServer:
    """OpenAI-compatible /v1/chat/completions that replays canned replies and records requests."""

    def __init__(self):
        self.replies: list = []  # (status, body str) or ("sleep", seconds)
        self.requests: list[dict] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                fake.requests.append({"path": self.path, "headers": dict(self.headers), "body": body})
                kind, payload = fake.replies.pop(0)
                if kind == "sleep":
                    time.sleep(payload)
                    kind, payload = 200, json.dumps({"choices": [{"message": {"content": "Score: 5"}}]})
                data = payload.encode()
                self.send_response(kind)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                try:
                    self.wfile.write(data)
                except BrokenPipeError:  # the client already gave up (timeout test)
                    pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.httpd.block_on_close = False
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def reply(self, content: str, status: int = 200):
        self.replies.append((status, json.dumps({"choices": [{"message": {"role": "assistant", "content": content}}]})))


@pytest.fixture
def server():
    s = _FakeServer()
    yield s
    s.httpd.shutdown()
    s.httpd.server_close()


def test_judge_request_and_score_parsing(server):
    server.reply("The cat falls naturally.\nScore: 7/10")
    server.reply('{"score": 3, "reason": "objects merge"}')
    judge = HTTPJudge(server.url + "/", "tiny-vlm", api_key="sk-test", timeout=5)
    video = _cut(frames=10)
    r1 = judge_video(video, "a cat jumping off a table", "physical_plausibility", judge)
    r2 = judge_video(video, "two dogs to the left of a tree", "spatial_accuracy", judge)
    assert (r1.name, r1.value, r1.status) == ("judge_physical_plausibility", 7.0, "ok")
    assert (r2.name, r2.value, r2.status) == ("judge_spatial_accuracy", 3.0, "ok")

    req = server.requests[0]
    assert req["path"] == "/v1/chat/completions"
    assert req["headers"]["Authorization"] == "Bearer sk-test"
    body = req["body"]
    assert body["model"] == "tiny-vlm" and body["temperature"] == 0
    parts = body["messages"][0]["content"]
    text = next(p["text"] for p in parts if p["type"] == "text")
    assert "a cat jumping off a table" in text and "physical plausibility" in text and "Score: N/10" in text
    images = [p["image_url"]["url"] for p in parts if p["type"] == "image_url"]
    assert len(images) == 4 and r1.details["frames"] == [0, 3, 6, 9]
    # the images are the actual sampled frames, losslessly
    from PIL import Image
    first = np.asarray(Image.open(io.BytesIO(base64.b64decode(images[0].split(",", 1)[1]))))
    assert images[0].startswith("data:image/png;base64,") and np.array_equal(first, video[0])
    last = np.asarray(Image.open(io.BytesIO(base64.b64decode(images[-1].split(",", 1)[1]))))
    assert np.array_equal(last, video[9])
    assert "spatial relations" in server.requests[1]["body"]["messages"][0]["content"][0]["text"]


def test_judge_failures_are_statuses_not_exceptions(server):
    judge = HTTPJudge(server.url, "m", timeout=5)
    server.reply("no idea")
    r = judge_video(_static(), "a cat", "count_accuracy", judge)
    assert r.value is None and r.status.startswith("failed: judge reply had no score: ") and "no idea" in r.status

    server.replies.append((500, "model crashed"))
    r = judge_video(_static(), "a cat", "count_accuracy", judge)
    assert r.value is None and r.status.startswith("failed: HTTP 500") and "model crashed" in r.status

    server.replies.append((200, "<html>not json</html>"))
    r = judge_video(_static(), "a cat", "count_accuracy", judge)
    assert r.value is None and "was not JSON" in r.status

    server.reply("Score: 42/10")
    r = judge_video(_static(), "a cat", "count_accuracy", judge)
    assert r.value is None and r.status == "failed: judge score 42 is outside 0-10"


def test_judge_timeout_and_connection_refused(server):
    server.replies.append(("sleep", 2.0))
    r = judge_video(_static(), "a cat", "action_following", HTTPJudge(server.url, "m", timeout=0.3))
    assert r.value is None and r.status.startswith("failed: no reply from ") and "within 0.3 s" in r.status

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    r = judge_video(_static(), "a cat", "action_following", HTTPJudge(f"http://127.0.0.1:{port}/v1", "m", timeout=2))
    assert r.value is None and r.status.startswith("failed: could not reach http://127.0.0.1:")


def test_judge_through_model_metrics(server):
    server.reply("Score: 9/10")
    mm = ModelMetrics.from_options(judge=server.url, judge_model="m")
    res = mm.run(_static(), "a watercolour fox", ["judge_stylisation"])
    assert res["judge_stylisation"] == MetricResult("judge_stylisation", 9.0)


@pytest.mark.parametrize("reply,score", [
    ("Score: 7/10", 7.0), ("7", 7.0), ('{"score": 3}', 3.0), ("**Score:** 8.5 / 10", 8.5),
    ("Looks fine. 6/10", 6.0), ("First I thought Score: 4, but on reflection Score: 6", 6.0),
    ("There are 3 cats in the video.", None), ("no idea", None), ('{"score": true}', None),
])
def test_parse_score(reply, score):
    assert parse_score(reply) == score


def test_judge_user_errors():
    with pytest.raises(InputError, match="http"):
        HTTPJudge("localhost:8000", "m")
    with pytest.raises(InputError, match="unknown judge dimension"):
        judge_video(_static(), "a cat", "beauty", HTTPJudge("http://127.0.0.1:9/v1", "m"))


def test_first_and_previous_consistency_formula():
    from openwan.bench.model_metrics.frames import (
        first_and_previous_consistency,
        sample_indices,
    )

    f = torch.tensor([[1.0, 0.0], [0.0, 2.0], [0.0, 1.0], [-1.0, 0.0]])
    score, per_frame = first_and_previous_consistency(f)
    # t=1: (cos to first 0 + cos to prev 0)/2; t=2: (0 + 1)/2; t=3: (-1 -> clamped 0, 0)/2
    assert per_frame == pytest.approx([0.0, 0.5, 0.0]) and score == pytest.approx(0.5 / 3)
    assert sample_indices(3, 8) == [0, 1, 2] and sample_indices(81, 4) == [0, 27, 53, 80]


def test_judge_frames_are_downscaled_for_upload():
    from PIL import Image

    from openwan.bench.model_metrics.judge import frame_data_url

    url = frame_data_url(np.zeros((600, 1024, 3), dtype=np.uint8))
    assert Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))).size == (512, 300)


def test_aesthetic_predictor_linear_and_mlp_heads(clip, tmp_path):
    from openwan.bench.model_metrics import AESTHETIC_NEEDS, AestheticScorer, ModelMetrics, aesthetic_quality

    video = _static()
    emb = clip.image_features(video[:1])[0]  # 16-d in the tiny CLIP
    # Linear head (VBench's sa_0_4_vit_l_14_linear.pth layout): rating = w·e + b, reported / 10.
    w, b = torch.randn(1, 16), torch.tensor([5.0])
    torch.save({"weight": w, "bias": b}, tmp_path / "linear.pth")
    scorer = AestheticScorer.from_path(tmp_path / "linear.pth", clip)
    r = aesthetic_quality(video, scorer)
    assert r.value == pytest.approx(float(w[0] @ emb + b) / 10, rel=1e-4)
    # The improved-aesthetic-predictor MLP layout loads too.
    torch.manual_seed(0)
    dims = [16, 1024, 128, 64, 16, 1]
    mlp = {}
    for i, k in enumerate([0, 2, 4, 6, 7]):
        mlp[f"layers.{k}.weight"] = torch.randn(dims[i + 1], dims[i]) * 0.05
        mlp[f"layers.{k}.bias"] = torch.zeros(dims[i + 1])
    torch.save(mlp, tmp_path / "mlp.pth")
    assert aesthetic_quality(video, AestheticScorer.from_path(tmp_path / "mlp.pth", clip)).ok
    # Wrong width, not a predictor, no CLIP: clear errors; absent: "not run".
    torch.save({"weight": torch.randn(1, 768), "bias": torch.zeros(1)}, tmp_path / "l14.pth")
    with pytest.raises(InputError, match="expects 768-d CLIP embeddings"):
        AestheticScorer.from_path(tmp_path / "l14.pth", clip)
    torch.save({"foo": torch.zeros(2)}, tmp_path / "bad.pth")
    with pytest.raises(InputError, match="not a LAION aesthetic predictor"):
        AestheticScorer.from_path(tmp_path / "bad.pth", clip)
    with pytest.raises(InputError, match="needs --clip"):
        AestheticScorer.from_path(tmp_path / "linear.pth", None)
    assert ModelMetrics().run(video, "x", ["aesthetic_quality"])["aesthetic_quality"].status == \
        f"not run: needs {AESTHETIC_NEEDS}"
