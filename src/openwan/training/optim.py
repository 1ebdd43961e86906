"""AdamW with the usual no-decay groups, the per-stage learning-rate schedule, and an EMA of the weights."""

from __future__ import annotations

import math

import torch
from torch import nn

from .config import OptimConfig, StageConfig


def build_optimizer(model: nn.Module, cfg: OptimConfig, lr: float) -> torch.optim.AdamW:
    """AdamW over the trainable parameters; biases, norms and modulation tables get no weight decay."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (no_decay if p.ndim < 2 or "norm" in name or "modulation" in name else decay).append(p)
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    groups = [g for g in groups if g["params"]]
    # foreach works for plain and DTensor (FSDP2) parameters alike.
    return torch.optim.AdamW(groups, lr=lr, betas=cfg.betas, eps=cfg.eps, foreach=True)


def stage_lr(stage: StageConfig, default_lr: float, step_in_stage: int) -> float:
    """LR at 0-based ``step_in_stage``: linear warm-up to the peak, then constant or cosine to min_lr_ratio·peak."""
    peak = stage.lr if stage.lr is not None else default_lr
    if step_in_stage < stage.warmup_steps:
        return peak * (step_in_stage + 1) / (stage.warmup_steps + 1)
    if stage.schedule == "constant":
        return peak
    span = max(1, stage.steps - stage.warmup_steps)
    progress = min(1.0, (step_in_stage - stage.warmup_steps) / span)
    floor = stage.min_lr_ratio * peak
    return floor + (peak - floor) * 0.5 * (1 + math.cos(math.pi * progress))


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr


class EMA:
    """Exponential moving average of the trainable parameters: ema ← d·ema + (1 − d)·θ.

    Works on whatever tensors the parameters are — plain or FSDP2-sharded DTensors (each rank then
    averages its own shard, so the EMA costs 1/world of a full copy). ``state_dict`` keys are the
    parameter names, so a checkpoint of it is sharded exactly like the model's.
    """

    def __init__(self, model: nn.Module, decay: float) -> None:
        self.decay = decay
        self.params = {n: p for n, p in model.named_parameters() if p.requires_grad}
        self.shadow = {n: p.detach().clone().float() for n, p in self.params.items()}

    @torch.no_grad()
    def update(self) -> None:
        names = list(self.params)
        shadow = [self.shadow[n] for n in names]
        current = [self.params[n].detach().float() for n in names]
        torch._foreach_lerp_(shadow, current, 1 - self.decay)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return dict(self.shadow)

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        missing = sorted(set(self.shadow) - set(state))
        if missing:
            raise KeyError(f"EMA state lacks {missing[:5]}")
        with torch.no_grad():
            for n, t in self.shadow.items():
                t.copy_(state[n])

    @torch.no_grad()
    def copy_to(self, model: nn.Module) -> None:
        """Write the averaged weights into ``model`` (same parameter names)."""
        params = dict(model.named_parameters())
        for n, t in self.shadow.items():
            params[n].copy_(t.to(params[n].dtype))
