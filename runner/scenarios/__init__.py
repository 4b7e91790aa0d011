"""The scenario registry: one object per kind of measurement (parameters, points, argv, judge)."""

# A scenario is one module of this package that registers a `Scenario`; the registry finds the
# modules itself, so adding one touches no list. This file is also copied for the agent, which
# reaches the judges through it: at run time it imports only the standard library and
# runner.errors (plan and jobs are named for the type checker alone).

from __future__ import annotations

import functools
import importlib
import pkgutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from runner.errors import PlanError
from runner.scenarios import judges

if TYPE_CHECKING:
    from runner.jobs import PathMap, Target
    from runner.plan import Point, Run
    from runner.rundir import SonnetJob

P = TypeVar("P")


def _no_prompt_file(run: Run, point: Point, paths: PathMap) -> SonnetJob | None:
    return None


def _no_host_check(run: Run, environ: Mapping[str, str]) -> None:
    return None


@dataclass(frozen=True)
class Scenario(Generic[P]):
    """One kind of measurement; its module registers it with `register(Scenario(...))`."""

    name: str
    help: str  # one line
    order: int  # run order, lowest first: the server's scenarios come first, while it is up
    needs_server: bool
    params_type: type[P]  # a frozen dataclass validated in __post_init__; its defaults fill a Run
    params_from: Callable[[Mapping[str, Any]], P]  # from bench-run's flag values, by flag name
    points: Callable[[Run], list[Point]]  # in the order they run
    argv: Callable[[Run, Point, Target], list[str]]  # the point's command, run in the run dir
    judge: judges.Judge  # from runner/scenarios/judges/<name>.py, which the agent imports
    sonnet: Callable[[Run, Point, PathMap], SonnetJob | None] = _no_prompt_file
    # what only the host can tell (its environment, read once at the edge): PlanError if wrong
    check_host: Callable[[Run, Mapping[str, str]], None] = _no_host_check

    def params_of(self, run: Run) -> P:
        """This scenario's parameters in the Run."""
        return self.checked(run.params[self.name])

    def checked(self, params: object) -> P:
        """The parameters, if they are this scenario's kind; PlanError if not."""
        if not isinstance(params, self.params_type):
            raise PlanError(
                f"scenario {self.name}: parameters must be {self.params_type.__name__}, "
                f"not {type(params).__name__}"
            )
        return params


_REGISTRY: dict[str, Scenario[Any]] = {}


def register(scenario: Scenario[P]) -> Scenario[P]:
    """Add a scenario (a module of this package does this when imported); names are unique."""
    if scenario.name in _REGISTRY:
        raise ValueError(f"scenario {scenario.name!r} is registered twice")
    _REGISTRY[scenario.name] = scenario
    judges.add(scenario.name, scenario.judge)
    return scenario


def unregister(name: str) -> None:
    """Remove a scenario registered from outside this package (a test's, a plugin's)."""
    _REGISTRY.pop(name, None)
    judges.remove(name)


@functools.cache
def _load_package() -> None:
    # Imported on first use, not with this file: the agent imports it without plan or jobs.
    for module in pkgutil.iter_modules(__path__):
        if not module.ispkg and not module.name.startswith("_"):
            importlib.import_module(f"{__name__}.{module.name}")


def names() -> tuple[str, ...]:
    """Every scenario's name in run order: serve first while the server is up, then offline."""
    _load_package()
    return tuple(sorted(_REGISTRY, key=lambda name: _REGISTRY[name].order))


def get(name: str) -> Scenario[Any]:
    """The scenario of that name; PlanError naming the registered ones when there is none."""
    _load_package()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise PlanError(f"unknown scenario {name!r}: choose from {', '.join(names())}") from None


def choices() -> str:
    """The names for a message: 'serve, latency or throughput'."""
    *rest, last = names()
    return f"{', '.join(rest)} or {last}" if rest else last
