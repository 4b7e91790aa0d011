"""--replicas and --spread: N servers on disjoint GPU sets, one load spread over them (pure).

The layout is decided and checked here, before anything starts (PlanError, exit 2); the agent
(runner/agent/fleet.py) starts the servers, pins their CPUs and spreads the load.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from runner.errors import PlanError

SPREADS = ("router", "dp", "clients")


@dataclass(frozen=True)
class Replicas:
    """How many servers, how the load reaches them, and each one's GPUs (host ids)."""

    count: int
    spread: str
    sets: tuple[tuple[int, ...], ...]

    def to_dict(self) -> dict[str, Any]:
        return {"count": self.count, "spread": self.spread, "sets": [list(s) for s in self.sets]}


def parse_count(text: str | int | None) -> int | None:
    """--replicas: a positive integer, or None for `auto`."""
    value = str(1 if text is None else text).strip().lower()
    if value == "auto":
        return None
    if not value.isdigit() or int(value) < 1:
        raise PlanError(f"--replicas {text!r}: give a number of servers (1, 2, ...) or auto")
    return int(value)


def gpu_sets(gpus: Sequence[int], tp: int, count: int | None) -> tuple[tuple[int, ...], ...]:
    """`count` disjoint sets of `tp` GPUs (auto: as many as fit), in the order given."""
    if not gpus:
        raise PlanError("--replicas needs GPUs, and none were found: check the driver or --gpus")
    if len(gpus) % tp:
        raise PlanError(
            f"--tp {tp} does not divide the {len(gpus)} GPUs ({_ids(gpus)}): choose a --tp that "
            "divides them, or name the GPUs to use with --gpus"
        )
    fit = len(gpus) // tp
    if count is None:
        count = fit
    if count > fit:
        raise PlanError(
            f"--replicas {count} x --tp {tp} needs {count * tp} GPUs but {len(gpus)} are there "
            f"({_ids(gpus)}): at most --replicas {fit} (or --replicas auto)"
        )
    return tuple(tuple(gpus[k * tp : (k + 1) * tp]) for k in range(count))


def _ids(gpus: Sequence[int]) -> str:
    return ",".join(str(g) for g in gpus)


def _spread(count: int, spread: str | None) -> str:
    if spread is not None and spread not in SPREADS:
        raise PlanError(f"--spread {spread!r}: choose one of {', '.join(SPREADS)}")
    if count == 1:
        if spread is not None:
            raise PlanError(f"--spread {spread} spreads load over replicas: give --replicas 2+")
        return "router"
    return spread or "router"


def plan_replicas(
    *,
    replicas: str | int | None,
    spread: str | None,
    tp: int,
    vendor: str,
    uses_gpus: bool,
    scenarios: Sequence[str],
    gpus: Sequence[int],
    discover: Callable[[], Sequence[int]],
    cpus: Callable[[], Sequence[int]],
) -> Replicas | None:
    """The replicas asked for, checked; None for one server (today's run).

    gpus: --gpus's ids (empty: every GPU `discover` finds). cpus: the CPUs the agent may use
    (the cpu vendor gives each replica an even share of them, one at least).
    """
    count = parse_count(replicas)
    if count == 1:
        _spread(1, spread)
        return None
    offline = [name for name in scenarios if name != "serve"]
    if offline:
        raise PlanError(
            f"--replicas spreads a serving load over servers; --scenario {','.join(offline)} "
            "runs one engine in-process: run it without --replicas"
        )
    if not uses_gpus:
        nodes = count if count is not None else 1  # auto on the CPU: one server
        have = len(cpus())
        if nodes > have:
            raise PlanError(
                f"--replicas {nodes} on the {vendor} vendor needs a core each but {have} are "
                "allowed here: fewer replicas"
            )
        sets: tuple[tuple[int, ...], ...] = tuple(() for _ in range(nodes))
    else:
        sets = gpu_sets(list(gpus) or list(discover()), tp, count)
    if len(sets) == 1:
        _spread(1, spread)
        return None
    return Replicas(len(sets), _spread(len(sets), spread), sets)
