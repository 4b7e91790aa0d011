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
from results.analysis.compare import natural_key
from results.analysis.comparison import Side
from results.errors import ResultsError
from results.model.schema import Record

# the config fields a layout sets; the others must match for two records to be compared
LAYOUT_FIELDS = ("tp", "replicas", "spread", "partition")


def _rest(record: Record) -> tuple[Any, ...]:
    """Record.config_key without the fields a layout sets."""
    return (
        record.vendor,
        record.gpu_model,
        record.model,
        record.image_digest or record.image,
        record.vllm_version,
        record.dtype,
        record.quantization,
        record.kv_cache_dtype,
        record.engine_args,
    )


def _gpus(records: Sequence[Record]) -> str:
    counts = sorted({r.gpus_used for r in records if r.gpus_used}, key=int)
    return ",".join(str(c) for c in counts) if counts else "-"


def _label(record: Record) -> str:
    name = record.model.rstrip("/").rsplit("/", 1)[-1] or "?"
    gpu = record.gpu_model or record.vendor
    return f"model={name}, precision={record.precision}, gpu={gpu}"


def layout_pairs(records: Iterable[Record], values: Sequence[str]) -> list[AxisPair]:
    """Each configuration run at layout values[0] (baseline) and values[1] (candidate), the
    rest of it equal: one pair of sides each; ResultsError naming the layouts present if none.
    """
    wanted = [v.strip().lower() for v in values]
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
        gpus = f"{_gpus(base)} vs {_gpus(cand)}"
        others = {"rest": _label(base[0]), "gpus": gpus}
        pairs.append(
            AxisPair(
                others,
                Side("baseline", f"layout={values[0]} ({_gpus(base)} GPUs)", tuple(base)),
                Side("candidate", f"layout={values[1]} ({_gpus(cand)} GPUs)", tuple(cand)),
            )
        )
    if not pairs:
        raise ResultsError(
            f"no configuration was run at both layout {values[0]} and {values[1]} with the rest "
            "(model, precision, GPU, image, vLLM, engine args) the same: nothing to compare"
        )
    return pairs


def pair_heading(pair: AxisPair, values: Sequence[str]) -> str:
    """'layout: 2xTP4 -> 8xTP1 on 8 vs 8 GPUs, model=..., precision=..., gpu=...'."""
    return (
        f"layout: {values[0]} -> {values[1]} on {pair.others['gpus']} GPUs, {pair.others['rest']}"
    )
