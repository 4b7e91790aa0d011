"""The accuracy point's judge: lm-eval scored every task, on as many documents as asked."""

from __future__ import annotations

from typing import Any


def _scored(metrics: Any) -> bool:
    """A task's entry holds at least one number that is not a standard error."""
    if not isinstance(metrics, dict):
        return False
    return any(
        isinstance(value, (int, float)) and not isinstance(value, bool) and "_stderr" not in key
        for key, value in metrics.items()
    )


def judge(data: dict[str, Any], expected: int) -> list[str]:
    """`expected` is --limit (0: every document); lm-eval's n-samples says what it scored."""
    results = data.get("results")
    if not isinstance(results, dict) or not results:
        return ["the result has no 'results' from lm-eval"]
    reasons = [f"task {name}: no score" for name, m in results.items() if not _scored(m)]
    samples = data.get("n-samples")
    for name, counts in (samples if isinstance(samples, dict) else {}).items():
        effective = counts.get("effective") if isinstance(counts, dict) else None
        if not isinstance(effective, int) or effective < 1:
            reasons.append(f"task {name}: no document was scored")
        elif expected and effective > expected:
            reasons.append(f"task {name}: scored {effective} documents, --limit was {expected}")
    return reasons
