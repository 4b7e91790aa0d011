"""Select records: `key=value[,value...]` filters over record fields, and loading runs by path."""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from results.analysis import index
from results.analysis.index import Problem
from results.errors import ResultsError
from results.model.records import records_from_run
from results.model.rundir import is_run_dir, load_run
from results.model.schema import Record, format_rate
from results.model.sweeps import apply_sweeps, is_sweep_dir

# what a filter key may name: record fields and the derived names people think in
_GETTERS: dict[str, Callable[[Record], object]] = {
    "run": lambda r: r.run_id,
    "point": lambda r: r.point_id,
    "scenario": lambda r: r.scenario,
    "vendor": lambda r: r.vendor,
    "model": lambda r: r.model,
    "gpu": lambda r: r.gpu_model,
    "gpu_count": lambda r: r.gpu_count,
    "image": lambda r: r.image,
    "vllm": lambda r: r.vllm_version,
    "dtype": lambda r: r.dtype,
    "quantization": lambda r: r.quantization,
    "precision": lambda r: r.precision,
    "kv_cache_dtype": lambda r: r.kv_cache_dtype,
    "tp": lambda r: r.tp,
    "replicas": lambda r: r.replicas,
    "spread": lambda r: r.spread,
    "layout": lambda r: r.layout,
    "gpus_used": lambda r: r.gpus_used,
    "partition": lambda r: r.partition,
    "qps": lambda r: format_rate(r.qps) if r.qps is not None else None,
    "max_concurrency": lambda r: r.max_concurrency,
    "input_len": lambda r: r.input_len,
    "output_len": lambda r: r.output_len,
    "dataset": lambda r: r.dataset,
    "verdict": lambda r: r.verdict,
    "config": lambda r: r.config_label,
    "sweep": lambda r: r.sweep,
}
FILTER_KEYS = tuple(_GETTERS)


def field_text(record: Record, key: str) -> str:
    """What a filter key compares for `record`, e.g. 'fp8' for precision ('' when unset)."""
    return _text(_GETTERS[key](record)).lower()


def _text(value: object) -> str:
    if isinstance(value, float):
        return "inf" if math.isinf(value) else f"{value:g}"
    return "" if value is None else str(value)


@dataclass(frozen=True)
class Filter:
    """All terms must hold; a term holds when the field equals one of its values.

    Values compare as text, case-insensitively; `model` and `run` also match a suffix or a
    prefix (`model=tiny-llama` matches `org/tiny-llama`, `run=20261122` a run id's start).
    """

    terms: tuple[tuple[str, tuple[str, ...]], ...] = ()

    @classmethod
    def parse(cls, expressions: Iterable[str]) -> Filter:
        """From `key=value[,value]` expressions (several may be given, all must hold)."""
        terms: list[tuple[str, tuple[str, ...]]] = []
        for expression in expressions:
            for part in _split_terms(expression):
                key, sep, value = part.partition("=")
                key = key.strip().lower().replace("-", "_")
                if not sep or not key or not value.strip():
                    raise ResultsError(
                        f"filter {part!r} is not key=value: for example model=org/name "
                        "or precision=fp8,bfloat16"
                    )
                if key not in _GETTERS:
                    raise ResultsError(
                        f"unknown filter key {key!r}: use one of {', '.join(FILTER_KEYS)}"
                    )
                values = tuple(v.strip().lower() for v in value.split("|") if v.strip())
                terms.append((key, values))
        return cls(tuple(terms))

    def __bool__(self) -> bool:
        return bool(self.terms)

    def __str__(self) -> str:
        return ",".join(f"{key}={'|'.join(values)}" for key, values in self.terms)

    def matches(self, record: Record) -> bool:
        for key, values in self.terms:
            actual = _text(_GETTERS[key](record)).lower()
            if key == "model":
                ok = any(actual == v or actual.endswith("/" + v) for v in values)
            elif key == "run":
                ok = any(actual.startswith(v) for v in values)
            else:
                ok = actual in values
            if not ok:
                return False
        return True

    def select(self, records: Iterable[Record]) -> list[Record]:
        return [r for r in records if self.matches(r)]


