"""Training data: manifests, media decoding, resolution/length buckets, dataset and batch sampler."""

from .buckets import Bucket, assign_bucket, parse_bucket, parse_buckets
from .dataset import (
    Batch,
    BucketBatchSampler,
    ClipDataset,
    EpochIndex,
    Sample,
    Skipped,
    SkipReport,
    collate,
)
from .decode import (
    MediaError,
    MediaInfo,
    choose_start,
    clip_span,
    decode_clip,
    load_image,
    probe,
    resize_crop,
)
from .manifest import (
    ManifestEntry,
    filter_entries,
    kind_of,
    read_manifest,
    write_manifest,
)

__all__ = [
    "Batch", "Bucket", "BucketBatchSampler", "ClipDataset", "EpochIndex", "ManifestEntry", "MediaError",
    "MediaInfo", "Sample", "SkipReport", "Skipped", "assign_bucket", "choose_start", "clip_span", "collate",
    "decode_clip", "filter_entries", "kind_of", "load_image", "parse_bucket", "parse_buckets", "probe",
    "read_manifest", "resize_crop", "write_manifest",
]
