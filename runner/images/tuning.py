"""The vendor's tuned environment a run gets at run time, from the image catalog."""

from __future__ import annotations

from dataclasses import dataclass, field

from runner.images.catalog import Catalog, load_catalog
from runner.images.modes import apply_mode
from runner.vendors import profile_for


@dataclass(frozen=True)
class Tuning:
    """The run-time tuned values (scope run) of one catalog variant; empty when none applies."""

    variant: str | None = None
    env: dict[str, str] = field(default_factory=dict)


def run_tuning(
    vendor: str, image: str | None, catalog: Catalog | None = None, mode: str | None = None
) -> Tuning:
    """The tuning of `image` when it is one of the vendor's catalog variants, else the vendor's
    default variant's: an outside image (or this host's vLLM) gets the same vendor tuning.

    `mode` (runner/images/modes.py, e.g. cpx for TP=1 servers on CPX partitions) changes it as
    the mode says."""
    catalog = catalog if catalog is not None else load_catalog()
    for name in (image, profile_for(vendor).default_image):
        variant = catalog.get(name) if name is not None else None
        if variant is not None and variant.vendor == vendor:
            if mode is not None:
                variant = apply_mode(variant, mode)
            return Tuning(variant.name, variant.run_env)
    return Tuning()


def tuning_line(tuning: Tuning) -> str:
    """One comment line for a dry run: whose tuning the agent adds, and its values."""
    if tuning.variant is None:
        return "# vendor tuning: none (no catalog variant of this vendor)"
    values = " ".join(f"{name}={value}" for name, value in tuning.env.items()) or "(none)"
    return f"# vendor tuning (catalog {tuning.variant}, under --env): {values}"
