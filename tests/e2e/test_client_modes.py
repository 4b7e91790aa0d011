"""Both client modes on one real server give the same numbers, within run-to-run noise."""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from runner.agent.client import LoadGenerator, loadgen_python, serve_args
from runner.agent.procs import Server, run_command

RATE, PROMPTS, INPUT_LEN, OUTPUT_LEN = "8", 16, 64, 16


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def served(
    tmp_path_factory: pytest.TempPathFactory, tiny_model: Path, vllm_exe: str
) -> Iterator[tuple[str, dict[str, str], Path]]:
    work = tmp_path_factory.mktemp("modes")
    port = _free_port()
    env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": "1", "HF_HUB_OFFLINE": "1"}
    server = Server(
        [vllm_exe, "serve", str(tiny_model), "--host", "127.0.0.1", "--port", str(port),
         "--dtype", "bfloat16", "--max-model-len", "2048", "--no-enable-prefix-caching"],
        cwd=work, env=env, log=work / "server.log",
        health_url=f"http://127.0.0.1:{port}/health", stop_timeout_s=30,
    )  # fmt: skip
    server.start()
    try:
        server.wait_ready(600)
        yield f"http://127.0.0.1:{port}", env, work
    finally:
        server.stop()


def _argv(vllm: str, url: str, model: Path, name: str) -> list[str]:
    return [
        vllm, "bench", "serve", "--backend", "openai", "--base-url", url,
        "--endpoint", "/v1/completions", "--model", str(model), "--tokenizer", str(model),
        "--dataset-name", "random", "--random-input-len", str(INPUT_LEN),
        "--random-output-len", str(OUTPUT_LEN), "--ignore-eos", "--num-prompts", str(PROMPTS),
        "--request-rate", RATE, "--percentile-metrics", "ttft,tpot,itl,e2el",
        "--metric-percentiles", "50,90,99", "--seed", "0", "--disable-tqdm",
        "--save-result", "--save-detailed", "--result-dir", "raw", "--result-filename", name,
    ]  # fmt: skip


def test_persistent_and_process_clients_agree(
    served: tuple[str, dict[str, str], Path], tiny_model: Path, vllm_exe: str
) -> None:
    url, env, work = served
    python = loadgen_python(vllm_exe)
    assert python is not None
    loadgen = LoadGenerator(python, cwd=work, env=env, log=work / "loadgen.log")
    loadgen.start()
    results: dict[str, list[dict[str, Any]]] = {"process": [], "persistent": []}
    try:
        assert loadgen.wait_ready(300) > 0
        # Alternate the modes, twice each, so that drift on a shared host hits both alike.
        for round_ in range(2):
            for mode in ("process", "persistent"):
                name = f"{mode}-{round_}.json"
                argv = _argv(vllm_exe, url, tiny_model, name)
                log = work / f"{mode}-{round_}.log"
                if mode == "process":
                    outcome = run_command(argv, cwd=work, env=env, log=log, timeout_s=300)
                else:
                    args = serve_args(argv)
                    assert args is not None
                    outcome = loadgen.run(name, args, log, 300)
                assert outcome.returncode == 0 and not outcome.timed_out, log.read_text()[-2000:]
                results[mode].append(json.loads((work / "raw" / name).read_text()))
    finally:
        loadgen.stop()
    for mode, runs in results.items():
        for data in runs:
            assert data["completed"] == PROMPTS and data["failed"] == 0, mode
            assert len(data["ttfts"]) == PROMPTS, mode
    # The same seeded prompts in every run and mode (random prompts re-tokenize to a token or
    # two more or less than --random-input-len, identically each time): the same benchmark ran.
    every = [data for runs in results.values() for data in runs]
    assert len({d["total_input_tokens"] for d in every}) == 1, every
    assert len({d["total_output_tokens"] for d in every}) == 1, every
    assert every[0]["total_output_tokens"] == PROMPTS * OUTPUT_LEN  # --ignore-eos
    assert abs(every[0]["total_input_tokens"] - PROMPTS * INPUT_LEN) <= PROMPTS
    # The request schedule is seeded: both modes send at the same achieved rate.
    rates = {m: [float(d["request_throughput"]) for d in r] for m, r in results.items()}
    mean = {m: sum(v) / len(v) for m, v in rates.items()}
    assert abs(mean["persistent"] - mean["process"]) <= 0.25 * mean["process"], rates
    # Latency within run-to-run noise: the gap between the modes' medians is no larger than
    # the spread within either mode plus a floor for a shared 2-core host.
    tpot = {m: [float(d["median_tpot_ms"]) for d in r] for m, r in results.items()}
    spread = max(max(v) - min(v) for v in tpot.values())
    gap = abs(sum(tpot["persistent"]) / 2 - sum(tpot["process"]) / 2)
    assert gap <= spread + 0.5 * min(min(v) for v in tpot.values()) + 5.0, tpot
