"""Sweep overhead: bench-run's wall time / (server ready time + the sum of benchmark durations).

A 3-point serving sweep on the tiny model. 1.0 would mean bench-run adds nothing to the time vLLM
itself spends starting and measuring; the rest is preflight (vLLM's flag parser), process starts
of `vllm bench serve` (each imports vLLM), the server's shutdown and the agent's bookkeeping.

    python benchmarks/sweep_overhead.py --model .cache/tiny-llama [--repeat N] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

BENCH_RUN = str(Path(sys.executable).parent / "bench-run")


def one_sweep(model: Path, qps: str, prompts: int, extra: list[str]) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="sweep-overhead-") as out:
        argv = [
            BENCH_RUN, "--executor", "local", "--vendor", "cpu", "--model", str(model),
            "--dtype", "bfloat16",
            "--max-model-len", "2048", "--env", "VLLM_CPU_KVCACHE_SPACE=1",
            "--input-len", "128", "--output-len", "32", "--qps", qps,
            "--num-prompts", str(prompts), "--out", out, *extra,
        ]  # fmt: skip
        started = time.monotonic()
        proc = subprocess.run(argv, capture_output=True, text=True, check=False)
        wall = time.monotonic() - started
        if proc.returncode != 0:
            raise SystemExit(f"bench-run failed ({proc.returncode}): {proc.stderr.strip()[-2000:]}")
        (run_dir,) = [p for p in Path(out).iterdir() if p.is_dir()]
        status = json.loads((run_dir / "status.json").read_text())
        ready = float(status["server"]["ready_s"])
        durations = [
            float(json.loads((run_dir / p["result"]).read_text())["duration"])
            for p in status["points"]
        ]
        process_s = [float(p["seconds"]) for p in status["points"]]
    useful = ready + sum(durations)
    return {
        "wall_s": round(wall, 2),
        "server_ready_s": round(ready, 2),
        "benchmark_durations_s": [round(d, 2) for d in durations],
        "point_process_s": [round(s, 2) for s in process_s],
        "overhead_ratio": round(wall / useful, 3),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True, help="the tiny model directory")
    parser.add_argument("--qps", default="2,4,8", help="the 3 request rates (default 2,4,8)")
    parser.add_argument("--num-prompts", type=int, default=20, help="prompts per point")
    parser.add_argument("--repeat", type=int, default=1, help="sweeps to run")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("extra", nargs="*", help="more bench-run flags (after --)")
    args = parser.parse_args()
    sweeps = []
    for i in range(args.repeat):
        sweep = one_sweep(args.model.resolve(), args.qps, args.num_prompts, args.extra)
        sweeps.append(sweep)
        print(
            f"sweep {i + 1}/{args.repeat}: wall {sweep['wall_s']} s, server ready "
            f"{sweep['server_ready_s']} s, benchmarks {sum(sweep['benchmark_durations_s']):.2f} s "
            f"-> overhead ratio {sweep['overhead_ratio']}",
            flush=True,
        )
    ratios = [s["overhead_ratio"] for s in sweeps]
    summary = {"sweeps": sweeps, "median_overhead_ratio": statistics.median(ratios)}
    print(f"median overhead ratio over {len(ratios)} sweep(s): {summary['median_overhead_ratio']}")
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
