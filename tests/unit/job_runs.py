"""A planned Run to build jobs and argv from, shared by the jobs and the scenarios' tests."""

from __future__ import annotations

import json
import math
from pathlib import Path

from runner.plan import EngineConfig, ModelRef, Run
from runner.scenarios.latency import LatencyParams
from runner.scenarios.serve import ServeParams
from runner.scenarios.throughput import ThroughputParams

VLLM = "/opt/venv/bin/vllm"
HOST = "127.0.0.1"
PORT = 8123


def local_model(root: Path) -> ModelRef:
    directory = root / "tiny-llama"
    directory.mkdir()
    (directory / "config.json").write_text(json.dumps({"max_position_embeddings": 2048}))
    return ModelRef.resolve(str(directory))


def with_params(fields: dict[str, object]) -> dict[str, object]:
    """Run keyword arguments, `serve=`, `latency=`, `throughput=` gathered into `params`."""
    names = [name for name in ("serve", "latency", "throughput") if name in fields]
    params = {name: fields.pop(name) for name in names}
    given = fields.pop("params", {})
    assert isinstance(given, dict)
    return {**fields, "params": {**given, **params}}


def make_run(model: ModelRef, **overrides: object) -> Run:
    fields: dict[str, object] = {
        "run_id": "r1",
        "vendor": "cpu",
        "model": model,
        "engine": EngineConfig(max_model_len=1024),
        "scenarios": ("serve", "latency", "throughput"),
        "serve": ServeParams(qps=(1.0, math.inf), num_prompts=20),
        "latency": LatencyParams(batch_size=4, iters=3, warmup_iters=1),
        "throughput": ThroughputParams(num_prompts=50),
        "input_len": 64,
        "output_len": 32,
    }
    fields.update(overrides)
    return Run(**with_params(fields))  # type: ignore[arg-type]


def engine_tail() -> list[str]:
    return ["--tensor-parallel-size", "1", "--max-model-len", "1024", "--no-enable-prefix-caching"]
