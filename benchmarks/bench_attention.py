"""CPU training under bf16 autocast: attention in fp32 (what openwan does when autograd needs the
backward) against SDPA in bf16 (what autocast does by default, and diffusers with it).

PyTorch's CPU flash-attention kernel is slower backwards in bf16 than in fp32 at short and very long
sequences, so ``openwan.models.attention.attention`` upcasts q/k/v on the CPU when autograd will need
its backward. Two measurements, each interleaved A B A B (``memory.compare``):

1. the kernel alone, forward + backward on [B, 4 heads, L, 64] at several lengths;
2. one training step of the bundled shapes-world DiT (dim 256, 6 layers, batch 32, 80 video tokens,
   20 prompt tokens padded to 64) under ``torch.autocast("cpu", bfloat16)``: ours against diffusers'
   WanTransformer3DModel with the same weights, batch and noise, and against ours with the upcast off.

    python benchmarks/bench_attention.py        # -> results/attention-cpu.json (timings only)
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

os.environ.setdefault("OPENWAN_BENCH_PHASE", "time")  # timings only: the upcast copies are a few MiB
sys.path.insert(0, str(Path(__file__).parent))
from memory import compare, cpu_rows_main  # noqa: E402

KERNEL_SHAPES = ((32, 80), (8, 320), (2, 1280), (1, 4096))  # (batch, tokens)


def kernel_rows(repeats: int) -> list[dict]:
    import torch
    import torch.nn.functional as F

    from openwan.models.attention import attention

    rows = []
    for batch, tokens in KERNEL_SHAPES:
        g = torch.Generator().manual_seed(0)
        q, k, v = (torch.randn(batch, tokens, 4, 64, generator=g, dtype=torch.bfloat16).requires_grad_()
                   for _ in range(3))

        def ours(q=q, k=k, v=v):
            attention(q, k, v).sum().backward()

        def bf16_sdpa(q=q, k=k, v=v):  # [B, L, H, D] -> SDPA's [B, H, L, D], as a bf16 caller would run it
            F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)).sum().backward()

        row = compare(ours, bf16_sdpa, torch.device("cpu"), repeats=repeats)
        row = {key.replace("diffusers", "bf16_sdpa"): value for key, value in row.items()}
        rows.append({"what": "attention forward + backward", "batch": batch, "tokens": tokens, **row})
        print(f"  {rows[-1]}", flush=True)
    return rows


def shapes_world_steps(ours_forward=None, theirs_forward=None):
    """Training-step closures for the bundled shapes-world DiT (dim 256, 6 layers, batch 32, 80 video
    tokens, 20 prompt tokens padded to 64) under bf16 autocast: ours and diffusers' WanTransformer3DModel
    with the same weights, batch and noise. ``*_forward`` wrap each model before it is called (e.g.
    ``torch.compile``); the optimisers update the unwrapped models' parameters."""
    import torch
    from diffusers import WanTransformer3DModel

    from openwan.checkpoint.keymap_dit import (
        dit_config_to_diffusers,
        dit_official_to_diffusers,
    )
    from openwan.configs import DiTConfig
    from openwan.models.dit import WanDiT

    cfg = DiTConfig(dim=256, ffn_dim=1024, num_heads=4, num_layers=6, text_dim=128, freq_dim=256, text_len=64)
    torch.manual_seed(0)
    ours = WanDiT(cfg)
    theirs = WanTransformer3DModel(**dit_config_to_diffusers(cfg))
    theirs.load_state_dict(dit_official_to_diffusers(ours.state_dict()))
    g = torch.Generator().manual_seed(0)
    batch = 32
    x_t = torch.randn(batch, 16, 5, 8, 8, generator=g)
    target = torch.randn(x_t.shape, generator=g)
    context = torch.randn(batch, 20, cfg.text_dim, generator=g)
    padded = torch.nn.functional.pad(context, (0, 0, 0, cfg.text_len - 20))
    t = torch.rand(batch, generator=g) * 1000

    def step_fn(model, call):
        opt = torch.optim.AdamW(model.parameters(), lr=1e-5)

        def step():
            with torch.autocast("cpu", dtype=torch.bfloat16):
                pred = call()
            torch.nn.functional.mse_loss(pred.float(), target).backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
        return step

    f_ours = ours_forward(ours) if ours_forward else ours
    f_theirs = theirs_forward(theirs) if theirs_forward else theirs
    ours_step = step_fn(ours, lambda: f_ours(x_t, t, context))
    theirs_step = step_fn(theirs, lambda: f_theirs(hidden_states=x_t, timestep=t, encoder_hidden_states=padded,
                                                   return_dict=False)[0])
    return ours_step, theirs_step, batch


def dit_rows(repeats: int) -> list[dict]:
    import torch

    import openwan.models.attention as attention_module

    ours_step, theirs_step, batch = shapes_world_steps()
    rows = []
    row = compare(ours_step, theirs_step, torch.device("cpu"), repeats=repeats)
    rows.append({"what": "shapes-world DiT training step, bf16 autocast", "batch": batch, **row})
    print(f"  {rows[-1]}", flush=True)

    upcast = attention_module._cpu_half_backward

    def ours_bf16_attention():
        attention_module._cpu_half_backward = lambda *tensors: False
        try:
            ours_step()
        finally:
            attention_module._cpu_half_backward = upcast

    row = compare(ours_step, ours_bf16_attention, torch.device("cpu"), repeats=repeats)
    row = {key.replace("diffusers", "ours_bf16_attention"): value for key, value in row.items()}
    rows.append({"what": "shapes-world DiT training step, bf16 autocast, upcast off", "batch": batch, **row})
    print(f"  {rows[-1]}", flush=True)
    return rows


def main() -> None:
    cpu_rows_main(__doc__, "attention-cpu.json", [("attention kernel", kernel_rows), ("DiT training step", dit_rows)])


if __name__ == "__main__":
    main()
