"""Partition modes of a vendor's GPUs applied to its catalog variants: what a mode changes in
the tuned environment, each change with its reason.

In CPX mode an MI300-class GPU is eight devices, one per XCD (38 of its 304 CUs, 24 GiB of HBM
in NPS4), and the way to use a node is one TP=1 server per partition: vLLM's tensor-parallel
collectives never run, so what tunes them does nothing, and GEMMs are tuned for a smaller device.
`bench-images render VARIANT --mode cpx` renders the changed variant (VARIANT-cpx, its own tag
and env hash); `bench-run --partition cpx --tp 1` runs with the mode's run-time environment.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from runner.images.catalog import CatalogError, EnvVar, Variant


@dataclass(frozen=True)
class Unset:
    """A tuned variable the mode drops, and why it does not apply there."""

    name: str
    reason: str


@dataclass(frozen=True)
class Mode:
    """A partition mode: the variables it drops, those it sets, and notes that are no value."""

    name: str
    vendor: str
    description: str
    unset: tuple[Unset, ...] = ()
    env: tuple[EnvVar, ...] = ()
    notes: tuple[str, ...] = ()


CPX = Mode(
    name="cpx",
    vendor="amd",
    description="AMD CPX compute partitions: each XCD its own device, one TP=1 server on each",
    unset=(
        Unset(
            "NCCL_MIN_NCHANNELS",
            "TP=1 on one partition runs no all-reduce: RCCL's channel count tunes no collective",
        ),
    ),
    env=(
        EnvVar(
            "PYTORCH_TUNABLEOP_FILENAME",
            "/var/lib/bench/tunableop/cpx/tunableop_results.csv",
            "a CPX partition is one XCD (38 CUs, not 304): its GEMMs tune to other kernels, so "
            "its TunableOp results are kept apart from the whole GPU's",
            scope="image",
        ),
    ),
    notes=(
        "HIP_VISIBLE_DEVICES: one partition per server, set per replica by bench-run "
        "(--gpus ids are partitions, numbered as amd-smi and HIP list them)",
        "VLLM_ROCM_USE_AITER, TORCH_BLAS_PREFER_HIPBLASLT, HSA_NO_SCRATCH_RECLAIM: kept; "
        "they act within one device, whole or partition",
        "bench-run --partition cpx (or cpx/nps4) checks the node is in that mode and refuses "
        "otherwise; amd-smi sets it (root, and it resets the GPUs)",
    ),
)

MODES: dict[str, Mode] = {mode.name: mode for mode in (CPX,)}


def mode_for_run(expect_partition: str | None, tp: int) -> str | None:
    """The mode whose tuning a run gets: cpx for `--partition cpx[/nps4]` at TP=1, else none.

    At TP>1 over partitions the collectives run again, so the catalog's own tuning holds.
    """
    if expect_partition is None or tp != 1:
        return None
    compute = expect_partition.split("/")[0].lower()
    return compute if compute in MODES else None


def mode_lines(mode: Mode) -> list[str]:
    """What the mode changes, one line each: the Dockerfile's comments and render's output."""
    lines = [f"{var.name} not set: {var.reason}" for var in mode.unset]
    lines += [f"{var.name}={var.value}: {var.reason}" for var in mode.env]
    return lines + list(mode.notes)


def apply_mode(variant: Variant, name: str) -> Variant:
    """`variant` in mode `name`: VARIANT-NAME, its env changed as the mode says, with notes."""
    mode = MODES.get(name.lower())
    if mode is None:
        raise CatalogError(f"unknown mode {name!r}: choose one of {', '.join(MODES)}")
    if variant.vendor != mode.vendor:
        raise CatalogError(
            f"mode {mode.name} is for {mode.vendor} variants; {variant.name} is a "
            f"{variant.vendor} variant: choose a {mode.vendor} variant (bench-images list)"
        )
    dropped = {var.name for var in mode.unset}
    replaced = {var.name: var for var in mode.env}
    env = [replaced.pop(var.name, var) for var in variant.env if var.name not in dropped]
    env += list(replaced.values())
    return dataclasses.replace(
        variant,
        name=f"{variant.name}-{mode.name}",
        description=f"{variant.description}; mode {mode.name}: {mode.description}",
        env=tuple(env),
        mode=mode.name,
        notes=tuple(mode_lines(mode)),
    )
