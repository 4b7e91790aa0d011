"""A checkpoint's quantization, read from its config.json, and --quantization checked against it."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runner.errors import PlanError
from runner.plan import EngineConfig, Plan, Run, model_config

Note = Callable[[str], None]

# --quantization values vLLM 0.32 accepts on a checkpoint of each method (ModelConfig.
# _verify_quantization: the checkpoint's method, or an override that claims it; anything else
# raises "Quantization method specified in the model config ... does not match"). `humming`
# claims any checkpoint; `moe_wna16` claims GPTQ/AWQ MoE checkpoints. Methods not listed here
# (modelopt, mxfp4, auto-round, ...) have overrides too intricate to mirror: vLLM judges them.
_ACCEPTED: dict[str, frozenset[str]] = {
    "gptq": frozenset({"gptq", "gptq_marlin", "auto_gptq", "marlin", "moe_wna16", "humming"}),
    "awq": frozenset({"awq", "awq_marlin", "auto_awq", "marlin", "moe_wna16", "humming"}),
    "fp8": frozenset({"fp8", "humming"}),
    "compressed-tensors": frozenset({"compressed-tensors", "humming"}),
}
# Methods that read their parameters from the checkpoint (vLLM's get_config_filenames, or the
# format itself): on a checkpoint without them vLLM fails at load ("Cannot find the config file").
_NEEDS_CHECKPOINT = {
    "gptq": "GPTQ", "gptq_marlin": "GPTQ", "auto_gptq": "GPTQ", "marlin": "GPTQ or AWQ",
    "awq": "AWQ", "awq_marlin": "AWQ", "auto_awq": "AWQ", "moe_wna16": "GPTQ or AWQ",
    "compressed-tensors": "compressed-tensors", "modelopt": "ModelOpt", "modelopt_fp4": "ModelOpt",
    "modelopt_mixed": "ModelOpt", "inc": "auto-round",
}  # fmt: skip
# Files next to config.json that also carry a quantization config (old GPTQ/AWQ, ModelOpt, INC).
_SIDE_FILES = (
    "quantize_config.json", "quant_config.json", "hf_quant_config.json",
    "quantization_config.json",
)  # fmt: skip
# An explicit gptq/awq used to force the slower non-Marlin kernel: vLLM upgraded to *_marlin on
# its own only when --quantization was unset. vLLM 0.32 maps both names to one Marlin-based class.
_SLOW_WHEN_FORCED = {
    "gptq": "PR #38288 (spring 2026), which made gptq, gptq_marlin and auto_gptq one Marlin class",
    "awq": "the same consolidation for AWQ (auto_awq)",
}


@dataclass(frozen=True)
class Quantization:
    """A checkpoint's quantization as its config.json states it (run.json's model.quantization)."""

    method: str  # quant_method, e.g. fp8, gptq, awq, compressed-tensors
    label: str  # what the weights are, for results: fp8, int8, w4a16, gptq-int4, ...
    weight_bits: int | None = None
    activation_bits: int | None = None
    scheme: str | None = None  # e.g. dynamic / static (fp8), W8A8-FP8 (compressed-tensors)


def _int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _compressed_tensors(config: Mapping[str, Any]) -> Quantization:
    """The first config group's weights and input activations: W8A8 FP8, W8A8 INT8, W4A16..."""
    groups = config.get("config_groups")
    group: Any = next(iter(groups.values()), {}) if isinstance(groups, dict) else {}
    weights = group.get("weights") if isinstance(group, dict) else None
    acts = group.get("input_activations") if isinstance(group, dict) else None
    weights = weights if isinstance(weights, dict) else {}
    acts = acts if isinstance(acts, dict) else {}
    w_bits, a_bits = _int(weights.get("num_bits")), _int(acts.get("num_bits"))
    kind = "fp" if weights.get("type") == "float" else "int"
    if w_bits is None:  # no group to read: the format name is all there is
        return Quantization("compressed-tensors", str(config.get("format") or "compressed-tensors"))
    extra = ""
    if isinstance(acts.get("dynamic"), bool):  # seed 003's question: dynamic or static scales
        extra = ", dynamic" if acts["dynamic"] else ", static"
    if isinstance(config.get("kv_cache_scheme"), dict):
        extra += f", KV cache {_ct_kind(config['kv_cache_scheme'])}"
    return _widths("compressed-tensors", kind, w_bits, a_bits, extra)


def _ct_kind(args: Mapping[str, Any]) -> str:
    """A compressed-tensors QuantizationArgs as fp8 / int8 / ..."""
    kind = "fp" if args.get("type") == "float" else "int"
    return f"{kind}{_int(args.get('num_bits')) or ''}"


def _widths(
    method: str, kind: str, w_bits: int, a_bits: int | None, extra: str = ""
) -> Quantization:
    scheme = f"W{w_bits}A{a_bits or 16}-{kind.upper()}{extra}"
    if a_bits == w_bits or (kind == "fp" and a_bits is None):
        label = f"{kind}{w_bits}"  # fp8, int8, fp4: weights (and activations) at that width
    else:
        label = f"w{w_bits}a{a_bits or 16}"  # weight-only or mixed: w4a16, w8a16, w4a8
    return Quantization(method, label, w_bits, a_bits, scheme)


def _quark_dtype(spec: object) -> tuple[str, int] | None:
    """A Quark tensor spec's dtype ("fp8_e4m3", "int8", "uint4", ...) as (fp|int, bits)."""
    dtype = str(spec.get("dtype") or "") if isinstance(spec, dict) else ""
    found = re.fullmatch(r"(fp|u?int)(\d+)(_.*)?", dtype)
    if found is None:
        return None
    return ("fp" if found.group(1) == "fp" else "int"), int(found.group(2))


