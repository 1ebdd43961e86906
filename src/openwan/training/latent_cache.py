"""Pre-encoded training inputs on disk: VAE latents per (clip, bucket) and umT5 embeddings per caption.

Video DiTs are trained from cached latents because decoding + VAE-encoding a clip costs more than
the DiT step itself. A dataset with ``cache = true`` is encoded once (rank-sharded, with a progress
bar) before its stage starts; later steps — and later runs with the same output_dir — only read
small safetensors files. The cached clip of a video is the one its first epoch would have decoded
(clip start and frame sampling are deterministic), so a cached run differs from an uncached one only
in not re-drawing clip starts each epoch.

Layout: ``<root>/latents/<bucket>/<index>.safetensors`` ({"latents": [16, F', H', W']}, normalised, plus
"mask": [1, F', H', W'] on the latent grid when the dataset is read with masks),
``<root>/text/<sha1(caption)>.safetensors`` ({"context": [tokens, d]}, trimmed to the prompt length) and
``<root>/source.json``: what the cache was encoded from (VAE + latent statistics, text encoder, tokenizer,
the clips, fps). A run whose inputs differ stops with an error instead of training on stale latents.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch.utils.data import Dataset

from ..checkpoint.io import atomic_write, write_text_atomic
from ..data.buckets import Bucket
from ..data.dataset import ClipDataset, Sample, Skipped
from ..data.manifest import ManifestEntry
from ..errors import InputError

SOURCE_FILE = "source.json"


def tensors_fingerprint(tensors: dict[str, torch.Tensor]) -> str:
    """A cheap identity of frozen weights: every name, shape and dtype plus a strided sample of <= 4096
    values per tensor (training changes all of them; hashing a 10 GB encoder in full would not be cheap)."""
    h = hashlib.sha1()
    for name, t in tensors.items():
        flat = t.detach().reshape(-1)
        sample = flat[:: max(1, flat.numel() // 4096)][:4096].float().cpu().contiguous()
        h.update(f"{name}:{tuple(t.shape)}:{t.dtype};".encode())
        h.update(sample.numpy().tobytes())
    return h.hexdigest()


_SAMPLED_BYTES = 1 << 16


def file_fingerprint(path: os.PathLike | str) -> str:
    """A cheap identity of a media file's content: its size and a hash of its first and last 64 KiB.
    Clips rendered again under the same names differ there (a whole small clip is hashed); reading
    every byte of a terabyte dataset to check a cache would not be cheap."""
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            h = hashlib.sha1(f.read(_SAMPLED_BYTES))
            if size > 2 * _SAMPLED_BYTES:
                f.seek(size - _SAMPLED_BYTES)
            h.update(f.read(_SAMPLED_BYTES))
    except OSError:
        return "unreadable"  # the dataset skips such a clip; it still has a place in the list
    return f"{size}:{h.hexdigest()}"


def clips_fingerprint(entries: Sequence[ManifestEntry], masks: bool = False) -> str:
    """Identity of a dataset's clip list (cache files are named by position in it): each clip's path,
    caption and content (``file_fingerprint``), with the mask files when the dataset is read with masks.
    Paths count relative to the folder that holds all of them, so a run folder moved or copied together
    with its data keeps its cache."""
    files = [e.path for e in entries] + ([e.mask for e in entries if e.mask is not None] if masks else [])
    root = os.path.commonpath([os.path.dirname(os.path.abspath(f)) for f in files]) if files else ""

    def rel(path: os.PathLike | str | None) -> str:
        return Path(os.path.relpath(os.path.abspath(path), root)).as_posix() if path is not None else "None"

    h = hashlib.sha1()
    for e in entries:
        mask = f"\t{rel(e.mask)}\t{file_fingerprint(e.mask) if e.mask is not None else ''}" if masks else ""
        h.update(f"{rel(e.path)}\t{file_fingerprint(e.path)}\t{e.caption}{mask}\n".encode())
    return h.hexdigest()


def _place(src: Path, dst: Path) -> None:
    """Put ``src`` at ``dst`` atomically: a hard link where the file system allows (cache files are never
    rewritten in place), else a copy."""
    dst.parent.mkdir(parents=True, exist_ok=True)

    def write(tmp: str) -> None:
        os.unlink(tmp)  # atomic_write made it; a link needs the name free
        try:
            os.link(src, tmp)
        except OSError:
            shutil.copyfile(src, tmp)

    atomic_write(dst, write, suffix=dst.suffix)


def _save(tensors: dict[str, torch.Tensor], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda tmp: save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, tmp))


class LatentCache:
    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root)

    def latent_path(self, index: int, bucket: Bucket) -> Path:
        return self.root / "latents" / str(bucket) / f"{index:08d}.safetensors"

    def text_path(self, caption: str) -> Path:
        return self.root / "text" / f"{hashlib.sha1(caption.encode('utf-8')).hexdigest()}.safetensors"

    def get_clip(self, index: int, bucket: Bucket) -> dict[str, torch.Tensor] | None:
        """{"latents"} or {"latents", "mask"} of a cached clip; None when it is not cached."""
        p = self.latent_path(index, bucket)
        return load_file(p) if p.is_file() else None

    def put_latents(self, index: int, bucket: Bucket, z: torch.Tensor, mask: torch.Tensor | None = None) -> None:
        _save({"latents": z} if mask is None else {"latents": z, "mask": mask}, self.latent_path(index, bucket))

    def has_text(self, caption: str) -> bool:
        """Whether the caption's embedding is cached (a file check; ``get_text`` reads the tensor)."""
        return self.text_path(caption).is_file()

    def get_text(self, caption: str) -> torch.Tensor | None:
        p = self.text_path(caption)
        return load_file(p)["context"] if p.is_file() else None

    def put_text(self, caption: str, context: torch.Tensor) -> None:
        _save({"context": context}, self.text_path(caption))

    def adopt(self, index: int, bucket: Bucket, caption: str, donor: LatentCache, donor_index: int) -> bool:
        """Take clip ``index``'s latents (and its caption's embedding) from ``donor``, where the same clip
        is ``donor_index``; False when the donor has not cached it in this bucket."""
        src = donor.latent_path(donor_index, bucket)
        if not src.is_file():
            return False
        _place(src, self.latent_path(index, bucket))
        if not self.has_text(caption) and donor.has_text(caption):
            _place(donor.text_path(caption), self.text_path(caption))
        return True

    def source(self) -> dict[str, Any] | None:
        """What the cache was encoded from (its ``source.json``); None when it has none or it is unreadable."""
        try:
            return json.loads((self.root / SOURCE_FILE).read_text())
        except (OSError, ValueError):
            return None

    def claim(self, source: dict[str, Any], *, write: bool = True) -> None:
        """Tie the cache to what it is encoded from. A cache made from other inputs (or by an openwan
        without ``source.json``) is an error naming what differs: its latents would silently train the
        DiT on the wrong data."""
        path = self.root / SOURCE_FILE
        source = json.loads(json.dumps(source))  # as it reads back (tuples -> lists)
        if path.is_file():
            try:
                old = json.loads(path.read_text())
            except (OSError, ValueError) as e:
                raise InputError(f"latent cache {self.root}: unreadable {SOURCE_FILE} ({e}); delete the folder "
                                 "to re-encode") from e
            diff = sorted(k for k in set(old) | set(source) if old.get(k) != source.get(k))
            if diff:
                raise InputError(f"latent cache {self.root} was encoded from a different {', '.join(diff)} than "
                                 f"this run uses ({path}); delete the folder to re-encode, or use another "
                                 "run.output_dir")
        elif any(self.root.glob("latents/*/*.safetensors")) or any(self.root.glob("text/*.safetensors")):
            raise InputError(f"latent cache {self.root} has no {SOURCE_FILE}, so what it was encoded from is "
                             "unknown; delete the folder to re-encode")
        elif write:
            write_text_atomic(path, json.dumps(source, indent=2) + "\n")


