"""What the per-point probe costs: its own CPU time as a fraction of the CPU a point used.

Runs one real serving sweep with bench-run (the tiny model on this host's CPU, several rates),
then reads each serving point's probe from status.json: probe_cpu_s (the sampler thread's own
CPU time, time.thread_time, plus its start and stop) against the point's CPU: the servers'
process trees (server_cpu_s) + the load generator (client_cpu_s) + the probe. The cost of
vLLM rendering /metrics for the scrapes is inside server_cpu_s, not in probe_cpu_s.

    python benchmarks/sampler_cost.py --model .cache/tiny-llama [--qps 2,4,8] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

BIN = Path(sys.executable).parent


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--qps", default="2,4,8")
    parser.add_argument("--prompts", type=int, default=40)
    parser.add_argument("--json", type=Path, help="Also write the numbers here.")
    parser.add_argument("--keep", type=Path, help="Write the run directory here (kept).")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="sampler-cost-") as scratch:
        out = str(args.keep or scratch)
        argv = [
            str(BIN / "bench-run"), "--model", str(args.model), "--executor", "local",
            "--vendor", "cpu", "--dtype", "bfloat16", "--max-model-len", "2048",
            "--env", "VLLM_CPU_KVCACHE_SPACE=1", "--input-len", "128", "--output-len", "64",
            "--scenario", "serve", "--qps", args.qps, "--num-prompts", str(args.prompts),
            "--out", out,
        ]  # fmt: skip
        done = subprocess.run(argv, env={**os.environ, "HF_HUB_OFFLINE": "1"}, check=False)
        if done.returncode != 0:
            print(f"bench-run exited with status {done.returncode}", file=sys.stderr)
            return 1
        (run_dir,) = [p for p in Path(out).iterdir() if p.is_dir()]
        status = json.loads((run_dir / "status.json").read_text())
    rows = []
    for point in status["points"]:
        found = (point.get("probe") or {}).get("metrics") or {}
        if "probe_cpu_s" not in found:
            continue
        probe_s = found["probe_cpu_s"]
        total = found.get("server_cpu_s", 0.0) + found.get("client_cpu_s", 0.0) + probe_s
        rows.append(
            {
                "point": point["id"],
                "seconds": point.get("seconds"),
                "samples": found.get("server_samples"),
                "probe_cpu_s": round(probe_s, 4),
                "point_cpu_s": round(total, 3),
                "fraction": probe_s / total if total else None,
            }
        )
    for row in rows:
        fraction = row["fraction"]
        shown = "-" if fraction is None else f"{100 * fraction:.2f}%"
        print(
            f"{row['point']:>14}  {row['seconds']:>7} s  {row['samples']:>4} scrapes  "
            f"probe {row['probe_cpu_s']:.4f} s of {row['point_cpu_s']:.2f} s CPU = {shown}"
        )
    probe_total = sum(r["probe_cpu_s"] for r in rows)
    point_total = sum(r["point_cpu_s"] for r in rows)
    if point_total:
        print(f"all points: {100 * probe_total / point_total:.2f}% (target < 1%)")
    if args.json is not None:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