def _quark(config: Mapping[str, Any]) -> Quantization:
    """AMD Quark's HF export: global_quant_config's weight and input tensors, KV-cache scales."""
    glob = config.get("global_quant_config")
    glob = glob if isinstance(glob, dict) else {}
    weights, acts = _quark_dtype(glob.get("weight")), _quark_dtype(glob.get("input_tensors"))
    if weights is None:
        return Quantization("quark", "quark")
    extra = ""
    if acts is not None:
        dynamic = isinstance(glob.get("input_tensors"), dict) and glob["input_tensors"].get(
            "is_dynamic"
        )
        extra += ", dynamic" if dynamic else ", static"
    if config.get("kv_cache_quant_config"):
        extra += ", KV cache fp8" if weights[0] == "fp" else ", KV cache quantized"
    return _widths("quark", weights[0], weights[1], acts[1] if acts else None, extra)


# formats whose config describes each tensor's type: read by their own functions
_READERS: dict[str, Callable[[Mapping[str, Any]], Quantization]] = {
    "compressed-tensors": _compressed_tensors,
    "quark": _quark,
}


def describe(config: Mapping[str, Any]) -> Quantization | None:
    """A quantization_config (or compression_config) object as a Quantization, None if none."""
    method = str(config.get("quant_method") or "").lower()
    if not method:
        return None
    reader = _READERS.get(method)
    if reader is not None:
        return reader(config)
    if method == "fp8":
        scheme = str(config.get("activation_scheme") or "dynamic")
        if config.get("weight_block_size"):
            scheme += ", block " + "x".join(str(n) for n in config["weight_block_size"])
        return Quantization("fp8", "fp8", 8, 8, scheme)
    if method in ("gptq", "awq"):
        bits = _int(config.get("bits")) or _int(config.get("w_bit"))
        label = f"{method}-int{bits}" if bits else method
        return Quantization(method, label, bits, None, f"W{bits}A16" if bits else None)
    if method.startswith("modelopt") and isinstance(config.get("quant_algo"), str):
        return Quantization(method, str(config["quant_algo"]).lower())  # fp8, nvfp4, ...
    return Quantization(method, method)


def read_checkpoint(model_dir: Path) -> tuple[Quantization | None, bool]:
    """The model directory's quantization, and whether it is known to have none.

    Reads config.json's quantization_config (a VLM's text_config's, or compressed-tensors'
    older compression_config), as vLLM does; a side file such as quantize_config.json makes
    a checkpoint without one in config.json neither quantized nor known to be plain.
    """
    config = model_config(model_dir)
    if not isinstance(config, dict):
        raise PlanError(f"{model_dir}/config.json is not a JSON object: check the model")
    text = config.get("text_config")
    for found in (
        config.get("quantization_config"),
        text.get("quantization_config") if isinstance(text, dict) else None,
        config.get("compression_config"),
    ):
        if isinstance(found, dict) and found:
            return describe(found), False
    plain = not any((model_dir / name).is_file() for name in _SIDE_FILES)
    return None, plain


def check_quantization(
    asked: str | None, found: Quantization | None, plain: bool, model: str
) -> list[str]:
    """Refuse a --quantization vLLM would refuse for this checkpoint; the warnings it deserves.

    "Contradicts", as vLLM 0.32 judges it: on a quantized checkpoint, a method other than the
    checkpoint's own (or one of the overrides that claim it); on a checkpoint known to be plain,
    a method that needs a quantized checkpoint (online methods such as fp8 quantize at load).
    """
    if asked is None:
        return []
    if found is None:
        needs = _NEEDS_CHECKPOINT.get(asked)
        if plain and needs:
            raise PlanError(
                f"--quantization {asked} needs a {needs} checkpoint, but {model}/config.json has "
                "no quantization_config: drop --quantization, or use fp8 to quantize at load"
            )
        return []
    accepted = _ACCEPTED.get(found.method)
    if accepted is not None and asked not in accepted:
        raise PlanError(
            f"--quantization {asked} contradicts the checkpoint: {model}/config.json says "
            f"quant_method {found.method} ({found.label}), and vLLM refuses a mismatch: drop "
            "--quantization (vLLM reads the method from the checkpoint)"
        )
    if asked == found.method and asked in _SLOW_WHEN_FORCED:
        return [
            f"--quantization {asked} on a {asked.upper()} checkpoint forces the slower "
            f"non-Marlin kernel on vLLM before {_SLOW_WHEN_FORCED[asked]} (vLLM 0.32 runs both "
            "on Marlin); left unset, every release picks the Marlin kernel: drop --quantization"
        ]
    return []


def label_run(run: Run, note: Note) -> Run:
    """The run with its checkpoint's quantization and precision label, --quantization checked."""
    if run.model.local_path is None:  # a dry run's uncached hub model: nothing to read yet
        return dataclasses.replace(run, engine=_precision(run, None))
    found, plain = read_checkpoint(Path(run.model.local_path))
    for warning in check_quantization(run.engine.quantization, found, plain, run.model.local_path):
        note(f"warning: {warning}")
    return dataclasses.replace(run, checkpoint=found, engine=_precision(run, found))


def _precision(run: Run, found: Quantization | None) -> EngineConfig:
    label = found.label if found else run.engine.quantization
    return dataclasses.replace(run.engine, precision=label)


def label_plan(plan: Plan, note: Note) -> Plan:
    """Every run of the plan labelled (after the models are local directories)."""
    return Plan(runs=tuple(label_run(run, note) for run in plan.runs))
