"""A 10,000-point plan rendered to Kubernetes manifests, timed (the issue's budget: <= 2 s).

    python benchmarks/k8s_render.py [--repeat 5] [--model .cache/tiny-llama] [--validate]

The plan is plan_scale.py's (1,000 configurations x 10 rates). Times, in this process, the
library's whole way (read, expand, order, cluster_plan, settings, render_plan, YAML of every
object, files written), and `bench-run manifests --plan FILE -o DIR` as a user runs it (a new
process, imports included).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import kubernetes_validate  # the dev extra
import yaml
from plan_scale import plan_text  # beside this file: its directory is on sys.path

from runner.cli.manifests import write_files
from runner.executors.k8s_settings import manifests_for
from runner.executors.render.k8s import SUPPORTED_K8S, manifest_files
from runner.planfile import expand, read_plan
from runner.sweep import order, requests_for, run_name

ROOT = Path(__file__).resolve().parent.parent


def k8s_plan(model: Path) -> str:
    """plan_scale's plan, its model read from a model PVC mounted here at the model's parent."""
    return plan_text(model) + f"model_pvc: models\nmodel_pvc_root: {model.parent}\n"


def in_process(path: Path, out: Path) -> tuple[float, float, int, int, int, int]:
    start, cpu = time.perf_counter(), time.process_time()
    configurations = list(enumerate(order(expand(read_plan(path), {})), 1))
    plan, _, objects = manifests_for(
        requests_for([c for _, c in configurations]),
        run_ids=[run_name(i, c) for i, c in configurations],
        sweep_id="sweep-bench",
    )
    files = manifest_files(objects)
    write_files(files, out)
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    points = sum(len(run.points()) for run in plan.runs)
    size = sum(len(text.encode()) for text in files.values())
    return seconds, cpu, len(plan.runs), points, len(objects), size


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def as_a_user(path: Path, out: Path) -> tuple[float, float]:
    bench_run = Path(sys.executable).with_name("bench-run")
    start, cpu = time.perf_counter(), _children_cpu()
    subprocess.run(
        [str(bench_run), "manifests", "--plan", str(path), "-o", str(out)],
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=ROOT,
    )
    return time.perf_counter() - start, _children_cpu() - cpu


def validated(out: Path) -> str:
    """Every written object valid for the oldest and newest Kubernetes supported, and small
    enough for kubectl apply's last-applied-configuration annotation (256 KiB in all)."""
    files = sorted(out.iterdir())
    for path in files:
        obj = yaml.safe_load(path.read_text(encoding="utf-8"))
        for version in SUPPORTED_K8S:
            kubernetes_validate.validate(obj, f"{version}.0", strict=True)
        own = sum(len(k) + len(v) for k, v in (obj["metadata"].get("annotations") or {}).items())
        copy = len(json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode())
        assert own + copy + 48 <= 256 * 1024, f"{path.name}: too big for kubectl apply"
    return f"{len(files)} files valid for Kubernetes {' and '.join(SUPPORTED_K8S)}; apply fits"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--model", type=Path, default=ROOT / ".cache" / "tiny-llama")
    parser.add_argument(
        "--validate",
        action="store_true",
        help="also check every object with kubernetes-validate (1.29, 1.37) and kubectl apply's "
        "annotation limit (untimed)",
    )
    args = parser.parse_args()
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "plan.yaml"
        path.write_text(k8s_plan(args.model.resolve()), encoding="utf-8")
        library, users = [], []
        for n in range(args.repeat):
            *timed, runs, points, objects, size = in_process(path, Path(tmp) / f"lib-{n}")
            library.append(timed)
            users.append(as_a_user(path, Path(tmp) / f"user-{n}"))
        if args.validate:
            print(validated(Path(tmp) / "lib-0"))
    print(
        f"{runs} configurations, {points} points -> {objects} objects, "
        f"{size / 1e6:.1f} MB of YAML; {args.repeat} runs"
    )
    print(f"load average before: {load:.1f} (this machine has {os.cpu_count()} cores)")
    for name, pairs in (("library (in process)", library), ("bench-run manifests", users)):
        wall = [w for w, _ in pairs]
        cpu = [c for _, c in pairs]
        print(
            f"{name}: wall median {statistics.median(wall):.3f} s "
            f"(min {min(wall):.3f}, max {max(wall):.3f}); "
            f"CPU median {statistics.median(cpu):.3f} s (min {min(cpu):.3f})"
        )


if __name__ == "__main__":
    main()
