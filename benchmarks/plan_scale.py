"""A plan file at scale: 1,000 configurations x 10 rates expanded, validated and dry-run, timed.

    python benchmarks/plan_scale.py [--repeat 5] [--model .cache/tiny-llama]

Times `bench-run --plan FILE --dry-run` as a user runs it (a new process, imports included)
and, in this process, the library's part (read, expand, order, prepare_many, describe).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from runner.cli.sweep import describe
from runner.entry import HostSettings, prepare_many
from runner.planfile import expand, read_plan
from runner.sweep import order, requests_for, run_name

ROOT = Path(__file__).resolve().parent.parent


def plan_text(model: Path) -> str:
    """1,000 configurations (10 x 10 x 10) of 10 serving rates each: 10,000 points."""
    return f"""vendor: cpu
executor: local
model: {model}
qps: [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]
num_prompts: 8
input_len: 32
output_len: 8
matrix:
  max_num_seqs: [1, 2, 4, 8, 16, 32, 64, 128, 256, 512]
  max_num_batched_tokens: [512, 1024, 2048, 3072, 4096, 5120, 6144, 7168, 8192, 16384]
  gpu_memory_utilization: [0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95]
exclude:
  - {{max_num_seqs: 1024}}  # matches none: the check runs, nothing is removed
"""


def in_process(path: Path) -> tuple[float, int, int]:
    start = time.perf_counter()
    configurations = list(enumerate(order(expand(read_plan(path), {"dry_run": True})), 1))
    prepared = prepare_many(
        requests_for([c for _, c in configurations]),
        HostSettings.from_environ(dict(os.environ)),
        run_ids=[run_name(i, c) for i, c in configurations],
    )
    text = describe(prepared, configurations)
    points = sum(len(run.points()) for run in prepared.plan.runs)
    assert text.count("\n") == len(configurations)
    return time.perf_counter() - start, len(configurations), points


def as_a_user(path: Path) -> float:
    bench_run = Path(sys.executable).with_name("bench-run")
    start = time.perf_counter()
    subprocess.run(
        [str(bench_run), "--plan", str(path), "--dry-run"],
        check=True,
        stdout=subprocess.DEVNULL,
        cwd=ROOT,
    )
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--model", type=Path, default=ROOT / ".cache" / "tiny-llama")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "plan.yaml"
        path.write_text(plan_text(args.model.resolve()), encoding="utf-8")
        library, users = [], []
        for _ in range(args.repeat):
            seconds, configurations, points = in_process(path)
            library.append(seconds)
            users.append(as_a_user(path))
    print(f"{configurations} configurations, {points} points, {args.repeat} runs")
    for name, times in (("library (in process)", library), ("bench-run --dry-run", users)):
        print(
            f"{name}: median {statistics.median(times):.3f} s, "
            f"min {min(times):.3f} s, max {max(times):.3f} s"
        )


if __name__ == "__main__":
    main()