def clip_key(entry: ManifestEntry, masks: bool) -> tuple[str, str | None]:
    """What a clip's cached latents depend on besides the encoders, fps and bucket: its file (and mask)."""
    return str(entry.path), (str(entry.mask) if masks and entry.mask is not None else None)


def find_donors(source: dict[str, Any], masks: bool,
                others: Sequence[tuple[LatentCache, Sequence[ManifestEntry]]]) -> dict[tuple, tuple[LatentCache, int]]:
    """Clips that other caches of the run already hold, encoded from the same inputs as ``source``
    (encoders, latent statistics, fps, masks): clip key -> (cache, index in it). A dataset that is a
    subset of another (``where = ...``) then links those files instead of encoding the clips again. Its
    cached crop of a longer video is the other dataset's first-epoch crop rather than its own."""
    wanted = {k: v for k, v in json.loads(json.dumps(source)).items() if k != "clips"}
    donors: dict[tuple, tuple[LatentCache, int]] = {}
    for cache, entries in others:
        claimed = cache.source()
        if claimed is None or {k: v for k, v in claimed.items() if k != "clips"} != wanted:
            continue
        if claimed.get("clips") != clips_fingerprint(entries, masks):
            continue  # that cache's clip list changed since: its positions no longer name these clips
        for i, e in enumerate(entries):
            donors.setdefault(clip_key(e, masks), (cache, i))
    return donors


