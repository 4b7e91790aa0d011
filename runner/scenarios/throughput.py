"""Offline throughput: `vllm bench throughput`, every prompt at once, without the server."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from runner.errors import PlanError
from runner.jobs import PathMap, Target
from runner.plan import Point, Run
from runner.scenarios import Scenario, register
from runner.scenarios.judges.throughput import judge


@dataclass(frozen=True)
class ThroughputParams:
    """`vllm bench throughput`: offline, all prompts at once."""

    num_prompts: int = 1000

    def __post_init__(self) -> None:
        if self.num_prompts < 1:
            raise PlanError(f"--num-prompts {self.num_prompts}: must be at least 1")


def params_from(values: Mapping[str, Any]) -> ThroughputParams:
    return ThroughputParams(num_prompts=values["num_prompts"] or 1000)


def points(run: Run) -> list[Point]:
    return [Point("throughput", "throughput", num_prompts=run.throughput.num_prompts)]


def throughput_argv(run: Run, vllm: str, paths: PathMap | None = None) -> list[str]:
    return [
        vllm, "bench", "throughput",
        "--backend", "vllm",
        "--model", (paths or PathMap.host(run)).model,
        "--dataset-name", "random",
        "--random-input-len", str(run.input_len),
        "--random-output-len", str(run.output_len),
        "--num-prompts", str(run.throughput.num_prompts),
        "--seed", "0",
        "--output-json", "raw/throughput.json",
        *run.engine.args(random_data=True),
    ]  # fmt: skip


def _argv(run: Run, point: Point, target: Target) -> list[str]:
    return throughput_argv(run, target.vllm, target.paths)


THROUGHPUT = register(
    Scenario(
        name="throughput",
        help="offline throughput: `vllm bench throughput`, --num-prompts at once (default 1000)",
        order=30,
        needs_server=False,
        params_type=ThroughputParams,
        params_from=params_from,
        points=points,
        argv=_argv,
        judge=judge,
    )
)
