"""Layouts of one node's GPUs compared: replicas x tensor-parallel size (2xTP4 vs 8xTP1).

A layout is how a configuration spends its GPUs: one TP=8 server, two TP=4 replicas, eight
TP=1 replicas (on AMD, perhaps eight CPX partitions of one GPU). Records of two layouts pair
up when the rest of their configuration is the same (model, precision, image, vLLM, ...); the
fields a layout changes (tp, replicas, spread, partition) are the ones allowed to differ.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from results.analysis.axis import AxisPair
from results.analysis.compare import config_fields, natural_key
from results.analysis.comparison import Side
from results.errors import ResultsError
from results.model.schema import Record

# the config fields a layout sets; the others must match for two records to be compared
LAYOUT_FIELDS = ("tp", "replicas", "spread", "partition")


def _rest(record: Record) -> tuple[Any, ...]:
    """Record.config_key without the fields a layout sets."""
    return tuple(v for k, v in config_fields(record).items() if k not in LAYOUT_FIELDS)


def _gpus(records: Sequence[Record]) -> str:
    """The GPUs a side's records use, "8" (or "4,8"); "" on the CPU."""
    counts = sorted({r.gpus_used for r in records if r.gpus_used}, key=int)
    return ",".join(str(c) for c in counts)


def _source(layout: str, gpus: str) -> str:
    return f"layout={layout} ({gpus} GPUs)" if gpus else f"layout={layout}"


def _gpus_text(base: str, cand: str) -> str:
    """ "8 GPUs", "4 vs 8 GPUs", or "" when neither side used a GPU."""
    if not base and not cand:
        return ""
    return f"{base} GPUs" if base == cand else f"{base or '-'} vs {cand or '-'} GPUs"


def _label(record: Record) -> str:
    name = record.model.rstrip("/").rsplit("/", 1)[-1] or "?"
    gpu = record.gpu_model or record.vendor
    return f"model={name}, precision={record.precision}, gpu={gpu}"


def layout_pairs(records: Iterable[Record], values: Sequence[str]) -> list[AxisPair]:
    """Each configuration run at layout values[0] (baseline) and values[1] (candidate), the
    rest of it equal: one pair of sides each; ResultsError naming the layouts present if none.
    """
    wanted = [v.strip().lower() for v in values]
    if wanted[0] == wanted[1]:
        raise ResultsError(f"--axis layout {values[0]} {values[1]}: give two different layouts")
    found = list(records)
    present = sorted({r.layout for r in found}, key=lambda v: natural_key(v.lower()))
    for given in wanted:
        if not any(r.layout.lower() == given for r in found):
            raise ResultsError(
                f"no record has layout {given} (replicas x TP, e.g. 2xTP4): the layouts present "
                f"are {', '.join(present) or '(none)'}"
            )
    groups: dict[tuple[Any, ...], tuple[list[Record], list[Record]]] = {}
    for record in found:
        layout = record.layout.lower()
        if layout in wanted:
            sides = groups.setdefault(_rest(record), ([], []))
            sides[wanted.index(layout)].append(record)
    pairs = []
    for base, cand in groups.values():
        if not base or not cand:
            continue
        others = {"rest": _label(base[0]), "gpus": _gpus_text(_gpus(base), _gpus(cand))}
        pairs.append(
            AxisPair(
                others,
                Side("baseline", _source(values[0], _gpus(base)), tuple(base)),
                Side("candidate", _source(values[1], _gpus(cand)), tuple(cand)),
            )
        )
    if not pairs:
        raise ResultsError(
            f"no configuration was run at both layout {values[0]} and {values[1]} with the rest "
            "(model, precision, GPU, image, vLLM, engine args) the same: nothing to compare"
        )
    return pairs


def pair_heading(pair: AxisPair, values: Sequence[str]) -> str:
    """'layout: 2xTP4 -> 8xTP1 on 8 GPUs, model=..., precision=..., gpu=...'."""
    gpus, rest = pair.others["gpus"], pair.others["rest"]
    where = f" on {gpus}" if gpus else ""
    return f"layout: {values[0]} -> {values[1]}{where}, {rest}"
