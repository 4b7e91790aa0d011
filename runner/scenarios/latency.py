"""Offline latency: `vllm bench latency`, one batch repeated, without the server."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from runner.errors import PlanError
from runner.jobs import PathMap, Target
from runner.plan import Point, Run
from runner.scenarios import Scenario, register
from runner.scenarios.judges.latency import judge


@dataclass(frozen=True)
class LatencyParams:
    """`vllm bench latency`: one batch, offline, repeated."""

    batch_size: int = 8
    iters: int = 10
    warmup_iters: int = 3

    def __post_init__(self) -> None:
        if self.batch_size < 1 or self.iters < 1 or self.warmup_iters < 0:
            raise PlanError(
                "--batch-size and --iters must be at least 1, --warmup-iters at least 0"
            )


def params_from(values: Mapping[str, Any]) -> LatencyParams:
    return LatencyParams(
        batch_size=values["batch_size"], iters=values["iters"], warmup_iters=values["warmup_iters"]
    )


def points(run: Run) -> list[Point]:
    return [Point("latency", "latency", num_prompts=run.latency.batch_size)]


def latency_argv(run: Run, vllm: str, paths: PathMap | None = None) -> list[str]:
    lat = run.latency
    return [
        vllm, "bench", "latency",
        "--model", (paths or PathMap.host(run)).model,
        "--input-len", str(run.input_len),
        "--output-len", str(run.output_len),
        "--batch-size", str(lat.batch_size),
        "--num-iters-warmup", str(lat.warmup_iters),
        "--num-iters", str(lat.iters),
        "--seed", "0",
        "--output-json", "raw/latency.json",
        *run.engine.args(random_data=True),
    ]  # fmt: skip


def _argv(run: Run, point: Point, target: Target) -> list[str]:
    return latency_argv(run, target.vllm, target.paths)


LATENCY = register(
    Scenario(
        name="latency",
        help="offline latency: `vllm bench latency`, one batch of --batch-size, repeated",
        order=20,
        needs_server=False,
        params_type=LatencyParams,
        params_from=params_from,
        points=points,
        argv=_argv,
        judge=judge,
    )
)
