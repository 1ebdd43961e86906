"""Training dataset, bucketed batch sampler and collate function.

Typical use (one process per rank)::

    ds = ClipDataset(read_manifest("train.jsonl"), parse_buckets("832x480x81,480x832x81,832x480x1"), fps=16,
                     seed=seed, probe_cache="train.probe.json")
    sampler = BucketBatchSampler(ds.buckets_of, batch_size, seed=seed, rank=rank, world_size=world_size)
    if resuming:
        sampler.load_state_dict(ckpt["sampler"])
    loader = DataLoader(ds, batch_sampler=sampler, collate_fn=collate, num_workers=8, pin_memory=True)
    for batch in loader:                       # infinite: stop after the wanted number of steps
        skips.merge_skipped(batch.skipped)     # read-time failures, counted in the main process
        if batch.video is None: continue       # every file of this batch failed to decode
        ...                                    # train on batch.video [B, 3, F, H, W] and batch.captions
        ckpt["sampler"] = batch.sampler_state  # the state right after this batch

Epoch sync: the sampler yields ``EpochIndex`` values, plain ints that also carry the sampler epoch, and the
dataset uses that epoch for the clip start. This works inside DataLoader workers, which hold their own copy
of the dataset, so there is no ``set_epoch`` call to forget; ``ClipDataset.set_epoch`` only matters when
indexing the dataset with plain ints.

Resume: a DataLoader pulls batches from the sampler ahead of training (prefetch), so
``sampler.state_dict()`` is ahead of what was trained on. Save ``batch.sampler_state`` (carried through the
workers with each batch) or ``sampler.state_after(batches_trained)`` instead; both resume exactly at the
next batch.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import random
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from ..checkpoint.io import write_text_atomic
from ..errors import InputError
from ..media import frames_to_tensor
from .buckets import Bucket, assign_bucket
from .decode import (
    MediaError,
    MediaInfo,
    choose_start,
    decode_clip,
    load_image,
    probe,
    resize_crop,
)
from .manifest import ManifestEntry

if TYPE_CHECKING:
    from typing import Self

MISSING = "missing"
CORRUPT = "unreadable/corrupt"
NO_BUCKET = "fits no bucket"
DECODE_FAILED = "decode failed"


@dataclass
class Sample:
    """One clip: ``video`` float32 [3, F, H, W] in [-1, 1] at its bucket's size; ``mask`` (datasets read
    with ``masks=True``) float32 [1, F, H, W] in [0, 1], all zeros for an entry without one."""

    video: torch.Tensor
    caption: str
    index: int
    bucket: Bucket
    path: str
    sampler_state: dict[str, int] | None = None  # sampler state after this item's batch, if from the sampler
    mask: torch.Tensor | None = None


@dataclass
class Skipped:
    """An item that could not be read; ``reason`` is a category, ``detail`` the error message."""

    index: int
    path: str
    reason: str
    detail: str = ""
    sampler_state: dict[str, int] | None = None


@dataclass
class Batch:
    """Collated items of one bucket: ``video`` [B, 3, F, H, W] float32, or None when every item was skipped;
    ``mask`` [B, 1, F, H, W] when the items carry masks."""

    video: torch.Tensor | None
    captions: list[str]
    indices: list[int]
    skipped: list[Skipped]
    bucket: Bucket | None = None
    paths: list[str] = field(default_factory=list)
    sampler_state: dict[str, int] | None = None  # save this to resume right after this batch
    mask: torch.Tensor | None = None

    def pin_memory(self) -> Batch:
        # DataLoader(pin_memory=True) calls this; without it a dataclass batch would not be pinned.
        return dataclasses.replace(self, video=None if self.video is None else self.video.pin_memory(),
                                   mask=None if self.mask is None else self.mask.pin_memory())


class SkipReport:
    """Files left out of training, one record per file (the first reason wins), with counts by reason."""

    def __init__(self, total: int = 0) -> None:
        self.total = total  # files considered, for "skipped 3 of 120"
        self._records: dict[str, tuple[str, str]] = {}

    def record(self, path: str | os.PathLike, reason: str, detail: str = "") -> bool:
        """Record a skipped file; returns False if it was already recorded."""
        key = str(path)
        if key in self._records:
            return False
        self._records[key] = (reason, detail)
        return True

    def merge_skipped(self, items: Sequence[Skipped]) -> None:
        """Record the read-time failures a batch carries (``Batch.skipped``)."""
        for s in items:
            self.record(s.path, s.reason, s.detail)

    @property
    def count(self) -> int:
        return len(self._records)

    @property
    def records(self) -> list[tuple[str, str, str]]:
        """(path, reason, detail) in the order recorded."""
        return [(p, r, d) for p, (r, d) in self._records.items()]

    def reason_of(self, path: str | os.PathLike) -> str | None:
        rec = self._records.get(str(path))
        return None if rec is None else rec[0]

    def by_reason(self) -> dict[str, int]:
        return dict(Counter(r for r, _ in self._records.values()).most_common())

    def summary(self, limit: int = 5) -> str:
        """E.g. "skipped 3 of 120 files: 2 unreadable/corrupt, 1 missing: a.mp4 (...), ..."."""
        head = f"skipped {self.count} of {self.total} files"
        if not self._records:
            return head
        counts = ", ".join(f"{n} {reason}" for reason, n in self.by_reason().items())
        shown = []
        for path, (reason, detail) in list(self._records.items())[:limit]:
            why = detail if len(detail) <= 160 else detail[:157] + "..."
            shown.append(f"{path} ({why or reason})")
        more = f", ... and {self.count - limit} more" if self.count > limit else ""
        return f"{head}: {counts}: {', '.join(shown)}{more}"

    def merge(self, other: SkipReport) -> None:
        for path, (reason, detail) in other._records.items():
            self.record(path, reason, detail)
        self.total = max(self.total, other.total)

    def state_dict(self) -> dict[str, Any]:
        return {"total": self.total, "records": [list(r) for r in self.records]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        try:
            records = [(str(p), str(r), str(d)) for p, r, d in state["records"]]
            total = int(state["total"])
        except (KeyError, TypeError, ValueError) as e:
            raise InputError(f"skip report state is malformed ({e!r}); expected SkipReport.state_dict() output") from e
        self.total = total
        self._records = {p: (r, d) for p, r, d in records}


class EpochIndex(int):
    """A dataset index (a plain int) that also carries the sampler epoch and the sampler state after its
    batch, so DataLoader workers pick the epoch's clip and batches report an exact resume point."""

    epoch: int
    resume: tuple[int, int]

    def __new__(cls, value: int, epoch: int = 0, resume: tuple[int, int] = (0, 0)) -> Self:
        obj = super().__new__(cls, value)
        obj.epoch = epoch
        obj.resume = resume
        return obj

    def __reduce__(self):
        return (EpochIndex, (int(self), self.epoch, self.resume))


