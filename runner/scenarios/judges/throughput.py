"""The throughput benchmark's judge: a positive rate, over every prompt asked for."""

from __future__ import annotations

from typing import Any


def judge(data: dict[str, Any], expected: int) -> list[str]:
    reasons = []
    rps = data.get("requests_per_second")
    if not isinstance(rps, (int, float)) or rps <= 0:
        reasons.append("the result has no positive requests_per_second")
    count = data.get("num_requests")
    if isinstance(count, int) and count != expected:
        reasons.append(f"ran {count} of {expected} prompts")
    return reasons
