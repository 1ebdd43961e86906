"""torch.compile of the DiT training step (``[run] compile = true``), on the bundled shapes-world DiT.

One step = forward under bf16 autocast + backward + AdamW, batch 32 (``bench_attention.shapes_world_steps``:
the recipe's shapes). Three comparisons, each interleaved A B A B (``memory.compare``), after a first call
that compiles (its wall time is reported as ``compile_s``):

1. ours compiled against ours eager (what ``run.compile`` buys);
2. ours compiled against diffusers' WanTransformer3DModel compiled (the peer with the same tool);
3. ours eager against diffusers eager (for reference; ``bench_attention.py`` measures it too).

    python benchmarks/bench_compile.py        # CPU, 2 threads -> results/compile-cpu.json
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OPENWAN_BENCH_PHASE", "time")  # timings only
sys.path.insert(0, str(Path(__file__).parent))
from bench_attention import shapes_world_steps
from memory import compare, cpu_rows_main


def _first_call_s(step) -> float:
    t0 = time.perf_counter()
    step()
    return round(time.perf_counter() - t0, 1)


def rows(repeats: int) -> list[dict]:
    import torch

    cpu = torch.device("cpu")
    ours_c, theirs_c, batch = shapes_world_steps(torch.compile, torch.compile)
    compile_s = {"ours_compile_s": _first_call_s(ours_c), "diffusers_compile_s": _first_call_s(theirs_c)}
    ours_e, theirs_e, _ = shapes_world_steps()
    out = []
    for what, a, b, names in (
        ("ours compiled vs ours eager", ours_c, ours_e, ("ours_compiled", "ours_eager")),
        ("ours compiled vs diffusers compiled", ours_c, theirs_c, ("ours_compiled", "diffusers_compiled")),
        ("ours eager vs diffusers eager", ours_e, theirs_e, ("ours_eager", "diffusers_eager")),
    ):
        row = compare(a, b, cpu, repeats=repeats)
        row = {k.replace("ours", names[0]).replace("diffusers", names[1]) if not k.startswith("time_ratio") else k: v
               for k, v in row.items()}
        out.append({"what": f"shapes-world DiT training step, bf16 autocast: {what}", "batch": batch, **row})
        print(f"  {out[-1]}", flush=True)
    out[0].update(compile_s)
    return out


def main() -> None:
    cpu_rows_main(__doc__, "compile-cpu.json", [("compiled DiT training step", rows)])


if __name__ == "__main__":
    main()
