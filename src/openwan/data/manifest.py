"""Training manifests: one row per media file with its caption and optional metadata and scores.

A manifest is JSON Lines (``.jsonl``, one object per line) or Parquet (``.parquet``). Required fields are
``path`` and ``caption``; ``kind``, ``fps``, ``width``, ``height``, ``num_frames``, ``quality``,
``motion`` and ``mask`` are optional, and any other field is kept in ``ManifestEntry.extra``. Relative
paths are resolved against the manifest's folder, so a dataset folder can be moved as a whole.

``mask`` names a video of the same frames as ``path`` whose brightness marks what the DiT's loss should
weigh more (white = subject; see ``flow.mask_weight``).

Missing media files are not an error here: the dataset skips and counts them, because a large crawl
always has a few holes and training should not stop for them.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..checkpoint.io import atomic_write, write_text_atomic
from ..errors import InputError

IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".webp", ".bmp"})
KINDS = ("video", "image")

_INT_FIELDS = ("width", "height", "num_frames")
_FLOAT_FIELDS = ("fps", "quality", "motion")
_KNOWN = ("path", "caption", "kind", "fps", "width", "height", "num_frames", "quality", "motion", "mask")


@dataclass(frozen=True)
class ManifestEntry:
    """One training item. ``path`` is absolute; scores are whatever the curation step wrote."""

    path: Path
    caption: str
    kind: str  # "video" or "image"
    fps: float | None = None
    width: int | None = None
    height: int | None = None
    num_frames: int | None = None
    quality: float | None = None
    motion: float | None = None
    mask: Path | None = None  # absolute, like path: a loss-weight mask video of the same frames
    extra: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)


def kind_of(path: str | os.PathLike) -> str:
    """``"image"`` for the still-image extensions, ``"video"`` for anything else."""
    return "image" if Path(path).suffix.lower() in IMAGE_EXTENSIONS else "video"


def read_manifest(path: str | os.PathLike) -> list[ManifestEntry]:
    """Read a ``.jsonl`` or ``.parquet`` manifest; every malformed row raises InputError naming the row."""
    p = Path(path)
    if not p.is_file():
        raise InputError(f"manifest {p} not found (expected a .jsonl or .parquet file)")
    suffix = p.suffix.lower()
    if suffix == ".jsonl":
        entries = [_entry(row, p, where) for row, where in _jsonl_rows(p)]
    elif suffix == ".parquet":
        entries = [_entry(row, p, where) for row, where in _parquet_rows(p)]
    else:
        raise InputError(f"manifest {p}: unsupported extension {p.suffix!r}; use .jsonl or .parquet")
    if not entries:
        raise InputError(f"manifest {p} has no entries; add one row per media file with 'path' and 'caption'")
    return entries


def write_manifest(entries: Iterable[ManifestEntry], path: str | os.PathLike) -> Path:
    """Write ``entries`` atomically as ``.jsonl`` or ``.parquet`` (by extension); returns the path.

    Paths inside the manifest's folder are stored relative to it so the folder stays relocatable.
    """
    p = Path(path)
    suffix = p.suffix.lower()
    if suffix not in (".jsonl", ".parquet"):
        raise InputError(f"manifest {p}: unsupported extension {p.suffix!r}; use .jsonl or .parquet")
    folder = Path(os.path.abspath(p.parent))
    rows = [_row(e, folder, p, i) for i, e in enumerate(entries)]
    if suffix == ".jsonl":
        text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
        return write_text_atomic(p, text)
    pa, pq = _pyarrow(p)
    return atomic_write(p, lambda tmp: pq.write_table(_arrow_table(rows, pa, p), tmp), suffix=".parquet")


def field_value(entry: ManifestEntry, name: str) -> Any:
    """A manifest field of ``entry`` by name: a known field or one kept in ``extra`` (None when absent)."""
    if name in _KNOWN:
        return getattr(entry, name)
    return entry.extra.get(name)


def filter_entries(entries: Iterable[ManifestEntry], *, min_quality: float | None = None,
                   min_motion: float | None = None, kinds: Iterable[str] | None = None,
                   where: dict[str, Iterable[Any]] | None = None) -> list[ManifestEntry]:
    """Keep entries meeting every given condition; an entry without the score fails a set minimum.

    ``where`` maps a manifest field (known or extra, e.g. synth-world's ``motion_label``) to the values
    allowed for it: ``{"motion_label": ["moves left", "moves right"]}`` keeps the rows of those motions.
    """
    wanted = None
    if kinds is not None:
        wanted = set(kinds)
        bad = sorted(wanted - set(KINDS))
        if bad:
            raise InputError(f"filter_entries: unknown kinds {bad}; use 'video' and/or 'image'")
    allowed = {}
    for name, values in (where or {}).items():
        if isinstance(values, (str, bytes)) or not isinstance(values, Iterable):
            raise InputError(f"filter_entries: where[{name!r}] must be a list of allowed values, got {values!r}")
        allowed[name] = list(values)
    out = []
    for e in entries:
        if wanted is not None and e.kind not in wanted:
            continue
        if min_quality is not None and (e.quality is None or e.quality < min_quality):
            continue
        if min_motion is not None and (e.motion is None or e.motion < min_motion):
            continue
        if any(field_value(e, name) not in values for name, values in allowed.items()):
            continue
        out.append(e)
    return out


def _jsonl_rows(p: Path):
    with open(p, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue  # blank lines (e.g. a trailing one) carry no entry
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise InputError(f"{p} line {lineno}: not valid JSON ({e.msg} at column {e.colno})") from e
            if not isinstance(row, dict):
                raise InputError(f"{p} line {lineno}: expected a JSON object with 'path' and 'caption', "
                                 f"got {type(row).__name__}")
            yield row, f"line {lineno}"


def _parquet_rows(p: Path):
    pa, pq = _pyarrow(p)
    try:
        table = pq.read_table(p)
    except (pa.ArrowException, OSError) as e:
        raise InputError(f"manifest {p}: cannot read Parquet file: {e}") from e
    missing = [c for c in ("path", "caption") if c not in table.column_names]
    if missing:
        raise InputError(f"manifest {p}: missing required column(s) {missing}; columns are {table.column_names}")
    for i, row in enumerate(table.to_pylist()):
        # Parquet has no "absent" cell: a null in an extra column means the field is not set.
        yield {k: v for k, v in row.items() if v is not None or k in _KNOWN}, f"row {i} (0-based)"


def _pyarrow(p: Path):
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError as e:
        raise InputError(f"manifest {p}: Parquet needs pyarrow; run `pip install pyarrow` or use .jsonl") from e
    return pa, pq


def _entry(row: dict[str, Any], manifest: Path, where: str) -> ManifestEntry:
    at = f"{manifest} {where}"
    for key in ("path", "caption"):
        if key not in row:
            raise InputError(f"{at}: missing required field '{key}'")
    raw_path, caption = row["path"], row["caption"]
    if not isinstance(raw_path, str) or not raw_path.strip():
        raise InputError(f"{at}: 'path' must be a non-empty string, got {raw_path!r}")
    if not isinstance(caption, str):
        raise InputError(f"{at}: 'caption' must be a string, got {type(caption).__name__}")
    media = _resolve(raw_path, manifest)
    raw_mask = row.get("mask")
    if raw_mask is not None and (not isinstance(raw_mask, str) or not raw_mask.strip()):
        raise InputError(f"{at}: 'mask' must be a non-empty path string, got {raw_mask!r}")
    mask = _resolve(raw_mask, manifest) if raw_mask is not None else None
    kind = row.get("kind")
    if kind is None:
        kind = kind_of(media)
    elif kind not in KINDS:
        raise InputError(f"{at}: 'kind' must be 'video' or 'image', got {kind!r}")
    if mask is not None and kind != "video":
        raise InputError(f"{at}: 'mask' is supported for videos only, not {kind}s")
    values: dict[str, Any] = {}
    for key in _INT_FIELDS:
        values[key] = _int_field(row.get(key), key, at)
    for key in _FLOAT_FIELDS:
        values[key] = _float_field(row.get(key), key, at, positive=key == "fps")
    extra = {k: v for k, v in row.items() if k not in _KNOWN}
    return ManifestEntry(path=media, caption=caption, kind=kind, mask=mask, extra=extra, **values)


def _resolve(raw: str, manifest: Path) -> Path:
    p = Path(os.path.expanduser(raw))
    return Path(os.path.abspath(p if p.is_absolute() else manifest.parent / p))


def _stored(p: Path, folder: Path) -> str:
    p = Path(os.path.abspath(p))
    return p.relative_to(folder).as_posix() if p.is_relative_to(folder) else str(p)


def _int_field(v: Any, key: str, at: str) -> int | None:
    if v is None:
        return None
    # JSON written from pandas turns ints into 480.0; accept exact integers only.
    if isinstance(v, bool) or not isinstance(v, (int, float)) or (isinstance(v, float) and not v.is_integer()):
        raise InputError(f"{at}: '{key}' must be a positive integer, got {v!r}")
    if v < 1:
        raise InputError(f"{at}: '{key}' must be a positive integer, got {v!r}")
    return int(v)


def _float_field(v: Any, key: str, at: str, *, positive: bool) -> float | None:
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise InputError(f"{at}: '{key}' must be a finite number, got {v!r}")
    if positive and v <= 0:
        raise InputError(f"{at}: '{key}' must be > 0, got {v!r}")
    return float(v)


def _row(e: ManifestEntry, folder: Path, manifest: Path, i: int) -> dict[str, Any]:
    row: dict[str, Any] = {"path": _stored(e.path, folder), "caption": e.caption, "kind": e.kind}
    for key in _KNOWN[3:-1]:  # the scalar fields; mask is a path, stored relative like path
        value = getattr(e, key)
        if value is not None:
            row[key] = value
    if e.mask is not None:
        row["mask"] = _stored(e.mask, folder)
    clash = sorted(set(e.extra) & set(_KNOWN))
    if clash:
        raise InputError(f"writing {manifest}: entry {i} ({e.path}) has extra field(s) {clash} that shadow "
                         "standard fields; set them on the ManifestEntry instead")
    row.update(e.extra)
    return row


def _arrow_table(rows: list[dict[str, Any]], pa, manifest: Path):
    types = {"path": pa.string(), "caption": pa.string(), "kind": pa.string(), "fps": pa.float64(),
             "width": pa.int64(), "height": pa.int64(), "num_frames": pa.int64(), "quality": pa.float64(),
             "motion": pa.float64(), "mask": pa.string()}
    names: list[str] = []
    for r in rows:
        names.extend(k for k in r if k not in names)
    columns = {}
    for name in names:
        values = [r.get(name) for r in rows]
        try:
            columns[name] = pa.array(values, type=types.get(name))
        except (pa.ArrowInvalid, pa.ArrowTypeError) as e:
            raise InputError(f"writing {manifest}: column '{name}' has values Parquet cannot store in one "
                             f"column ({e}); make them one type or write .jsonl") from e
    return pa.table(columns)
