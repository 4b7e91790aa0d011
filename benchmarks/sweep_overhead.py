"""Sweep overhead, side by side: the hand-written shell loop against bench-run, same points.

Both run one `vllm serve` and a serving sweep over the same rates with the same server flags and
the same `vllm bench serve` flags. The loop is what the source documents script: start the
server, poll /health, one `vllm bench serve` process per point, kill the server. Each gets a
ratio: wall / (server ready + the sum of vLLM's benchmark durations); 1.0 would mean nothing but
vLLM's own start and measurement. Then the same bench-run configuration twice more, with a fresh
vLLM cache directory and again with it kept, for the cold and warm ready times.

    python benchmarks/sweep_overhead.py --model .cache/tiny-llama [--repeat N] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

BIN = Path(sys.executable).parent
BENCH_RUN = str(BIN / "bench-run")
VLLM = str(BIN / "vllm")
SERVER_FLAGS = ["--dtype", "bfloat16", "--max-model-len", "2048", "--no-enable-prefix-caching"]
ENV = {"VLLM_CPU_KVCACHE_SPACE": "1", "HF_HUB_OFFLINE": "1"}
INPUT_LEN, OUTPUT_LEN = 128, 32


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 - our own server
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def hand_loop(model: Path, rates: list[str], prompts: int, cache: str) -> dict[str, Any]:
    """One server, then one `vllm bench serve` process per rate, as a shell script runs them."""
    port = _free_port()
    env = {**os.environ, **ENV, "VLLM_CACHE_ROOT": cache}
    with tempfile.TemporaryDirectory(prefix="hand-loop-") as out:
        started = time.monotonic()
        server = subprocess.Popen(
            [VLLM, "serve", str(model), "--host", "127.0.0.1", "--port", str(port),
             *SERVER_FLAGS],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True,
        )  # fmt: skip
        try:
            while not _healthy(f"http://127.0.0.1:{port}/health"):
                if server.poll() is not None:
                    raise SystemExit(f"the hand loop's server exited ({server.returncode})")
                time.sleep(0.1)  # a tight poll: the loop gets the best ready time it can
            ready = time.monotonic() - started
            durations = []
            for rate in rates:
                name = f"qps{rate}.json"
                subprocess.run(
                    [VLLM, "bench", "serve", "--backend", "openai",
                     "--base-url", f"http://127.0.0.1:{port}", "--endpoint", "/v1/completions",
                     "--model", str(model), "--tokenizer", str(model),
                     "--dataset-name", "random", "--random-input-len", str(INPUT_LEN),
                     "--random-output-len", str(OUTPUT_LEN), "--ignore-eos",
                     "--num-prompts", str(prompts), "--request-rate", rate, "--seed", "0",
                     "--disable-tqdm", "--save-result", "--result-dir", out,
                     "--result-filename", name],
                    env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                )  # fmt: skip
                durations.append(json.loads((Path(out) / name).read_text())["duration"])
        finally:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait()
        wall = time.monotonic() - started
    return _figures(wall, ready, durations)


def bench_run(
    model: Path, rates: list[str], prompts: int, cache: str, extra: list[str]
) -> dict[str, Any]:
    """The same sweep through bench-run (local executor), timed from its start to its exit."""
    with tempfile.TemporaryDirectory(prefix="sweep-overhead-") as out:
        argv = [
            BENCH_RUN, "--executor", "local", "--vendor", "cpu", "--model", str(model),
            *SERVER_FLAGS[:4], "--env", f"VLLM_CPU_KVCACHE_SPACE={ENV['VLLM_CPU_KVCACHE_SPACE']}",
            "--env", f"VLLM_CACHE_ROOT={cache}",
            "--input-len", str(INPUT_LEN), "--output-len", str(OUTPUT_LEN),
            "--qps", ",".join(rates), "--num-prompts", str(prompts), "--out", out, *extra,
        ]  # fmt: skip
        started = time.monotonic()
        proc = subprocess.run(argv, capture_output=True, text=True, check=False)
        wall = time.monotonic() - started
        if proc.returncode != 0:
            raise SystemExit(f"bench-run failed ({proc.returncode}): {proc.stderr.strip()[-2000:]}")
        (run_dir,) = [p for p in Path(out).iterdir() if p.is_dir()]
        status = json.loads((run_dir / "status.json").read_text())
        durations = [
            float(json.loads((run_dir / p["result"]).read_text())["duration"])
            for p in status["points"]
        ]
        figures = _figures(wall, float(status["server"]["ready_s"]), durations)
        figures["point_s"] = [round(float(p["seconds"]), 2) for p in status["points"]]
        figures["client"] = (status.get("client") or {}).get("mode", "process")
    return figures


def _figures(wall: float, ready: float, durations: list[float]) -> dict[str, Any]:
    return {
        "wall_s": round(wall, 2),
        "server_ready_s": round(ready, 2),
        "benchmarks_s": round(sum(durations), 2),
        "ratio": round(wall / (ready + sum(durations)), 3),
    }


def _line(name: str, f: dict[str, Any]) -> str:
    return (
        f"{name:<22} wall {f['wall_s']:7.2f} s  ready {f['server_ready_s']:6.2f} s  "
        f"benchmarks {f['benchmarks_s']:6.2f} s  ratio {f['ratio']:.3f}"
    )


def side_by_side(model: Path, rates: list[str], prompts: int, extra: list[str]) -> dict[str, Any]:
    """The loop and bench-run, each on a warm vLLM cache (the state a sweep usually meets)."""
    with tempfile.TemporaryDirectory(prefix="vllm-cache-") as cache:
        bench_run(model, rates[:1], 2, cache, extra)  # fills the cache for both
        loop = hand_loop(model, rates, prompts, cache)
        print(_line("hand loop", loop), flush=True)
        ours = bench_run(model, rates, prompts, cache, extra)
        print(_line(f"bench-run ({ours['client']})", ours), flush=True)
    ours["wall_vs_loop"] = round(ours["wall_s"] / loop["wall_s"], 3)
    print(f"bench-run wall / loop wall: {ours['wall_vs_loop']}", flush=True)
    return {"hand_loop": loop, "bench_run": ours}


def cold_and_warm(model: Path, rates: list[str], prompts: int, extra: list[str]) -> dict[str, Any]:
    """The ready time of one configuration with an empty vLLM cache, then with it kept."""
    with tempfile.TemporaryDirectory(prefix="vllm-cache-") as cache:
        cold = bench_run(model, rates[:1], prompts, cache, extra)
        warm = bench_run(model, rates[:1], prompts, cache, extra)
    print(f"server ready: cold {cold['server_ready_s']} s, warm {warm['server_ready_s']} s")
    return {"cold_ready_s": cold["server_ready_s"], "warm_ready_s": warm["server_ready_s"]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True, help="the tiny model directory")
    parser.add_argument("--qps", default="2,4,8", help="the request rates (default 2,4,8)")
    parser.add_argument("--num-prompts", type=int, default=20, help="prompts per point")
    parser.add_argument("--repeat", type=int, default=1, help="side-by-side rounds to run")
    parser.add_argument("--no-cold-warm", action="store_true", help="skip the cold/warm starts")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("extra", nargs="*", help="more bench-run flags (after --)")
    args = parser.parse_args()
    model, rates = args.model.resolve(), args.qps.split(",")
    rounds = [side_by_side(model, rates, args.num_prompts, args.extra) for _ in range(args.repeat)]
    summary: dict[str, Any] = {
        "rounds": rounds,
        "median_bench_run_ratio": statistics.median(r["bench_run"]["ratio"] for r in rounds),
        "median_loop_ratio": statistics.median(r["hand_loop"]["ratio"] for r in rounds),
        "median_wall_vs_loop": statistics.median(r["bench_run"]["wall_vs_loop"] for r in rounds),
    }
    if not args.no_cold_warm:
        summary["starts"] = cold_and_warm(model, rates, args.num_prompts, args.extra)
    print(json.dumps({k: v for k, v in summary.items() if k != "rounds"}))
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