class ClipDataset(Dataset):
    """Map-style dataset of bucketed clips; bad files are skipped and counted, never raised.

    Each entry gets a bucket at construction (from manifest metadata when width, height, and for videos
    fps and num_frames, are all present; otherwise by probing the file). Entries that are missing,
    unreadable or fit no bucket get bucket None and a record in ``self.skips``. ``dataset[i]`` returns a
    ``Sample``, or a ``Skipped`` if the file fails to decode now. Clip starts are drawn from
    ``random.Random(hash(seed, index, epoch))``: the same (seed, index, epoch) always gives the same clip.
    With ``masks=True`` each Sample also carries its entry's mask video (``ManifestEntry.mask``), decoded
    at the clip's frames; an unreadable mask skips the item like an unreadable video.
    """

    def __init__(self, entries: Sequence[ManifestEntry], buckets: Sequence[Bucket], *, fps: float | None = None,
                 seed: int = 0, probe_cache: str | os.PathLike | None = None, name: str | None = None,
                 masks: bool = False) -> None:
        self.entries = list(entries)
        self.buckets = list(buckets)
        if not self.entries:
            raise InputError("dataset has no entries; check the manifest")
        if not self.buckets:
            raise InputError("dataset needs at least one bucket such as 832x480x81")
        if fps is not None and not fps > 0:
            raise InputError(f"dataset fps must be > 0, or None for consecutive source frames; got {fps}")
        self.fps = fps
        self.seed = int(seed)
        self.masks = bool(masks)
        self.epoch = 0
        self.name = name or _common_folder(self.entries)
        self.skips = SkipReport(total=len(self.entries))
        cache = _ProbeCache(Path(probe_cache)) if probe_cache is not None else None
        self._infos: list[MediaInfo | None] = []
        self._buckets_of: list[Bucket | None] = []
        for e in self.entries:
            info = self._info(e, cache)
            bucket = None
            if info is not None:
                bucket = assign_bucket(info, e.kind, self.buckets, fps)
                if bucket is None:
                    self.skips.record(e.path, NO_BUCKET, _no_bucket_detail(e, info, self.buckets, fps))
            self._infos.append(info)
            self._buckets_of.append(bucket)
        if cache is not None:
            cache.save()
        if all(b is None for b in self._buckets_of):
            raise InputError(f"dataset {self.name}: no usable samples: {self.skips.summary()}")

    @property
    def buckets_of(self) -> list[Bucket | None]:
        """The bucket of every entry (None for skipped ones); pass it to BucketBatchSampler."""
        return list(self._buckets_of)

    def set_epoch(self, epoch: int) -> None:
        """Epoch used for plain-int indices; indices from BucketBatchSampler carry their own epoch."""
        if epoch < 0:
            raise InputError(f"epoch must be >= 0, got {epoch}")
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.entries)

    def __getitem__(self, index: int) -> Sample | Skipped:
        i = int(index)
        if not 0 <= i < len(self.entries):
            raise IndexError(f"dataset index {i} out of range for {len(self.entries)} entries")
        epoch = getattr(index, "epoch", self.epoch)
        resume = getattr(index, "resume", None)
        state = None if resume is None else {"epoch": resume[0], "position": resume[1]}
        e, bucket, info = self.entries[i], self._buckets_of[i], self._infos[i]
        path = str(e.path)
        if bucket is None or info is None:
            return Skipped(i, path, self.skips.reason_of(path) or NO_BUCKET, sampler_state=state)
        rng = random.Random(_stable_seed("clip", self.seed, i, epoch))
        mask = None
        try:
            if e.kind == "image":
                frames = load_image(e.path)
            else:
                start = choose_start(info, bucket.frames, self.fps, rng)
                frames = decode_clip(e.path, num_frames=bucket.frames, fps=self.fps, start=start)
            frames = resize_crop(frames, bucket.width, bucket.height)
            if self.masks:
                mask = self._mask(e, bucket, start if e.kind == "video" else 0.0)
        except MediaError as err:
            files = [e.path] + ([e.mask] if self.masks and e.mask is not None else [])
            reason = MISSING if not all(f.exists() for f in files) else DECODE_FAILED
            self.skips.record(path, reason, str(err))
            return Skipped(i, path, reason, str(err), sampler_state=state)
        video = frames_to_tensor(frames)  # float32 [3, F, H, W] in [-1, 1]
        return Sample(video=video, caption=e.caption, index=i, bucket=bucket, path=path, sampler_state=state,
                      mask=mask)

    def _mask(self, e: ManifestEntry, bucket: Bucket, start: float) -> torch.Tensor:
        """The entry's mask at the clip's frames: float32 [1, F, H, W] in [0, 1] (zeros without one)."""
        if e.mask is None:
            return torch.zeros(1, bucket.frames, bucket.height, bucket.width)
        try:
            frames = decode_clip(e.mask, num_frames=bucket.frames, fps=self.fps, start=start)
        except MediaError as err:
            raise MediaError(f"mask of {e.path}: {err}") from err
        frames = resize_crop(frames, bucket.width, bucket.height)
        return torch.from_numpy(frames).float().mean(dim=-1).div_(255.0)[None]

    def _info(self, e: ManifestEntry, cache: _ProbeCache | None) -> MediaInfo | None:
        try:
            st = e.path.stat()
        except OSError as err:
            self.skips.record(e.path, MISSING, f"{e.path}: {err.strerror or err}")
            return None
        if e.width and e.height and (e.kind == "image" or (e.fps and e.num_frames)):
            if e.kind == "image":
                return MediaInfo(e.width, e.height, 0.0, 1, 0.0)
            return MediaInfo(e.width, e.height, e.fps, e.num_frames, e.num_frames / e.fps)
        cached = cache.get(e.path, st) if cache is not None else None
        if cached is None:
            try:
                cached = probe(e.path)
            except MediaError as err:
                cached = str(err)
            if cache is not None:
                cache.put(e.path, st, cached)
        if isinstance(cached, str):
            self.skips.record(e.path, CORRUPT, cached)
            return None
        return cached


