"""Each run's provenance.json, read once per run for the report."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from results.errors import ResultsError
from results.model.rundir import read_json_object
from results.model.schema import Record
from runner.rundir import PROVENANCE_FILE


def load_provenance(
    records: Iterable[Record], warn: Callable[[str], None] | None = None
) -> dict[str, dict[str, Any]]:
    """Each run's provenance.json, by run id, read once per run from the record's run_dir.

    A run whose file is missing or unreadable gets the summary its records carry, with a warning.
    """
    found: dict[str, dict[str, Any]] = {}
    for rec in records:
        if rec.run_id in found:
            continue
        prov: dict[str, Any] | None = None
        if rec.run_dir:
            file = Path(rec.run_dir) / PROVENANCE_FILE
            try:
                prov = read_json_object(file) if file.is_file() else None
            except ResultsError as exc:
                if warn is not None:
                    warn(f"{exc}; the report shows the run's summary provenance instead")
        found[rec.run_id] = prov if prov is not None else {"summary": dict(rec.provenance)}
    return found
