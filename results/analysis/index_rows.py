"""A record as a row of the index: its filter columns, lower-cased, and the record as JSON."""

from __future__ import annotations

import json
import math
from collections.abc import Iterable

import msgspec

from results.model.schema import Record

_FIELDS = tuple(Record.__dataclass_fields__)
_ENCODER = msgspec.json.Encoder()

# one row of the records table, in column order
Row = tuple[str, int, str, str, str, str, str, str, str, str, str]


def record_row(name: str, seq: int, record: Record) -> Row:
    """The row of the records table that holds `record`, point `seq` of run directory `name`."""
    return (
        name,
        seq,
        record.run_id.lower(),
        record.point_id.lower(),
        record.scenario.lower(),
        record.vendor.lower(),
        record.model.lower(),
        record.precision.lower(),
        (record.gpu_model or "").lower(),
        record.verdict.lower(),
        record_json(record),
    )


def record_json(record: Record) -> str:
    """json.dumps(record.to_dict()) without asdict's deep copy, by msgspec (faster still)."""
    data = {name: getattr(record, name) for name in _FIELDS}
    data["layout"], data["gpus_used"] = record.layout, record.gpus_used  # as to_dict adds them
    if record.qps is not None and math.isinf(record.qps):
        data["qps"] = "inf"
    # msgspec writes NaN and infinity as null: json writes them as json.loads reads them back.
    # A sum that overflows only takes the slower path.
    if (
        not _finite(data["qps"])
        or not _finite(record.achieved_rate)
        or not math.isfinite(sum(record.metrics.values()))
        or not _finite(record.extra)
        or not _finite(record.provenance)
    ):
        return json.dumps(data, separators=(",", ":"))
    # tuples become JSON lists; the dicts hold only what JSON gave the parsers
    return _ENCODER.encode(data).decode("utf-8")


def _finite(value: object) -> bool:
    """False if a float in `value` (however nested) is NaN or infinite."""
    items: Iterable[object]
    if isinstance(value, dict):
        items = value.values()
    elif isinstance(value, list | tuple):
        items = value
    else:
        return not isinstance(value, float) or math.isfinite(value)
    # a loop, not all() over a generator: this runs for each of 10,000 records
    for item in items:
        if isinstance(item, float):
            if not math.isfinite(item):
                return False
        elif isinstance(item, dict | list | tuple) and not _finite(item):
            return False
    return True