def collate(items: Sequence[Sample | Skipped]) -> Batch:
    """Stack the Samples (all of one bucket) into [B, 3, F, H, W]; Skipped items are passed along."""
    samples = [x for x in items if isinstance(x, Sample)]
    skipped = [x for x in items if isinstance(x, Skipped)]
    if len(samples) + len(skipped) != len(items):
        kinds = sorted({type(x).__name__ for x in items if not isinstance(x, (Sample, Skipped))})
        raise InputError(f"collate expects Sample and Skipped items from ClipDataset, got {kinds}")
    buckets = {s.bucket for s in samples}
    if len(buckets) > 1:
        raise InputError(f"collate got samples of several buckets ({', '.join(sorted(map(str, buckets)))}); "
                         "use BucketBatchSampler so each batch has one bucket")
    state = next((x.sampler_state for x in items if x.sampler_state is not None), None)
    masked = [s.mask is not None for s in samples]
    if any(masked) and not all(masked):
        raise InputError("collate got samples with and without masks; read every dataset with the same masks=")
    return Batch(
        video=torch.stack([s.video for s in samples]) if samples else None,
        captions=[s.caption for s in samples],
        indices=[s.index for s in samples],
        skipped=skipped,
        bucket=samples[0].bucket if samples else None,
        paths=[s.path for s in samples],
        sampler_state=state,
        mask=torch.stack([s.mask for s in samples]) if samples and masked[0] else None,
    )


