"""Training-step throughput (samples/s) and peak memory of the DiT, with and without gradient
checkpointing (and with activation offloading), side by side with diffusers' WanTransformer3DModel
trained on the same weights, batch and noise.

One step = flow-matching forward + backward + AdamW update on a batch of latents; a small config
(dim 512, 4 layers, 8 heads; 256x256x17 clips -> 16x5x32x32 latents, 1,280 tokens; 64 prompt tokens
padded to 512).

    python benchmarks/bench_train.py                  # CPU, 2 threads -> results/train-cpu.json
    python benchmarks/bench_train.py --device cuda    # GPU -> results/train-cuda.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from memory import compare, machine_info, run_in_phases_if_needed  # noqa: E402


def build(device, batch: int):
    import torch
    from diffusers import WanTransformer3DModel

    from openwan.checkpoint.keymap_dit import dit_config_to_diffusers, dit_official_to_diffusers
    from openwan.configs import DiTConfig
    from openwan.models.dit import WanDiT
    from openwan.training.config import FlowConfig
    from openwan.training.flow_matching import model_timesteps, noisy_latents, sample_sigmas

    cfg = DiTConfig(dim=512, ffn_dim=1536, num_heads=8, num_layers=4, text_dim=512, freq_dim=256)
    torch.manual_seed(0)
    ours = WanDiT(cfg).to(device)
    theirs = WanTransformer3DModel(**dit_config_to_diffusers(cfg)).to(device)
    theirs.load_state_dict(dit_official_to_diffusers(ours.state_dict()))
    g = torch.Generator().manual_seed(0)
    x0 = torch.randn(batch, 16, 5, 32, 32, generator=g).to(device)
    noise = torch.randn(x0.shape, generator=g).to(device)
    # 64 prompt tokens zero-padded to text_len 512, as both pipelines feed the DiT (ours pads inside).
    context = torch.nn.functional.pad(torch.randn(batch, 64, cfg.text_dim, generator=g), (0, 0, 0, 448)).to(device)
    sigma = sample_sigmas(batch, FlowConfig(), g).to(device)
    x_t, target = noisy_latents(x0, noise, sigma)
    t = model_timesteps(sigma)

    def step_fn(model, forward, checkpointing: bool, offload: bool = False):
        import contextlib

        opt = torch.optim.AdamW(model.parameters(), lr=1e-5, foreach=True)
        if isinstance(model, WanDiT):
            model.gradient_checkpointing = checkpointing
        elif checkpointing:
            model.enable_gradient_checkpointing()
        else:
            model.disable_gradient_checkpointing()

        def step():
            ctx = torch.autograd.graph.save_on_cpu(pin_memory=device.type == "cuda") if offload else \
                contextlib.nullcontext()
            with ctx:
                pred = forward(model)
            loss = torch.nn.functional.mse_loss(pred.float(), target)
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
        return step

    def fwd_ours(m):
        return m(x_t, t, context)

    def fwd_theirs(m):
        return m(hidden_states=x_t, timestep=t, encoder_hidden_states=context, return_dict=False)[0]

    return ours, theirs, step_fn, fwd_ours, fwd_theirs


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--repeats", type=int, default=4)
    p.add_argument("--out", default=None)
    args = p.parse_args()
    out = Path(args.out or Path(__file__).parent / "results" / f"train-{args.device.split(':')[0]}.json")
    merged = run_in_phases_if_needed(args.device, out)
    if merged is not None:
        _report(merged, out)
        return
    import torch

    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    ours, theirs, step_fn, fwd_ours, fwd_theirs = build(device, args.batch)
    result = {**machine_info(device, args.threads), "batch": args.batch, "rows": [],
              "config": "dim 512, 4 layers, 8 heads, 16x5x32x32 latents (1280 tokens), 64 prompt tokens padded to 512"}
    for name, ckpt, offload in (("plain", False, False), ("grad_checkpointing", True, False),
                                ("activation_offload", False, True)):
        print(f"{name} ...", flush=True)
        row = compare(step_fn(ours, fwd_ours, ckpt, offload), step_fn(theirs, fwd_theirs, ckpt, offload),
                      device, repeats=args.repeats)
        for who in ("ours", "diffusers"):
            if f"{who}_median_s" in row:
                row[f"{who}_samples_per_s"] = round(args.batch / row[f"{who}_median_s"], 3)
        row["mode"] = name
        result["rows"].append(row)
        print(f"  {row}", flush=True)
    _report(result, out)


def _report(result: dict, out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
