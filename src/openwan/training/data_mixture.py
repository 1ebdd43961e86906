"""The batches of one curriculum stage: several datasets mixed by weight, resumable to the exact batch.

Each dataset of a stage gets its own bucketed, rank-sharded, infinite batch sampler. Which dataset
feeds step ``s`` is drawn from a generator seeded by (seed, stage, s), so the sequence of batches
depends only on the config and the step — not on timing, workers or restarts. The state saved in a
checkpoint is just, per dataset, how many batches were consumed; resume replays the sampler's cheap
index arithmetic (no decoding) to that position.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass, field

import torch
from torch.utils.data import DataLoader

from ..data.buckets import parse_bucket
from ..data.dataset import Batch, BucketBatchSampler, ClipDataset, SkipReport, collate
from ..data.manifest import ManifestEntry, filter_entries, read_manifest
from ..errors import InputError
from .config import DatasetConfig, StageConfig, StageNoise
from .latent_cache import CachedClipDataset, LatentCache


def load_entries(cfg: DatasetConfig) -> list[ManifestEntry]:
    """The manifest rows of a dataset after its quality/motion/field filters."""
    entries = read_manifest(cfg.manifest)
    if cfg.min_quality is not None or cfg.min_motion is not None or cfg.where:
        entries = filter_entries(entries, min_quality=cfg.min_quality, min_motion=cfg.min_motion, where=cfg.where)
        if not entries:
            raise InputError(f"dataset {cfg.name!r}: no rows of {cfg.manifest} pass min_quality="
                             f"{cfg.min_quality}, min_motion={cfg.min_motion}, where={cfg.where}")
    return entries


@dataclass
class _Source:
    name: str
    weight: float
    dataset: ClipDataset
    sampler_seed: int
    cache: LatentCache | None = None  # set: batches carry cached latents instead of pixels
    mask_weight: float | None = None  # the dataset's own flow-loss subject weight (None: flow.mask_weight)
    noise: StageNoise = field(default_factory=StageNoise)  # the dataset's own noise levels on top of the stage's
    consumed: int = 0
    iterator: Iterator[Batch] | None = None


class StageData:
    """Infinite batches for one stage. ``state_dict()`` / ``load_state_dict()`` give exact resume."""

    def __init__(self, stage: StageConfig, stage_index: int, datasets: dict[str, DatasetConfig], *, seed: int,
                 dp_rank: int = 0, dp_size: int = 1, num_workers: int = 0,
                 caches: dict[str, LatentCache] | None = None, masks: bool = False) -> None:
        self.stage = stage
        self.seed = seed
        self.stage_index = stage_index
        self.dp_rank, self.dp_size = dp_rank, dp_size
        self.num_workers = num_workers
        buckets = [parse_bucket(b) for b in stage.buckets]
        self.sources: list[_Source] = []
        for i, (name, weight) in enumerate(stage.datasets.items()):
            entries = load_entries(datasets[name])
            dataset = ClipDataset(entries, buckets, fps=stage.fps, seed=seed + 7919 * i, name=name, masks=masks)
            self.sources.append(_Source(name, weight, dataset, sampler_seed=seed + 1000 * stage_index + i,
                                        cache=(caches or {}).get(name), mask_weight=datasets[name].mask_weight,
                                        noise=datasets[name].flow))
        if masks and not any(e.mask is not None for src in self.sources for e in src.dataset.entries):
            raise InputError(f"stage '{stage.name}' weighs its loss by masks (flow.mask_weight, a dataset's "
                             "mask_weight or vae.loss.mask_weight) but none of its manifests has a 'mask' field; "
                             "add mask videos to the manifest (`openwan data synth-world` writes them) or set "
                             "the weight to 1")
        self._weights = torch.tensor([s.weight for s in self.sources], dtype=torch.float64)
        for src in self.sources:  # fail now, before any compute, if a dataset has no full batch
            self._sampler(src)

    # -- sampling -----------------------------------------------------------------------------------
    def _sampler(self, src: _Source) -> BucketBatchSampler:
        return BucketBatchSampler(src.dataset.buckets_of, self.stage.batch_size, seed=src.sampler_seed,
                                  rank=self.dp_rank, world_size=self.dp_size)

    def _open(self, src: _Source) -> Iterator[Batch]:
        sampler = self._sampler(src)
        sampler.load_state_dict(sampler.state_after(src.consumed))
        dataset = CachedClipDataset(src.dataset, src.cache) if src.cache is not None else src.dataset
        loader = DataLoader(dataset, batch_sampler=sampler, collate_fn=collate, num_workers=self.num_workers,
                            persistent_workers=self.num_workers > 0)
        return iter(loader)

    def source_for_step(self, step_in_stage: int) -> int:
        if len(self.sources) == 1:
            return 0
        return int(torch.multinomial(self._weights, 1, generator=rng_for(self.seed, self.stage_index, step_in_stage)))

    def next_batch(self, step_in_stage: int) -> tuple[_Source, Batch]:
        """The batch of this step and its source; read-time skips are recorded in the source's report."""
        src = self.sources[self.source_for_step(step_in_stage)]
        if src.iterator is None:
            src.iterator = self._open(src)
        batch = next(src.iterator)
        src.consumed += 1
        src.dataset.skips.merge_skipped(batch.skipped)  # failures seen in DataLoader workers
        return src, batch

    # -- bookkeeping --------------------------------------------------------------------------------
    def skip_report(self) -> SkipReport:
        report = SkipReport()
        for src in self.sources:
            report.merge(src.dataset.skips)
        return report

    def state_dict(self) -> dict[str, int]:
        return {src.name: src.consumed for src in self.sources}

    def load_state_dict(self, state: dict[str, int]) -> None:
        for src in self.sources:
            src.consumed = int(state.get(src.name, 0))
            src.iterator = None


def rng_for(*key: int) -> torch.Generator:
    """A CPU generator seeded from integers: per-step randomness that survives restarts exactly."""
    return torch.Generator().manual_seed(random.Random(repr(key)).getrandbits(63))
