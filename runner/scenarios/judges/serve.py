"""The serving sweep's judge: every prompt a point asked for completed and none failed."""

from __future__ import annotations

from typing import Any


def _first_error(data: dict[str, Any]) -> str | None:
    errors = data.get("errors")
    if isinstance(errors, list):
        for err in errors:
            if isinstance(err, str) and err.strip():
                return err.strip().splitlines()[-1][:300]
    return None


def judge(data: dict[str, Any], expected: int) -> list[str]:
    """vLLM exits 0 even when every request failed: the counts in its JSON decide."""
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
    return reasons