def _split_terms(expression: str) -> list[str]:
    """'model=a,precision=fp8' -> two terms; a comma not followed by key= joins the values."""
    parts: list[str] = []
    for raw in expression.split(","):
        chunk = raw.strip()
        if not chunk:
            continue
        if "=" in chunk or not parts:
            parts.append(chunk)
        else:
            parts[-1] += "|" + chunk
    return parts


def _read_root(
    root: Path,
    where: Filter | None,
    warn: Callable[[str], None] | None,
    use_index: bool,
) -> tuple[int, list[Record], list[Problem]]:
    """The runs under a folder and under the sweep directories in it: (how many run
    directories, their records, what was skipped)."""
    count, records, problems = _read_folder(root, where, warn, use_index)
    kept: list[Problem] = []
    for problem in problems:
        if problem.message == index.NOT_A_RUN and is_sweep_dir(problem.path):
            more, found, skipped = _read_folder(problem.path, where, warn, use_index)
            count, records, kept = count + more, records + found, kept + skipped
        else:
            kept.append(problem)
    return count, records, sorted(kept, key=lambda p: str(p.path))


def _read_folder(
    root: Path,
    where: Filter | None,
    warn: Callable[[str], None] | None,
    use_index: bool,
) -> tuple[int, list[Record], list[Problem]]:
    """The runs in one folder: (how many run directories, their records, what was skipped)."""
    if use_index:
        try:
            summary = index.refresh(root, warn=warn)
            return (
                summary.runs,
                index.query(root, where.terms if where else ()),
                list(summary.problems),
            )
        except index.IndexUnavailable as exc:
            # a read-only root is expected (a copied or mounted results tree); a busy one is not
            if warn is not None and root.exists() and os.access(root, os.W_OK):
                warn(f"{exc}: reading the run directories directly")
    found, others = index.scan_root(root)
    problems = [Problem(root / name, index.NOT_A_RUN) for name in others]
    records: list[Record] = []
    for name in found:
        try:
            records += records_from_run(load_run(root / name))
        except ResultsError as exc:
            problems.append(Problem(root / name, str(exc)))
    return len(found), records, sorted(problems, key=lambda p: str(p.path))


def load_records(
    paths: Sequence[Path | str],
    *,
    strict: bool = False,
    warn: Callable[[str], None] | None = None,
    where: Filter | None = None,
    use_index: bool = True,
) -> list[Record]:
    """Every record under `paths`: run directories, or folders of them (a results root).

    A run directory named in `paths` must load (else ResultsError). Under a folder, a directory
    that is not a run, or a run that cannot be read, is skipped with a warning, or fails the
    whole call with `strict`. A folder's records come from its SQLite index (kept up to date
    here) when the folder is writable, else straight from the run directories. `where` keeps
    only the records it matches. A run given twice (itself and in its folder) counts once. Runs
    of a sweep (sweep.json beside them) carry its name and their matrix values, and a point a
    later run of the same configuration re-ran is left out of the earlier run; a folder's sweep
    directories are read as folders too.
    """
    runs = 0
    groups: list[tuple[Path, list[Record]]] = []
    for raw in paths:
        path = Path(raw)
        if is_run_dir(path):
            runs += 1
            groups.append((path, records_from_run(load_run(path))))
        elif path.is_dir():
            count, records, problems = _read_root(path, where, warn, use_index)
            runs += count
            for problem in problems:
                if strict:
                    raise ResultsError(
                        f"{problem.path}: {problem.message}; strict reading skips nothing"
                    )
                if warn is not None:
                    warn(problem.warning)
            by_run: dict[str, list[Record]] = {}
            for record in records:
                by_run.setdefault(record.run_dir or "", []).append(record)
            groups += [(Path(run_dir), recs) for run_dir, recs in by_run.items()]
        else:
            raise ResultsError(f"{path} does not exist or is not a directory")
    if runs == 0:
        where_text = ", ".join(str(p) for p in paths)
        raise ResultsError(
            f"no run directory found under {where_text}: give a directory holding run.json, "
            "or a folder of them"
        )
    seen: set[Path] = set()
    out: list[Record] = []
    for run_dir, records in groups:
        if run_dir not in seen:
            seen.add(run_dir)
            out += records
    # sweep fields first, so that a filter can name them; superseded points go either way
    out = apply_sweeps(out, warn)
    return where.select(out) if where else out
