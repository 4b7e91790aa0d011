"""The schemes `bench-prep quantize` makes, and each tool's recipe for them (plain data).

A recipe is a list of steps, {"step": NAME, "args": {...}}: for llm-compressor each step is a
modifier class the worker instantiates with those arguments and hands to `oneshot`; for amd-quark
the one step is LLMTemplate.get_config's arguments. The recipe is recorded as it is in
DIR/bench-prep.json, so a checkpoint says exactly how it was made.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from runner.errors import PlanError

TOOLS = ("llm-compressor", "quark")
DEFAULT_TOOL = "llm-compressor"
# lm_head stays in BF16 in every recipe: the source documents' recipes and vLLM's kernels expect it
_IGNORE = ["lm_head"]


@dataclass(frozen=True)
class Scheme:
    name: str
    what: str  # for people: what the weights and activations become
    calibration: bool  # static scales or GPTQ need calibration samples
    recipes: dict[str, list[dict[str, Any]]]  # tool -> steps


def _qmod(scheme: str) -> dict[str, Any]:
    return {
        "step": "QuantizationModifier",
        "args": {"targets": ["Linear"], "scheme": scheme, "ignore": _IGNORE},
    }


def _gptq(scheme: str) -> dict[str, Any]:
    return {
        "step": "GPTQModifier",
        "args": {"targets": ["Linear"], "scheme": scheme, "ignore": _IGNORE},
    }


SCHEMES: dict[str, Scheme] = {
    s.name: s
    for s in (
        Scheme(
            "fp8-dynamic",
            "FP8 E4M3 weights (per channel) and activations (dynamic, per token); no calibration",
            False,
            {"llm-compressor": [_qmod("FP8_DYNAMIC")]},
        ),
        Scheme(
            "fp8",
            "FP8 E4M3 weights and activations with static per-tensor scales from calibration",
            True,
            {
                "llm-compressor": [_qmod("FP8")],
                # AMD's FP8-KV recipe: the same, plus FP8 KV-cache scales (k_proj/v_proj outputs)
                "quark": [
                    {
                        "step": "LLMTemplate.get_config",
                        "args": {
                            "scheme": "fp8",
                            "kv_cache_scheme": "fp8",
                            "exclude_layers": _IGNORE,
                        },
                    }
                ],
            },
        ),
        Scheme(
            "w8a8-int8",
            "INT8 weights (per channel, GPTQ) and activations (dynamic, per token) after "
            "SmoothQuant",
            True,
            {
                "llm-compressor": [
                    {"step": "SmoothQuantModifier", "args": {"smoothing_strength": 0.8}},
                    _gptq("W8A8"),
                ]
            },
        ),
        Scheme(
            "w4a16",
            "INT4 weights (GPTQ, groups of 128), BF16 activations",
            True,
            {"llm-compressor": [_gptq("W4A16")]},
        ),
    )
}


def recipe_for(scheme: str, tool: str) -> tuple[Scheme, list[dict[str, Any]]]:
    """The scheme and the tool's recipe for it; a one-line PlanError if the tool cannot make it."""
    found = SCHEMES.get(scheme)
    if found is None:
        raise PlanError(f"unknown scheme {scheme!r}: use one of {', '.join(SCHEMES)}")
    if tool not in TOOLS:
        raise PlanError(f"unknown tool {tool!r}: use one of {', '.join(TOOLS)}")
    recipe = found.recipes.get(tool)
    if recipe is None:
        can = [name for name, s in SCHEMES.items() if tool in s.recipes]
        raise PlanError(
            f"--tool {tool} cannot make --scheme {scheme} here (it makes {', '.join(can)}): "
            f"use --tool {DEFAULT_TOOL} for {scheme}"
        )
    return found, recipe
