"""Time of all weight-free bench metrics on an 81-frame 832x480 video (the issue's target: <= 10 s on 2 cores).

The video is a smooth random texture whose left half moves 2 px/frame right and 0.5 px/frame down while
the right half stays still, so every metric (including pixel stability and NIQE) produces a value.

    python benchmarks/bench_metrics.py [--threads 2]   -> results/metrics-cpu.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", default=str(Path(__file__).parent / "results" / "metrics-cpu.json"))
    args = p.parse_args()
    import cv2
    import numpy as np
    import torch

    torch.set_num_threads(args.threads)
    cv2.setNumThreads(args.threads)
    from openwan.bench.metrics import WEIGHT_FREE, optical_flow, weight_free_metrics

    rng = np.random.default_rng(0)
    t, h, w = 81, 480, 832
    small = rng.integers(0, 256, ((h + 200) // 4, (w + 400) // 4, 3)).astype(np.uint8)
    texture = cv2.resize(small, (w + 400, h + 200), interpolation=cv2.INTER_CUBIC)
    video = np.stack([texture[100 - i // 2: 100 - i // 2 + h, 200 - 2 * i: 200 - 2 * i + w] for i in range(t)])
    video[:, :, w // 2:] = video[0, :, w // 2:]
    t0 = time.perf_counter()
    results = weight_free_metrics(video)
    total = time.perf_counter() - t0
    t0 = time.perf_counter()
    optical_flow(video)
    flow_s = time.perf_counter() - t0
    out = {"video": f"{t}x{h}x{w}", "threads": args.threads, "all_metrics_s": round(total, 2),
           "optical_flow_s": round(flow_s, 2), "metrics": sorted(WEIGHT_FREE),
           "values": {k: r.value for k, r in results.items()}, "command": "python " + " ".join(sys.argv)}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
