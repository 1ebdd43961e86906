"""DiT forward and VAE decode: openwan vs diffusers, same process, same config and weights.

    python benchmarks/bench_core.py                      # CPU, 2 threads, writes benchmarks/results/core-cpu.json
    python benchmarks/bench_core.py --device cuda --gpu-1.3b   # adds T2V-1.3B at 832x480x81 (random weights)

Ratios are ours / diffusers (lower is better; <= 1.0 means we are at least as fast / lean).
Peak memory on the CPU is the RSS high-water mark above the baseline during one call (see memory.py).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from memory import compare, machine_info, measure, run_in_phases_if_needed  # noqa: E402


def bench_dit(device, dtype, repeats: int) -> dict:
    import torch
    from diffusers import WanTransformer3DModel

    from openwan.checkpoint.keymap_dit import dit_config_to_diffusers, dit_official_to_diffusers
    from openwan.checkpoint.random_init import randomize_
    from openwan.configs import DiTConfig
    from openwan.models.dit import WanDiT

    cfg = DiTConfig(dim=384, ffn_dim=1536, num_heads=6, num_layers=4, text_dim=512)
    ours = randomize_(WanDiT(cfg)).to(device, dtype).eval()
    theirs = WanTransformer3DModel(**dit_config_to_diffusers(cfg))
    theirs.load_state_dict(dit_official_to_diffusers(ours.state_dict()), strict=True)
    theirs = theirs.to(device, dtype).eval()
    g = torch.Generator().manual_seed(0)
    x = torch.randn(1, 16, 4, 32, 32, generator=g).to(device, dtype)  # 4·16·16 = 1024 tokens
    ctx = torch.randn(1, 512, 512, generator=g).to(device, dtype)
    t = torch.tensor([500], device=device)
    with torch.no_grad():
        row = compare(lambda: ours(x, t, ctx), lambda: theirs(x, t, ctx, return_dict=False), device, repeats)
    return {"config": "dim 384, 6 heads, 4 layers, ffn 1536, 1024 tokens, 512 text tokens", **row}


def bench_vae(device, repeats: int, size: int, frames: list[int]) -> dict:
    import torch
    from diffusers import AutoencoderKLWan

    from openwan.checkpoint.keymap_vae import vae_config_to_diffusers, vae_official_to_diffusers
    from openwan.checkpoint.random_init import randomize_
    from openwan.configs import VAEConfig
    from openwan.models.vae import WanVAE

    cfg = VAEConfig()  # the released Wan-VAE shape (dim 96), random weights
    ours = randomize_(WanVAE(cfg), std=0.02).to(device).eval()
    theirs = AutoencoderKLWan(**vae_config_to_diffusers(cfg))
    theirs.load_state_dict(vae_official_to_diffusers(ours.state_dict()), strict=True)
    theirs = theirs.to(device).eval()
    rows = []
    for n in frames:
        gen = torch.Generator().manual_seed(n)
        z = torch.randn(1, 16, (n - 1) // 4 + 1, size // 8, size // 8, generator=gen).to(device)
        z_raw = ours.denormalize(z)
        with torch.no_grad():
            row = compare(lambda: ours.decode(z), lambda: theirs.decode(z_raw, return_dict=False), device,
                          max(1, repeats // 2))
        rows.append({"frames": n, **row})
        print(f"  VAE decode {n} frames: {rows[-1]}", flush=True)
    return {"config": f"released Wan-VAE shape (dim 96), {size}x{size} px, fp32", "rows": rows}


def bench_gpu_1_3b(device) -> dict:
    """T2V-1.3B (random weights) at 832x480x81, bf16: seconds per sampling step (two forwards: CFG)."""
    import torch

    from openwan.configs import VARIANTS
    from openwan.models.dit import WanDiT

    cfg = VARIANTS["t2v-1.3B"].dit
    model = WanDiT(cfg).to(device, torch.bfloat16).eval()
    x = torch.randn(1, 16, 21, 60, 104, device=device, dtype=torch.bfloat16)  # 32,760 tokens
    ctx = torch.randn(1, 512, 4096, device=device, dtype=torch.bfloat16)
    t = torch.tensor([999], device=device)

    def step():
        model(x, t, ctx)
        model(x, t, ctx)

    with torch.no_grad():
        s, peak = measure(step, device, repeats=3)
    return {"config": "T2V-1.3B bf16, 832x480x81 (32,760 tokens), CFG = 2 forwards per step",
            "s_per_step": round(s, 3), "peak_gpu_mib_above_weights": round(peak, 1),
            "peak_gpu_mib_total": round(torch.cuda.max_memory_allocated() / 2**20, 1)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=6, help="timed calls of each (VAE: half)")
    p.add_argument("--vae-size", type=int, default=64, help="decoded frame size in pixels (square)")
    p.add_argument("--frames", default="17,33,65")
    p.add_argument("--gpu-1.3b", dest="gpu_13b", action="store_true", help="also time T2V-1.3B at 832x480x81")
    p.add_argument("--out", default=None)
    args = p.parse_args()
    out = Path(args.out or Path(__file__).parent / "results" / f"core-{args.device.split(':')[0]}.json")
    merged = run_in_phases_if_needed(args.device, out)
    if merged is not None:
        _report(merged, out)
        return
    import torch

    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    result = machine_info(device, args.threads)
    print("DiT forward ...", flush=True)
    result["dit_forward"] = bench_dit(device, torch.float32, args.repeats)
    print(f"  {result['dit_forward']}", flush=True)
    print("VAE decode ...", flush=True)
    result["vae_decode"] = bench_vae(device, args.repeats, args.vae_size, [int(f) for f in args.frames.split(",")])
    if args.gpu_13b:
        result["t2v_1_3b"] = bench_gpu_1_3b(device)
        print(f"  {result['t2v_1_3b']}", flush=True)
    _report(result, out)


def _report(result: dict, out: Path) -> None:
    vae = result.get("vae_decode")
    if vae and "ours_peak_mib" in vae["rows"][0]:
        first, last = vae["rows"][0]["ours_peak_mib"], vae["rows"][-1]["ours_peak_mib"]
        vae["ours_peak_growth_first_to_last"] = round(last / first, 3)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
