"""Results at scale: index, table and report for many synthetic run directories, timed.

Writes N point records (default 10,000: 500 runs of 18 serving points, latency and throughput)
as run directories in the format bench-run writes (run.json, status.json, provenance.json,
raw/<point>.json in vLLM's own output format, scaled from the real CPU sweep in
tests/fixtures/runs/), then times what `bench-results` does with them, `--repeat` times from
a cold start (the index deleted: the root as bench-run left it):

    python benchmarks/results_scale.py [--records 10000] [--points 20] [--repeat 3] [--keep DIR]
        [--json OUT]

Library calls are timed in this process, imports done (a new process's are timed on their
own: `bench-results show` and `bench-results report` as a user runs them).
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from results.analysis import index
from results.analysis.query import load_records
from results.render.charts import load_matplotlib
from results.render.formats import render
from results.render.report import write_report

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = ROOT / "tests" / "fixtures" / "runs" / "20261122-054648-tiny-llama-cpu-d56769"
BENCH_RESULTS = str(Path(sys.executable).parent / "bench-results")
TARGET_S = 5.0

# (vendor, GPU model, GPUs in the box, relative speed); the CPU is the fixture's own machine
HARDWARE = (
    ("nvidia", "NVIDIA H100 80GB HBM3", 8, 1.0),
    ("nvidia", "NVIDIA A100-SXM4-80GB", 8, 0.55),
    ("amd", "AMD Instinct MI300X", 8, 1.1),
    ("cpu", None, 0, 0.004),
)
# (model, billions of parameters)
MODELS = (
    ("meta-llama/Llama-3.1-8B-Instruct", 8),
    ("meta-llama/Llama-3.1-70B-Instruct", 70),
    ("Qwen/Qwen2.5-32B-Instruct", 32),
    ("mistralai/Mistral-7B-Instruct-v0.3", 7),
)
PRECISIONS = (("bfloat16", None, None), ("float16", None, None), ("bfloat16", "fp8", "fp8"))
RATES = (0.5, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 12, 14, 16, 20, 24, 32, math.inf)


def _fixture_json(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((FIXTURE / name).read_text())
    return data


def _write(path: Path, data: object) -> None:
    path.write_text(json.dumps(data, indent=2))


class Generator:
    """Run directories shaped like the fixture's, with numbers from a simple load model."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)  # noqa: S311 (synthetic numbers, not secrets)
        self.run = _fixture_json("run.json")
        self.status = _fixture_json("status.json")
        self.provenance = _fixture_json("provenance.json")
        self.serve = _fixture_json("raw/serve-qps4.json")
        self.latency = _fixture_json("raw/latency.json")
        self.throughput = _fixture_json("raw/throughput.json")

    def _jitter(self, value: float, spread: float = 0.03) -> float:
        return value * (1.0 + self.rng.uniform(-spread, spread))

    def serve_output(
        self, qps: float, capacity: float, ttft_ms: float, tpot_ms: float, n: int, out_len: int
    ) -> dict[str, Any]:
        raw = copy.deepcopy(self.serve)
        load = (capacity if math.isinf(qps) else min(qps, capacity)) / capacity
        achieved = self._jitter(capacity * load * (0.97 if load < 1 else 0.99))
        duration = n / achieved
        tpot = self._jitter(tpot_ms * (1.0 + 0.9 * load**2))
        ttft = self._jitter(ttft_ms * (1.0 + 12.0 * load**6))
        e2el = ttft + tpot * (out_len - 1)
        raw.update(
            request_rate="inf" if math.isinf(qps) else float(qps),
            num_prompts=n,
            completed=n,
            failed=0,
            duration=duration,
            total_input_tokens=n * 128,
            total_output_tokens=n * out_len,
            request_throughput=achieved,
            output_throughput=achieved * out_len,
            total_token_throughput=achieved * (128 + out_len),
            max_concurrent_requests=max(1, round(achieved * e2el / 1000.0 * 1.5)),
        )
        for family, mean in (("ttft", ttft), ("tpot", tpot), ("itl", tpot), ("e2el", e2el)):
            raw[f"mean_{family}_ms"] = mean
            raw[f"median_{family}_ms"] = mean * 0.95
            raw[f"std_{family}_ms"] = mean * 0.2
            for pct, factor in (("50", 0.95), ("90", 1.3), ("99", 1.8)):
                raw[f"p{pct}_{family}_ms"] = mean * factor
        return raw

    def write_run(self, out: Path, index_: int, points: int) -> int:
        vendor, gpu, box, speed = HARDWARE[index_ % len(HARDWARE)]
        model, size = MODELS[(index_ // len(HARDWARE)) % len(MODELS)]
        dtype, quantization, kv = PRECISIONS[(index_ // 16) % len(PRECISIONS)]
        tp = 1 if vendor == "cpu" else min(box, max(1, 2 ** ((index_ // 48) % 4)))
        fp8 = 1.6 if quantization == "fp8" else 1.0
        capacity = max(0.3, speed * fp8 * tp * 400.0 / size)  # requests/s the engine sustains
        tpot_ms = 4.0 * size / (speed * fp8 * 100.0 * tp) + 4.0
        ttft_ms = 3.0 * tpot_ms + 10.0
        run_id = f"20261122-{index_ // 3600:02d}{index_ // 60 % 60:02d}{index_ % 60:02d}"
        run_id += f"-{model.rsplit('/', 1)[-1].lower()}-{vendor}-{index_:06x}"
        run_dir = out / run_id
        (run_dir / "raw").mkdir(parents=True)

        rates = RATES[: max(points - 2, 1)]
        plan: list[dict[str, Any]] = [
            {
                "id": f"serve-qps{'inf' if math.isinf(q) else f'{q:g}'}",
                "scenario": "serve",
                "qps": q,
            }
            for q in rates
        ]
        plan += [
            {"id": "latency", "scenario": "latency"},
            {"id": "throughput", "scenario": "throughput"},
        ]
        plan = plan[:points]
        run = copy.deepcopy(self.run)
        run.update(run_id=run_id, vendor=vendor, model={"source": model, "local_path": None})
        run["engine"].update(tp=tp, dtype=dtype, quantization=quantization, kv_cache_dtype=kv)
        run["serve"]["qps"] = ["inf" if math.isinf(q) else q for q in rates]
        run["points"] = [
            {
                "id": p["id"],
                "scenario": p["scenario"],
                "qps": ("inf" if math.isinf(p["qps"]) else p["qps"]) if "qps" in p else None,
                "num_prompts": 20,
            }
            for p in plan
        ]
        status = copy.deepcopy(self.status)
        status.update(run_id=run_id)
        status_points = []
        for p in plan:
            name = f"raw/{p['id']}.json"
            verdict, reasons = "ok", []
            if p["scenario"] == "serve":
                raw = self.serve_output(p["qps"], capacity, ttft_ms, tpot_ms, 20, 32)
                if self.rng.random() < 0.01:  # the odd point whose requests all failed
                    raw.update(completed=0, failed=20, request_throughput=0.0)
                    verdict, reasons = "failed", ["20 of 20 requests failed"]
            elif p["scenario"] == "latency":
                raw = copy.deepcopy(self.latency)
                scale = tpot_ms / 6.0
                raw["avg_latency"] *= scale
                raw["latencies"] = [v * scale for v in raw["latencies"]]
                raw["percentiles"] = {k: v * scale for k, v in raw["percentiles"].items()}
            else:
                raw = copy.deepcopy(self.throughput)
                raw["elapsed_time"] = 20 / (capacity * 1.2)
                raw["requests_per_second"] = capacity * 1.2
                raw["tokens_per_second"] = capacity * 1.2 * 160
            _write(run_dir / name, raw)
            status_points.append(
                {
                    "id": p["id"],
                    "scenario": p["scenario"],
                    "verdict": verdict,
                    "reasons": reasons,
                    "result": name,
                    "log": f"logs/{p['id']}.log",
                    "seconds": round(self._jitter(20.0, 0.2), 3),
                    "returncode": 0,
                }
            )
        status["points"] = status_points
        prov = copy.deepcopy(self.provenance)
        prov.update(
            run_id=run_id,
            vendor=vendor,
            gpu_model=gpu,
            gpu_count=box,
            vllm_version="0.32.0" if vendor != "cpu" else "0.32.0+cpu",
            gpus=[{"model": gpu, "index": i} for i in range(box)],
        )
        _write(run_dir / "run.json", run)
        _write(run_dir / "status.json", status)
        _write(run_dir / "provenance.json", prov)
        return len(plan)


def generate(out: Path, records: int, points: int, seed: int = 0) -> tuple[int, int]:
    """Write run directories holding `records` point records in all; (runs, records) written."""
    gen = Generator(seed)
    written = runs = 0
    while written < records:
        written += gen.write_run(out, runs, min(points, records - written))
        runs += 1
    return runs, written


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    started = time.perf_counter()
    value = fn()
    return time.perf_counter() - started, value


def tree_bytes(root: Path) -> int:
    return sum(f.stat().st_size for f in root.rglob("*") if f.is_file())


COLD = "index build (cold: reads every run)"
WARM = "index refresh (warm: nothing changed)"
LOAD = "load every record from the index"
TABLE = "table of every record"
REPORT = "HTML report of every record"


SHOW_CLI = "`bench-results show ROOT` (a new process, index warm)"
REPORT_CLI = "`bench-results report ROOT` (a new process, no index: cold)"


def _cold(root: Path) -> None:
    index.index_path(root).unlink(missing_ok=True)


def _cli(*argv: str) -> None:
    subprocess.run([BENCH_RESULTS, *argv], check=True, stdout=subprocess.DEVNULL)


def measure(root: Path, report_dir: Path) -> dict[str, Any]:
    """Each step once, from a root without an index."""
    rows: dict[str, float] = {}
    _cold(root)
    rows[COLD], summary = timed(lambda: index.refresh(root))
    rows[WARM], _ = timed(lambda: index.refresh(root))
    rows[LOAD], records = timed(lambda: load_records([root]))
    rows[TABLE], _ = timed(lambda: render(records, "table"))
    rows["CSV export of every record"], _ = timed(lambda: render(records, "csv"))
    rows[REPORT], _ = timed(lambda: write_report(records, report_dir / "report.html"))
    # what a user waits for: a new process, imports, refresh, load and the output
    rows[SHOW_CLI], _ = timed(lambda: _cli("show", str(root)))
    _cold(root)
    rows[REPORT_CLI], _ = timed(lambda: _cli("report", str(root), "-o", str(report_dir / "r.html")))
    rows["load without the index (parse every run, one process)"], _ = timed(
        lambda: load_records([root], use_index=False)
    )
    warm = rows[WARM] + rows[LOAD] + rows[TABLE] + rows[REPORT]
    cold = rows[COLD] + rows[LOAD] + rows[TABLE] + rows[REPORT]
    return {
        "records": len(records),
        "runs": summary.runs,
        "seconds": rows,
        "total_warm_s": round(warm, 3),
        "total_cold_s": round(cold, 3),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=10_000, help="point records in all")
    parser.add_argument("--points", type=int, default=20, help="points per run (default 20)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeat", type=int, default=3, help="measurements (default 3)")
    parser.add_argument("--keep", type=Path, help="write the runs here and keep them")
    parser.add_argument("--json", type=Path, help="also write the timings here as JSON")
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="results-scale-"))
    root = args.keep or tmp / "runs"
    root.mkdir(parents=True, exist_ok=True)
    try:
        gen_s, (runs, written) = timed(lambda: generate(root, args.records, args.points, args.seed))
        size = tree_bytes(root)
        print(
            f"wrote {written} records in {runs} run directories ({size / 1e6:.0f} MB) "
            f"in {gen_s:.1f} s; {os.cpu_count()} CPU(s)",
            file=sys.stderr,
        )
        load_matplotlib()  # an import, as the others above: not part of any step
        results = [measure(root, tmp) for _ in range(max(args.repeat, 1))]
        steps = list(results[0]["seconds"])
        width = max(len(k) for k in steps)
        heads = [f"run {i + 1}" for i in range(len(results))]
        print(f"{'step':<{width}}  " + "  ".join(f"{head:>7}" for head in heads))
        for step in steps:
            print(f"{step:<{width}}  " + "  ".join(f"{r['seconds'][step]:7.2f}" for r in results))
        for name in ("warm", "cold"):
            totals = [r[f"total_{name}_s"] for r in results]
            verdict = "within" if max(totals) <= TARGET_S else "OVER"
            print(
                f"index ({name}) + load + table + report: "
                + ", ".join(f"{t:.2f}" for t in totals)
                + f" s; the slowest {max(totals):.2f} s is {verdict} the {TARGET_S:g} s target"
            )
        if args.json:
            summary = {"target_s": TARGET_S, "bytes": size, "cpus": os.cpu_count(), "runs": results}
            args.json.write_text(json.dumps(summary, indent=2) + "\n")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
