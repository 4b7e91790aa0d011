"""The latency benchmark's judge: a positive average latency was measured."""

from __future__ import annotations

from typing import Any


def judge(data: dict[str, Any], expected: int) -> list[str]:
    latency = data.get("avg_latency")
    if not isinstance(latency, (int, float)) or latency <= 0:
        return ["the result has no positive avg_latency"]
    return []