# Clips per VAE encode call while filling a cache, as frames x height x width pixels: batching amortises the
# per-call cost of the small convolutions (64x64x17 clips: 15 per call; the shapes world's cache fills in 0.71x
# the time of one clip per call on 2 CPU cores, decoding included), while a long high-resolution clip goes alone.
CACHE_BATCH_PIXELS = 1 << 20


def clips_per_batch(bucket: Bucket) -> int:
    return max(1, CACHE_BATCH_PIXELS // (bucket.frames * bucket.height * bucket.width))


def fill_cache(dataset: ClipDataset, cache: LatentCache, *, encode_video: Callable[[torch.Tensor], torch.Tensor],
               encode_text: Callable[[list[str]], list[torch.Tensor]],
               encode_mask: Callable[[torch.Tensor], torch.Tensor] | None = None, rank: int = 0,
               world_size: int = 1, progress: bool = True, desc: str = "cache",
               donors: Callable[[], dict[tuple, tuple[LatentCache, int]]] | None = None) -> int:
    """Encode every usable clip of ``dataset`` (this rank's share) that is not cached yet, or link it where
    another cache holds it (``donors()`` gives :func:`find_donors`' map; called only when clips are
    missing, since it reads the other datasets' manifests). Returns how many were encoded;
    unreadable clips are recorded in ``dataset.skips`` and left uncached. A dataset read with masks needs
    ``encode_mask`` (pixel mask [B, 1, F, H, W] -> latent grid). Clips of a bucket are encoded
    ``clips_per_batch`` at a time, their new captions in one text-encoder call."""
    if dataset.masks and encode_mask is None:
        raise InputError("fill_cache: the dataset is read with masks, so encode_mask is needed")
    from tqdm.auto import tqdm

    todo = [i for i, b in enumerate(dataset.buckets_of)
            if b is not None and i % world_size == rank and not cache.latent_path(i, b).is_file()]
    found = donors() if todo and donors is not None else {}
    if found:
        def adopted(i: int) -> bool:
            e = dataset.entries[i]
            donor = found.get(clip_key(e, dataset.masks))
            return donor is not None and cache.adopt(i, dataset.buckets_of[i], e.caption, *donor)

        todo = [i for i in todo if not adopted(i)]
    bar = tqdm(total=len(todo), desc=desc, unit="clip", disable=not progress or not todo)
    pending: dict[Bucket, list[Sample]] = {}
    done = 0

    def flush(items: list[Sample]) -> None:
        latents = encode_video(torch.stack([item.video for item in items]))
        captions = list(dict.fromkeys(item.caption for item in items if not cache.has_text(item.caption)))
        for caption, context in zip(captions, encode_text(captions) if captions else []):
            cache.put_text(caption, context)
        masks = encode_mask(torch.stack([item.mask for item in items])) if dataset.masks else [None] * len(items)
        for item, z, mask in zip(items, latents, masks):
            cache.put_latents(item.index, item.bucket, z, mask)
        bar.update(len(items))

    for i in todo:
        item = dataset[i]
        if isinstance(item, Skipped):
            dataset.skips.record(item.path, item.reason)
            bar.update(1)
            continue
        batch = pending.setdefault(item.bucket, [])
        batch.append(item)
        done += 1
        if len(batch) == clips_per_batch(item.bucket):
            flush(pending.pop(item.bucket))
    for items in pending.values():
        flush(items)
    bar.close()
    return done


class CachedClipDataset(Dataset):
    """A :class:`ClipDataset` whose samples come from the cache: ``Sample.video`` holds the clip's
    normalised latents [16, F', H', W'] instead of pixels (``latents = True``), and ``Sample.mask`` the
    latent-grid mask [1, F', H', W'] when the dataset is read with masks."""

    latents = True

    def __init__(self, dataset: ClipDataset, cache: LatentCache) -> None:
        self.dataset, self.cache = dataset, cache
        self.skips = dataset.skips

    @property
    def buckets_of(self) -> list[Bucket | None]:
        return self.dataset.buckets_of

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> Sample | Skipped:
        bucket = self.dataset.buckets_of[index]
        entry = self.dataset.entries[index]
        clip = self.cache.get_clip(index, bucket) if bucket is not None else None
        if clip is None:  # not encodable when the cache was filled (recorded then); skip it here too
            return Skipped(index, str(entry.path), "not in the latent cache (unreadable when cached)")
        mask = clip.get("mask") if self.dataset.masks else None
        if self.dataset.masks and mask is None:
            raise InputError(f"latent cache {self.cache.root}: clip {index} ({entry.path}) was cached without "
                             "its mask; delete the folder to re-encode")
        return Sample(video=clip["latents"], caption=entry.caption, index=index, bucket=bucket,
                      path=str(entry.path), mask=mask)
