"""The scenario registry: run order, lookup, judges shipped with the agent, and a new scenario.

A scenario defined here, in a test, is planned, turned into a job, run by the real agent and
judged, with no edit anywhere in runner/: what adding a scenario costs is one module.
"""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from runner import scenarios
from runner.agent.core import run_job
from runner.agent.judge import judge_result
from runner.agent.util import Events
from runner.errors import PlanError
from runner.images.resources import agent_sources
from runner.jobs import Deadlines, Target, build_job
from runner.plan import EngineConfig, ModelRef, Point, Run
from runner.rundir import FAILED, OK, RUN_FILE, STATUS_FILE
from runner.scenarios import Scenario, judges

ROOT = Path(__file__).resolve().parents[2]


# -- the registry ---------------------------------------------------------------------------------


def test_names_in_run_order_server_first() -> None:
    assert scenarios.names() == ("serve", "accuracy", "latency", "throughput")
    needs = [scenarios.get(n).needs_server for n in scenarios.names()]
    assert needs == [True, True, False, False]
    assert scenarios.choices() == "serve, accuracy, latency or throughput"


def test_get_unknown_names_the_registered_ones() -> None:
    with pytest.raises(PlanError, match="'bogus': choose from serve, accuracy, latency"):
        scenarios.get("bogus")


def test_a_name_registers_once() -> None:
    with pytest.raises(ValueError, match="'serve' is registered twice"):
        scenarios.register(scenarios.get("serve"))


def test_every_scenario_has_a_help_line_and_default_params() -> None:
    for name in scenarios.names():
        scenario = scenarios.get(name)
        assert scenario.help and "\n" not in scenario.help
        assert scenario.checked(scenario.params_type()) == scenario.params_type()


# -- judges travel with the agent -----------------------------------------------------------------

# In a copy of the agent's files alone (-I -S: no site-packages, no checkout), every registered
# scenario's judge is found by its name.
_FIND_JUDGES = """
import json, sys
sys.path.insert(0, sys.argv[1])
from runner.scenarios.judges import judge_for
print(json.dumps({name: judge_for(name) is not None for name in sys.argv[2:]}))
"""


def test_every_scenarios_judge_is_in_the_agents_files(tmp_path: Path) -> None:
    sources = agent_sources()
    for name in scenarios.names():
        module = sys.modules[scenarios.get(name).judge.__module__]
        assert module.__name__ == judges.module_name(name)
        assert module.__file__ is not None
        assert Path(module.__file__).relative_to(ROOT).as_posix() in sources
    bench = tmp_path / "bench"
    for relative, source in sources.items():
        (bench / relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, bench / relative)
    proc = subprocess.run(
        [sys.executable, "-I", "-S", "-c", _FIND_JUDGES, str(bench), *scenarios.names(), "nope"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    found = json.loads(proc.stdout)
    assert found == {**dict.fromkeys(scenarios.names(), True), "nope": False}


def test_a_scenario_without_a_judge_fails_its_point(tmp_path: Path) -> None:
    verdict = judge_result("nope", tmp_path / "raw.json", 1)
    assert verdict.verdict == FAILED
    assert verdict.reasons == ["this agent has no judge for scenario 'nope'"]


# -- a new scenario, defined in this test module alone ---------------------------------------------

# vLLM's stand-in: writes the result file the point names, with the count it was asked for.
_WRITE_RESULT = "import json, sys; json.dump({'count': int(sys.argv[2])}, open(sys.argv[1], 'w'))"


@dataclass(frozen=True)
class EchoParams:
    count: int = 3
    written: int | None = None  # what the command writes, when it should disagree

    def __post_init__(self) -> None:
        if self.count < 1:
            raise PlanError(f"--echo-count {self.count}: must be at least 1")


def _echo_points(run: Run) -> list[Point]:
    params = ECHO.params_of(run)
    return [Point("echo", "echo", num_prompts=params.count)]


def _echo_argv(run: Run, point: Point, target: Target) -> list[str]:
    params = ECHO.params_of(run)
    written = params.count if params.written is None else params.written
    return [sys.executable, "-c", _WRITE_RESULT, f"raw/{point.id}.json", str(written)]


def _echo_judge(data: dict[str, Any], expected: int) -> list[str]:
    count = data.get("count")
    return [] if count == expected else [f"echoed {count} of {expected}"]


def _echo_params(values: Mapping[str, Any]) -> EchoParams:
    return EchoParams(count=values["echo_count"])


ECHO = Scenario(
    name="echo",
    help="a test's scenario: a tiny command that writes its JSON result",
    order=40,
    needs_server=False,
    params_type=EchoParams,
    params_from=_echo_params,
    points=_echo_points,
    argv=_echo_argv,
    judge=_echo_judge,
)


@pytest.fixture
def echo() -> Iterator[Scenario[EchoParams]]:
    scenarios.register(ECHO)
    try:
        yield ECHO
    finally:
        scenarios.unregister(ECHO.name)
    assert "echo" not in scenarios.names()


def echo_run(params: EchoParams, run_id: str = "r-echo") -> Run:
    return Run(
        run_id=run_id,
        vendor="cpu",
        model=ModelRef(source="org/model"),
        engine=EngineConfig(),
        scenarios=("echo",),
        params={"echo": params},
        input_len=8,
        output_len=8,
    )


def run_through_agent(run: Run, out_root: Path) -> tuple[int, dict[str, Any]]:
    job = build_job(
        run, vllm="vllm", host="127.0.0.1", port=1, deadlines=Deadlines(point_s=60.0),
        executor={"name": "test"}, commit=None,
    )  # fmt: skip
    code = run_job(json.loads(json.dumps(job.to_dict())), out_root, Events(io.StringIO()))
    return code, json.loads((out_root / run.run_id / STATUS_FILE).read_text())


def test_a_new_scenario_is_planned_from_its_flags(echo: Scenario[EchoParams]) -> None:
    assert scenarios.names()[-1] == "echo"
    params = scenarios.get("echo").params_from({"echo_count": 5})
    assert params == EchoParams(count=5)
    run = echo_run(params)
    assert run.points() == [Point("echo", "echo", num_prompts=5)]
    data = run.to_dict()
    assert data["echo"] == {"count": 5, "written": None}
    assert data["serve"]["qps"] == [1.0, 3.0, 5.0, 7.0, 9.0]  # the others keep their defaults
    with pytest.raises(PlanError, match="--echo-count 0"):
        scenarios.get("echo").params_from({"echo_count": 0})


def test_a_new_scenario_runs_and_is_judged_by_the_real_agent(
    echo: Scenario[EchoParams], tmp_path: Path
) -> None:
    code, status = run_through_agent(echo_run(EchoParams(count=4)), tmp_path)
    assert code == 0
    assert status["status"] == OK
    assert [(p["id"], p["verdict"], p["reasons"]) for p in status["points"]] == [("echo", OK, [])]
    run_dir = tmp_path / "r-echo"
    assert json.loads((run_dir / "raw" / "echo.json").read_text()) == {"count": 4}
    assert json.loads((run_dir / RUN_FILE).read_text())["echo"] == {"count": 4, "written": None}


def test_a_new_scenarios_judge_fails_a_wrong_result(
    echo: Scenario[EchoParams], tmp_path: Path
) -> None:
    code, status = run_through_agent(echo_run(EchoParams(count=4, written=2), "r-bad"), tmp_path)
    assert code == 1
    assert status["status"] == FAILED
    assert [(p["verdict"], p["reasons"]) for p in status["points"]] == [(FAILED, ["echoed 2 of 4"])]
