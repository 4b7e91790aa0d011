"""The two sides of a comparison, each from a path or a filter over a results root."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from results.analysis.compare import natural_key
from results.analysis.comparison import Side
from results.analysis.query import Filter, field_text, load_records
from results.errors import ResultsError
from results.model.schema import Record


def _present(records: Iterable[Record], keys: Iterable[str]) -> str:
    parts = []
    for key in dict.fromkeys(keys):
        values = sorted({field_text(r, key) or "-" for r in records}, key=natural_key)
        parts.append(f"{key} values present: {', '.join(values)}")
    return "; ".join(parts)


def looks_like_filter(spec: str) -> bool:
    """'precision=fp8' or 'model=x,precision=fp8|bfloat16'; a path is tried first."""
    return "=" in spec.split(",", 1)[0]


def load_sides(
    baseline: str,
    candidate: str,
    *,
    root: Path,
    where: Sequence[str] = (),
    strict: bool = False,
    warn: Callable[[str], None] | None = None,
) -> tuple[Side, Side]:
    """Each side from an existing path (a run directory or a folder of them) or a filter over
    the run directories under `root`; `where` narrows both sides."""
    common = Filter.parse(where)
    from_root: list[Record] | None = None
    sides: list[Side] = []
    for name, spec in (("baseline", baseline), ("candidate", candidate)):
        path = Path(spec)
        if path.exists():
            records = load_records([path], strict=strict, warn=warn)
            source, keys = str(path), [k for k, _ in common.terms]
        elif looks_like_filter(spec):
            chosen = Filter.parse([spec])
            if from_root is None:
                if not root.is_dir():
                    raise ResultsError(
                        f"{name} {spec} is a filter over --root {root}, which is not a "
                        "directory: give --root DIR, or run directories as the sides"
                    )
                from_root = load_records([root], strict=strict, warn=warn)
            records = chosen.select(from_root)
            source = f"{chosen} under {root}"
            keys = [k for k, _ in (*chosen.terms, *common.terms)]
            if not records:
                raise ResultsError(
                    f"{name} filter {chosen} matched no record under {root}; "
                    f"{_present(from_root, (k for k, _ in chosen.terms))}"
                )
        else:
            raise ResultsError(
                f"{name} {spec!r} is neither an existing path nor a filter: give a run "
                "directory, a folder of them, or key=value (e.g. precision=fp8)"
            )
        selected = common.select(records)
        if not selected:
            raise ResultsError(
                f"--where {common} leaves the {name} ({source}) no record; "
                f"{_present(records, keys)}"
            )
        if common:
            source += f", where {common}"
        sides.append(Side(name, source, tuple(selected)))
    return sides[0], sides[1]
