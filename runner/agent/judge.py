"""Verdicts on benchmark points: vLLM exits 0 even when every request failed, so read its JSON."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..rundir import FAILED, OK


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


def _first_error(data: dict[str, Any]) -> str | None:
    errors = data.get("errors")
    if isinstance(errors, list):
        for err in errors:
            if isinstance(err, str) and err.strip():
                return err.strip().splitlines()[-1][:300]
    return None


def judge_serve(path: Path, expected: int) -> Verdict:
    """A serving point is good when every prompt it asked for completed and none failed."""
    data, problem = _load(path)
    if data is None:
        return Verdict(FAILED, [problem or "no result"])
    reasons = []
    completed = data.get("completed")
    failed = data.get("failed", 0)
    if not isinstance(completed, int):
        reasons.append("the result has no 'completed' count")
    elif completed == 0:
        reasons.append(f"no request completed (0 of {expected})")
    elif completed != expected:
        reasons.append(f"completed {completed} of {expected} prompts")
    if isinstance(failed, int) and failed > 0:
        reasons.append(f"{failed} of {expected} requests failed")
    if reasons:
        error = _first_error(data)
        if error:
            reasons.append(f"first error: {error}")
        return Verdict(FAILED, reasons)
    return Verdict(OK)


def judge_latency(path: Path, expected: int) -> Verdict:
    data, problem = _load(path)
    if data is None:
        return Verdict(FAILED, [problem or "no result"])
    latency = data.get("avg_latency")
    if not isinstance(latency, (int, float)) or latency <= 0:
        return Verdict(FAILED, ["the result has no positive avg_latency"])
    return Verdict(OK)


def judge_throughput(path: Path, expected: int) -> Verdict:
    data, problem = _load(path)
    if data is None:
        return Verdict(FAILED, [problem or "no result"])
    reasons = []
    rps = data.get("requests_per_second")
    if not isinstance(rps, (int, float)) or rps <= 0:
        reasons.append("the result has no positive requests_per_second")
    count = data.get("num_requests")
    if isinstance(count, int) and count != expected:
        reasons.append(f"ran {count} of {expected} prompts")
    return Verdict(FAILED, reasons) if reasons else Verdict(OK)


JUDGES = {"serve": judge_serve, "latency": judge_latency, "throughput": judge_throughput}


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
    return JUDGES[scenario](path, expected)
