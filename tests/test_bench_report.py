"""End-to-end `openwan bench` on two tiny synthetic folders: JSON, CSV, HTML and a headless screenshot."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
from html.parser import HTMLParser

import numpy as np
import pytest

from openwan.bench.suites.motion_physics import CATEGORIES
from openwan.cli import main
from openwan.media import write_video


def _model_dir(tmp_path, name, speed):
    """A moving bright square; ``speed`` px/frame, so the two models differ in motion."""
    d = tmp_path / name
    d.mkdir()
    rows = []
    prompts = [CATEGORIES["human walking"][0], CATEGORIES["smoke and particles"][0]]
    rng = np.random.default_rng(speed)
    for i, prompt in enumerate(prompts):
        for s in range(2):
            v = np.full((9, 48, 48, 3), 40, np.uint8)
            for t in range(9):
                x = (4 + speed * t + s) % 36
                v[t, 16:28, x:x + 12] = (220, 180, 60)
            v = np.clip(v + rng.integers(0, 3 * speed + 1, v.shape), 0, 255).astype(np.uint8)
            write_video(v, d / f"{i}_{s}.mp4")
            rows.append({"video": f"{i}_{s}.mp4", "prompt": prompt, "sample": s})
    (d / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return d


class _Table(HTMLParser):
    def __init__(self):
        super().__init__()
        self.rows, self._in, self._row = [], False, None

    def handle_starttag(self, tag, attrs):
        if tag == "table" and dict(attrs).get("id") == "scorecard":
            self._in = True
        elif self._in and tag == "tr":
            self._row = []
        elif self._in and tag in ("td", "th") and self._row is not None:
            self._row.append("")

    def handle_endtag(self, tag):
        if tag == "table":
            self._in = False
        elif self._in and tag == "tr" and self._row is not None:
            self.rows.append(self._row)
            self._row = None

    def handle_data(self, data):
        if self._in and self._row:
            self._row[-1] += data


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("bench")
    a, b = _model_dir(tmp, "model_a", 1), _model_dir(tmp, "model_b", 4)
    out = tmp / "out"
    rc = main(["bench", "motion-physics", "--videos", str(a), "--videos", str(b), "--out", str(out),
               "--no-progress"])
    assert rc == 0
    return out


def test_json_has_every_number_and_status(report):
    data = json.loads((report / "report.json").read_text())
    assert data["models"] == ["model_a", "model_b"]
    assert data["scorecard"]["rows"] == ["human walking", "smoke and particles"]
    for m in data["models"]:
        dims = data["results"][m]["dimensions"]
        assert 0 <= dims["motion_consistency"]["value"] <= 10
        assert dims["physics_accuracy"]["value"] is None
        assert dims["physics_accuracy"]["status"].startswith("not run: needs a VLM judge")
    assert len(data["videos"]) == 8
    assert data["input_problems"] == []


def test_csv_rows(report):
    rows = list(csv.DictReader((report / "report.csv").open()))
    cats = [r for r in rows if r["kind"] == "category"]
    assert {(r["model"], r["name"]) for r in cats} == {(m, c) for m in ("model_a", "model_b")
                                                        for c in ("human walking", "smoke and particles")}
    vids = list(csv.DictReader((report / "videos.csv").open()))
    assert {r["name"] for r in vids if r["kind"] == "metric"} >= {"temporal_flickering", "pixel_stability"}


def test_html_is_self_contained_with_scorecard(report):
    text = (report / "report.html").read_text()
    assert "<script" not in text and "http://" not in text.replace("http://www.w3.org/2000/svg", "")
    assert text.count("data:image/jpeg;base64,") == 8 * 4  # a 4-frame strip per video
    assert text.count("<svg") == 2  # bar + radar
    t = _Table()
    t.feed(text)
    assert t.rows[0] == ["category", "model_a", "model_b", "winner"]
    body = {r[0]: r for r in t.rows[1:]}
    assert set(body) == {"human walking", "smoke and particles", "average"}
    data = json.loads((report / "report.json").read_text())
    for cat in ("human walking", "smoke and particles"):
        assert body[cat][3] == data["scorecard"]["winners"][cat]["label"]
        assert float(body[cat][1]) == pytest.approx(data["scorecard"]["scores"][cat]["model_a"], abs=0.006)


def _chromium():
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if shutil.which(name):
            return shutil.which(name)
    return None


@pytest.mark.skipif(_chromium() is None, reason="no chromium/chromium-browser/google-chrome on PATH")
def test_html_renders_in_headless_chromium(report, tmp_path):
    from PIL import Image

    png = tmp_path / "out.png"
    subprocess.run([_chromium(), "--headless", "--no-sandbox", "--disable-gpu", f"--screenshot={png}",
                    "--window-size=1200,900", f"file://{report / 'report.html'}"],
                   check=True, capture_output=True, timeout=120)
    assert png.is_file()
    img = np.asarray(Image.open(png).convert("L"))
    assert img.shape == (900, 1200)
    assert img.std() > 10 and (img < 128).mean() > 0.005  # text and charts, not a blank page
