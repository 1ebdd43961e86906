"""Wall time of `openwan generate PROMPT` with the bundled shapes-world model, as a user runs it.

Each run is a fresh `openwan generate` process (Python start-up, imports, loading the weights, umT5,
30 UniPC steps with CFG, VAE decode, MP4 writing), so the figure is what a user waits for on a
laptop-class CPU. The target is <= 15 s on 2 cores. Also reports the in-process generation time (the
`seconds` the result's metadata records) and the bundled weights' size on disk (target <= 50 MB).

    python benchmarks/bench_bundled.py [--runs 3] [--threads 2] [--out benchmarks/results/bundled-cpu.json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from memory import machine_info  # noqa: E402

PROMPTS = ("a red circle falls and bounces", "一个蓝色的正方形向左移动", "a green star moves up")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=3, help="fresh processes per prompt")
    ap.add_argument("--threads", type=int, default=2, help="OMP/torch threads of the generate processes")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "bundled-cpu.json"))
    args = ap.parse_args()

    from openwan.bundled import bundled_model_path

    model = bundled_model_path()
    weights = sum(p.stat().st_size for p in model.rglob("*") if p.is_file())
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for prompt in PROMPTS:
            for run in range(args.runs):
                out = Path(tmp) / f"{len(rows)}.mp4"
                start = time.perf_counter()
                subprocess.run([sys.executable, "-m", "openwan.cli", "generate", prompt, "--seed", str(run),
                                "--output", str(out), "--no-progress"], env=env, check=True, capture_output=True)
                wall = time.perf_counter() - start
                meta = json.loads(out.with_suffix(".json").read_text())
                rows.append({"prompt": prompt, "seed": run, "wall_s": round(wall, 3),
                             "generate_s": meta["seconds"]})
                print(f"{prompt!r} seed {run}: {wall:.2f} s wall, {meta['seconds']:.2f} s generating")
    walls = [r["wall_s"] for r in rows]
    result = {
        **machine_info("cpu", args.threads),
        "model": str(model),
        "weights_mb": round(weights / 1e6, 2),
        "settings": {k: meta[k] for k in ("width", "height", "frames", "steps", "guidance", "shift", "solver")},
        "wall_s_median": round(statistics.median(walls), 3),
        "wall_s_max": round(max(walls), 3),
        "generate_s_median": round(statistics.median(r["generate_s"] for r in rows), 3),
        "target_wall_s": 15.0,
        "target_weights_mb": 50.0,
        "runs": rows,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n")
    print(f"median {result['wall_s_median']} s per `openwan generate` (max {result['wall_s_max']} s), "
          f"{result['generate_s_median']} s of it generating; weights {result['weights_mb']} MB -> {args.out}")


if __name__ == "__main__":
    main()
