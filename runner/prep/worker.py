"""The quantizing half of `bench-prep quantize`, run by the Python that has the quantization tool.

bench-prep (in the project's venv) decides everything and writes a spec; this file runs as a
script under the interpreter that can import llmcompressor or amd-quark (the project's
.venv-quantize, or a vendor image's Python) and only does what the spec says:

    python worker.py SPEC.json

It loads the model and the calibration samples, builds the recipe the spec names, quantizes,
saves the checkpoint into spec["out"] and writes spec["result"] (tool versions, what was done).
Progress goes to stderr as `bench-prep: ...` lines; a failure the user can act on ends as one
`error: ...` line and exit status 2.

Standard library at the top level: the heavy imports happen inside the functions, so that the
driver can read this file's constants without torch.
"""

# ruff: noqa: PLC0415 (torch, transformers and the tools are imported where used: the driver
# reads this file's constants, and --help runs, without them)
from __future__ import annotations

import importlib
import json
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Any

EXIT_USER = 2
# what the record lists, whichever are installed beside the tool
VERSIONED = (
    "llmcompressor", "compressed-tensors", "amd-quark", "transformers", "torch", "datasets",
    "accelerate",
)  # fmt: skip
# llm-compressor modifiers a spec may name: (module, class)
MODIFIERS = {
    "QuantizationModifier": "llmcompressor.modifiers.quantization",
    "GPTQModifier": "llmcompressor.modifiers.quantization",
    "SmoothQuantModifier": "llmcompressor.modifiers.transform.smoothquant",
}


class WorkerError(Exception):
    """A failure with a message the user can act on."""


def say(message: str) -> None:
    print(f"bench-prep: {message}", file=sys.stderr, flush=True)


def versions() -> dict[str, str]:
    found = {}
    for name in VERSIONED:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return found


def _texts_from_file(path: Path, column: str) -> list[str]:
    if path.suffix == ".jsonl":
        texts = []
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise WorkerError(f"{path}:{number} is not JSON ({exc.msg})") from None
            text = row.get(column) if isinstance(row, dict) else row
            if not isinstance(text, str):
                raise WorkerError(f'{path}:{number} has no string "{column}" field')
            texts.append(text)
        return texts
    # plain text: one sample per paragraph (blank-line separated), or per line if none
    raw = path.read_text(encoding="utf-8")
    blocks = [b.strip() for b in raw.split("\n\n") if b.strip()]
    if len(blocks) <= 1:
        blocks = [line.strip() for line in raw.splitlines() if line.strip()]
    return blocks


def _texts_from_hub(name: str, split: str, column: str, samples: int) -> list[str]:
    import datasets

    try:
        data = datasets.load_dataset(name, split=split)
    except Exception as exc:
        raise WorkerError(
            f"cannot load the hub dataset {name} (split {split}): {type(exc).__name__}: "
            f"{str(exc).splitlines()[0] if str(exc) else ''}; give --calibration a local "
            ".jsonl/.txt file instead"
        ) from None
    if column not in data.column_names:
        raise WorkerError(
            f"the hub dataset {name} has no column {column!r} (it has "
            f"{', '.join(data.column_names)}): pass --text-column"
        )
    data = data.shuffle(seed=42).select(range(min(samples, len(data))))
    return [str(t) for t in data[column]]


def calibration_texts(spec: dict[str, Any]) -> list[str]:
    cal = spec["calibration"]
    if cal is None:
        return []
    column = cal.get("column", "text")
    if cal["kind"] == "file":
        texts = _texts_from_file(Path(cal["path"]), column)
    else:
        texts = _texts_from_hub(cal["name"], cal.get("split", "train"), column, spec["samples"])
    texts = [t for t in texts if t.strip()][: spec["samples"]]
    if not texts:
        raise WorkerError(f"the calibration source {cal.get('path') or cal.get('name')} is empty")
    return texts


def _modifier(entry: dict[str, Any]) -> Any:
    module = importlib.import_module(MODIFIERS[entry["step"]])
    return getattr(module, entry["step"])(**entry["args"])