class BucketBatchSampler(Sampler[list[int]]):
    """Infinite, deterministic batches of one bucket each, split disjointly across ranks.

    Epoch ``e``: indices are shuffled with a generator seeded by (seed, e), grouped by bucket into full
    batches (remainders dropped), and the batch order is shuffled; batch ``j`` goes to rank
    ``j % world_size``, and every rank gets ``batches_per_epoch`` batches (the same every epoch, since the
    bucket sizes do not change). Every rank must be given the same ``buckets_of`` (use one probe cache or
    manifest metadata so probing cannot differ between ranks).

    Yields lists of ``EpochIndex``. ``state_dict()`` is ``{"epoch", "position"}``: batches this rank has
    been asked for in the current epoch; ``load_state_dict`` continues at exactly the next batch.
    """

    def __init__(self, buckets_of: Sequence[Bucket | None], batch_size: int, *, seed: int, rank: int = 0,
                 world_size: int = 1) -> None:
        if batch_size < 1:
            raise InputError(f"batch_size must be >= 1, got {batch_size}")
        if world_size < 1 or not 0 <= rank < world_size:
            raise InputError(f"rank must be in [0, world_size); got rank {rank}, world_size {world_size}")
        self.batch_size, self.seed, self.rank, self.world_size = batch_size, int(seed), rank, world_size
        self._buckets = sorted({b for b in buckets_of if b is not None})
        ids = {b: k for k, b in enumerate(self._buckets)}
        self._usable = np.array([i for i, b in enumerate(buckets_of) if b is not None], dtype=np.int64)
        self._bucket_id = np.array([ids[b] for b in buckets_of if b is not None], dtype=np.int64)
        counts = np.bincount(self._bucket_id, minlength=len(self._buckets))
        total = int(sum(int(c) // batch_size for c in counts))
        if total < world_size:
            sizes = ", ".join(f"{b}: {int(c)}" for b, c in zip(self._buckets, counts)) or "no usable samples"
            what = ("no bucket has a full batch" if total == 0
                    else f"only {total} full batch(es) per epoch for {world_size} ranks")
            raise InputError(f"{what} of batch size {batch_size} (samples per bucket: {sizes}); lower the "
                             "batch size or add data")
        self.batches_per_epoch = total // world_size
        self._epoch = 0
        self._position = 0
        self._cached: tuple[int, list[np.ndarray]] | None = None

    @property
    def epoch(self) -> int:
        """Epoch of the next batch to be yielded."""
        return self._epoch

    @property
    def position(self) -> int:
        """Batches of the current epoch this rank has already yielded."""
        return self._position

    def epoch_batches(self, epoch: int) -> list[np.ndarray]:
        """This rank's batches of ``epoch`` (each an int64 array of ``batch_size`` dataset indices)."""
        if self._cached is not None and self._cached[0] == epoch:
            return self._cached[1]
        rng = np.random.default_rng(_stable_seed("batches", self.seed, epoch))
        perm = rng.permutation(len(self._usable))
        order, ids = self._usable[perm], self._bucket_id[perm]
        batches: list[np.ndarray] = []
        for k in range(len(self._buckets)):
            members = order[ids == k]
            full = len(members) // self.batch_size
            batches.extend(members[: full * self.batch_size].reshape(full, self.batch_size))
        shuffled = [batches[j] for j in rng.permutation(len(batches))]
        mine = shuffled[self.rank: self.batches_per_epoch * self.world_size: self.world_size]
        self._cached = (epoch, mine)
        return mine

    def __iter__(self) -> Iterator[list[int]]:
        # State lives on the sampler, so a new iterator continues where the last one stopped.
        while True:
            batches = self.epoch_batches(self._epoch)
            while self._position < len(batches):
                pos, epoch = self._position, self._epoch
                self._position += 1
                resume = self._normalize(epoch, pos + 1)
                yield [EpochIndex(int(i), epoch, resume) for i in batches[pos]]
            self._epoch, self._position = self._epoch + 1, 0

    def state_dict(self) -> dict[str, int]:
        epoch, position = self._normalize(self._epoch, self._position)
        return {"epoch": epoch, "position": position}

    def state_after(self, num_batches: int) -> dict[str, int]:
        """The state after ``num_batches`` batches counted from epoch 0 (e.g. the global step)."""
        if num_batches < 0:
            raise InputError(f"num_batches must be >= 0, got {num_batches}")
        epoch, position = divmod(num_batches, self.batches_per_epoch)
        return {"epoch": epoch, "position": position}

    def load_state_dict(self, state: dict[str, int]) -> None:
        try:
            epoch, position = int(state["epoch"]), int(state["position"])
        except (KeyError, TypeError, ValueError) as e:
            raise InputError(f"sampler state {state!r} is malformed; expected {{'epoch': int, 'position': int}}") from e
        if epoch < 0 or not 0 <= position <= self.batches_per_epoch:
            raise InputError(f"sampler state {state!r} does not fit this sampler ({self.batches_per_epoch} batches "
                             "per epoch); was the batch size, world size or dataset changed since it was saved?")
        self._epoch, self._position = self._normalize(epoch, position)

    def _normalize(self, epoch: int, position: int) -> tuple[int, int]:
        # "All batches of epoch e done" and "epoch e+1 not started" are the same point.
        return (epoch + 1, 0) if position >= self.batches_per_epoch else (epoch, position)


class _ProbeCache:
    """JSON file of probe results keyed by path, size and mtime, so restarts and other ranks skip probing."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.files: dict[str, dict[str, Any]] = {}
        self.dirty = False
        if path.exists():
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
                if data.get("version") != 1 or not isinstance(data.get("files"), dict):
                    raise ValueError("unknown layout")
                self.files = data["files"]
            except (OSError, ValueError, AttributeError) as e:
                raise InputError(f"probe cache {path} is unreadable ({e}); delete it and it will be rebuilt") from e

    def get(self, p: Path, st: os.stat_result) -> MediaInfo | str | None:
        rec = self.files.get(str(p))
        if rec is None or rec.get("size") != st.st_size or rec.get("mtime_ns") != st.st_mtime_ns:
            return None
        if "error" in rec:
            return str(rec["error"])
        try:
            w, h, fps, n, duration = rec["info"]
            return MediaInfo(int(w), int(h), float(fps), int(n), float(duration))
        except (KeyError, TypeError, ValueError) as e:
            raise InputError(f"probe cache {self.path}: bad record for {p} ({e!r}); delete the cache") from e

    def put(self, p: Path, st: os.stat_result, result: MediaInfo | str) -> None:
        rec: dict[str, Any] = {"size": st.st_size, "mtime_ns": st.st_mtime_ns}
        if isinstance(result, str):
            rec["error"] = result
        else:
            rec["info"] = [result.width, result.height, result.fps, result.num_frames, result.duration]
        self.files[str(p)] = rec
        self.dirty = True

    def save(self) -> None:
        if self.dirty:
            write_text_atomic(self.path, json.dumps({"version": 1, "files": self.files}) + "\n")
            self.dirty = False


def _stable_seed(*parts: object) -> int:
    # hash() of a str is salted per process; a digest is the same in every worker and after restarts.
    digest = hashlib.blake2b(repr(parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little")


def _common_folder(entries: Sequence[ManifestEntry]) -> str:
    try:
        return os.path.commonpath([str(e.path.parent) for e in entries])
    except ValueError:  # paths on different drives
        return f"of {len(entries)} entries"


def _no_bucket_detail(e: ManifestEntry, info: MediaInfo, buckets: Sequence[Bucket], fps: float | None) -> str:
    names = ", ".join(str(b) for b in buckets)
    if e.kind == "image":
        return f"{e.path}: image {info.width}x{info.height} but no 1-frame bucket among {names}"
    if not any(b.frames > 1 for b in buckets):
        return f"{e.path}: video but no multi-frame bucket among {names}"
    rate = "source rate" if fps is None else f"{fps:g} fps"
    return (f"{e.path}: video {info.width}x{info.height}, {info.num_frames} frames at {info.fps:g} fps "
            f"({info.duration:.2f} s) is shorter than every video bucket's clip at {rate} ({names})")
