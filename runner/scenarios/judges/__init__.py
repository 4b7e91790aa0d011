"""Each scenario's judging of vLLM's output, standard library only: the agent imports these."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

# A judge reads a point's result (vLLM's JSON object) and the prompts the point asked for, and
# gives the reasons the point failed: none means the point is good.
Judge = Callable[[dict[str, Any], int], list[str]]

# Judges of scenarios registered in this process (runner.scenarios.register adds them), so that a
# scenario defined outside this package is judged too when the agent runs in the same process.
_ADDED: dict[str, Judge] = {}


def add(scenario: str, judge: Judge) -> None:
    _ADDED[scenario] = judge


def remove(scenario: str) -> None:
    _ADDED.pop(scenario, None)


def module_name(scenario: str) -> str:
    """Where a scenario's judge lives: runner/scenarios/judges/<name, - as _>.py."""
    return f"{__name__}.{scenario.replace('-', '_')}"


def judge_for(scenario: str) -> Judge | None:
    """The scenario's judge, found by name: the agent copy holds no list to keep in step."""
    if scenario in _ADDED:
        return _ADDED[scenario]
    name = module_name(scenario)
    if not name.rpartition(".")[2].isidentifier():
        return None
    try:
        module = importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name != name:
            raise  # the judge exists but imports something this interpreter lacks
        return None
    judge: Judge = module.judge
    return judge
