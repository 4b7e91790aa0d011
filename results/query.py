"""Select records: `key=value[,value...]` filters over record fields, and loading runs by path."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from results.errors import ResultsError
from results.records import records_from_run
from results.rundir import find_runs, load_run
from results.schema import Record, format_rate

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
    "qps": lambda r: format_rate(r.qps) if r.qps is not None else None,
    "max_concurrency": lambda r: r.max_concurrency,
    "input_len": lambda r: r.input_len,
    "output_len": lambda r: r.output_len,
    "dataset": lambda r: r.dataset,
    "verdict": lambda r: r.verdict,
    "config": lambda r: r.config_label,
}
FILTER_KEYS = tuple(_GETTERS)


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


def load_records(
    paths: Sequence[Path | str],
    *,
    strict: bool = False,
    warn: Callable[[str], None] | None = None,
) -> list[Record]:
    """Every record under `paths` (run directories or folders of them).

    A directory that cannot be read as a run is skipped with a warning, or fails the whole
    call with `strict`.
    """
    found = find_runs(paths)
    if not found:
        where = ", ".join(str(p) for p in paths)
        raise ResultsError(
            f"no run directory found under {where}: give a directory holding run.json, "
            "or a folder of them"
        )
    records: list[Record] = []
    for path in found:
        try:
            records += records_from_run(load_run(path))
        except ResultsError as exc:
            if strict:
                raise
            if warn is not None:
                warn(f"skipped {path}: {exc}")
    return records
