"""Verdicts on benchmark points: vLLM exits 0 even when every request failed, so read its JSON."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..rundir import FAILED, OK
from ..scenarios.judges import judge_for
from .slo import judge_slo


@dataclass
class Verdict:
    verdict: str
    reasons: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.verdict == OK

    def to_dict(self) -> dict[str, Any]:
        return {"verdict": self.verdict, "reasons": list(self.reasons)}


def _load(path: Path) -> tuple[dict[str, Any] | None, str | None]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None, f"{path.name} was not written"
    except (OSError, json.JSONDecodeError) as exc:
        return None, f"{path.name} is not valid JSON ({exc})"
    if not isinstance(data, dict):
        return None, f"{path.name} does not hold a JSON object"
    return data, None


def judge_result(scenario: str, path: Path, expected: int) -> Verdict:
    """What the point's output file says, read by its scenario's judge."""
    judge = judge_for(scenario)
    if judge is None:
        return Verdict(FAILED, [f"this agent has no judge for scenario {scenario!r}"])
    data, problem = _load(path)
    if data is None:
        return Verdict(FAILED, [problem or "no result"])
    reasons = judge(data, expected)
    return Verdict(FAILED, reasons) if reasons else Verdict(OK)


def judge_point(
    scenario: str,
    path: Path,
    expected: int,
    returncode: int | None,
    timed_out: bool,
    log_error: str | None,
) -> Verdict:
    """Combine the exit status with what the output file says."""
    if timed_out:
        return Verdict(FAILED, ["timed out"] + ([log_error] if log_error else []))
    if returncode != 0:
        reason = f"exited with status {returncode}"
        return Verdict(FAILED, [reason] + ([log_error] if log_error else []))
    return judge_result(scenario, path, expected)


def slo_result(path: Path, slo: list[Any]) -> dict[str, Any]:
    """The point against the run's SLO, from vLLM's JSON (a missing file misses every limit)."""
    data, _ = _load(path)
    return judge_slo(data, slo)