def run_llmcompressor(spec: dict[str, Any], texts: list[str]) -> dict[str, Any]:
    import torch
    from llmcompressor import oneshot
    from transformers import AutoModelForCausalLM, AutoTokenizer

    say(f"loading {spec['model']}")
    model = AutoModelForCausalLM.from_pretrained(spec["model"], dtype="auto")
    tokenizer = AutoTokenizer.from_pretrained(spec["model"])
    recipe = [_modifier(entry) for entry in spec["recipe"]]
    kwargs: dict[str, Any] = {}
    if texts:
        from datasets import Dataset

        max_len = spec["max_seq_len"]
        rows = [
            tokenizer(t, max_length=max_len, truncation=True, add_special_tokens=False)
            for t in texts
        ]
        data = Dataset.from_list(
            [{"input_ids": r["input_ids"], "attention_mask": r["attention_mask"]} for r in rows]
        )
        kwargs = {
            "dataset": data,
            "num_calibration_samples": len(texts),
            "max_seq_length": max_len,
        }
        say(f"calibrating on {len(texts)} samples of at most {max_len} tokens")
    say(f"quantizing with llm-compressor: {', '.join(e['step'] for e in spec['recipe'])}")
    torch.manual_seed(0)
    oneshot(model=model, recipe=recipe, **kwargs)
    say(f"saving the compressed-tensors checkpoint to {spec['out']}")
    model.save_pretrained(spec["out"], save_compressed=True)
    tokenizer.save_pretrained(spec["out"])
    return {"calibration_samples": len(texts)}


def run_quark(spec: dict[str, Any], texts: list[str]) -> dict[str, Any]:
    """AMD's FP8 recipe with amd-quark: weights, activations and KV cache.

    The recipe comes from Quark's own per-architecture LLMTemplate, the way AMD's FP8-KV
    checkpoints are made: FP8 E4M3 per-tensor weights and activations with static scales from
    calibration, FP8 KV-cache scales on the k_proj/v_proj outputs, lm_head left alone. It is
    exported with export_safetensors in Quark's HF format (config.json's quantization_config with
    quant_method "quark"), which vLLM reads.
    """
    import torch
    from quark.torch import LLMTemplate, ModelQuantizer, export_safetensors
    from torch.utils.data import DataLoader
    from transformers import AutoModelForCausalLM, AutoTokenizer

    recipe = spec["recipe"][0]["args"]
    say(f"loading {spec['model']}")
    model: Any = AutoModelForCausalLM.from_pretrained(spec["model"], dtype="auto")
    model.eval()
    tokenizer = AutoTokenizer.from_pretrained(spec["model"])
    model_type = model.config.model_type
    available = LLMTemplate.list_available()
    if model_type not in available:
        raise WorkerError(
            f"amd-quark {metadata.version('amd-quark')} has no LLM template for model_type "
            f"{model_type!r} (it has {', '.join(available)}): use --tool llm-compressor"
        )
    config = LLMTemplate.get(model_type).get_config(
        scheme=recipe["scheme"],
        kv_cache_scheme=recipe.get("kv_cache_scheme"),
        exclude_layers=recipe.get("exclude_layers"),
    )
    max_len = spec["max_seq_len"]
    batches: Any = [
        tokenizer(t, max_length=max_len, truncation=True, return_tensors="pt")["input_ids"]
        for t in texts
    ]
    loader = DataLoader(batches, batch_size=None)
    say(f"calibrating on {len(batches)} samples of at most {max_len} tokens")
    say(f"quantizing with amd-quark: template {model_type}, {recipe}")
    torch.manual_seed(0)
    with torch.no_grad():
        quantizer = ModelQuantizer(config)
        model = quantizer.quantize_model(model, loader)
        model = quantizer.freeze(model)
        say(f"exporting the Quark HF checkpoint to {spec['out']}")
        export_safetensors(model=model, output_dir=spec["out"], custom_mode="quark")
    tokenizer.save_pretrained(spec["out"])
    return {"calibration_samples": len(batches), "quark_template": model_type}


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: worker.py SPEC.json", file=sys.stderr)
        return EXIT_USER
    spec = json.loads(Path(argv[1]).read_text(encoding="utf-8"))
    started = time.time()
    try:
        texts = calibration_texts(spec)
        done = run_quark(spec, texts) if spec["tool"] == "quark" else run_llmcompressor(spec, texts)
    except WorkerError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return EXIT_USER
    done.update(versions=versions(), seconds=round(time.time() - started, 2))
    Path(spec["result"]).write_text(json.dumps(done, indent=2), encoding="utf-8")
    say(f"quantized in {done['seconds']} s")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
