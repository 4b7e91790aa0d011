"""Run ids as tables, charts and reports name them: short, and still unique."""

from __future__ import annotations

import re
from collections.abc import Sequence

# make_run_id writes <YYYYmmdd-HHMMSS>-<model>-<vendor>-<6 hex>; vendor and hash tell runs apart
_RUN_ID = re.compile(r"^\d{8}-\d{6}-.+-(?P<vendor>[^-]+)-(?P<digest>[0-9a-f]{6})$")


def short_run_ids(run_ids: Sequence[str]) -> dict[str, str]:
    """A short, still unique, name for each run id."""
    unique = list(dict.fromkeys(run_ids))
    short: dict[str, str] = {}
    for run_id in unique:
        match = _RUN_ID.match(run_id)
        short[run_id] = f"{match['vendor']}-{match['digest']}" if match else run_id
    if len(set(short.values())) != len(unique):
        return {run_id: run_id for run_id in unique}
    return short
