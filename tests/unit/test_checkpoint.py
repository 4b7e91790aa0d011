"""The precision label from a checkpoint's config.json (runner/checkpoint.py), read by results."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from results.model.records import records_from_run
from results.model.rundir import load_run
from runner.checkpoint import Quantization, check_quantization, label_run, read_checkpoint
from runner.errors import PlanError
from runner.plan import EngineConfig, ModelRef
from tests.unit.job_runs import make_run
from tests.unit.synthetic_runs import FIXTURE_RUN

# quantization_config objects as the tools that make these checkpoints write them
FP8_DYNAMIC = {"quant_method": "fp8", "activation_scheme": "dynamic", "fmt": "e4m3"}
FP8_STATIC = {"quant_method": "fp8", "activation_scheme": "static", "ignored_layers": ["lm_head"]}
FP8_BLOCK = {"quant_method": "fp8", "activation_scheme": "dynamic", "weight_block_size": [128, 128]}


def compressed(weights: dict[str, Any], acts: dict[str, Any] | None, fmt: str) -> dict[str, Any]:
    return {
        "quant_method": "compressed-tensors",
        "format": fmt,
        "config_groups": {
            "group_0": {"targets": ["Linear"], "weights": weights, "input_activations": acts}
        },
        "ignore": ["lm_head"],
    }


CT_FP8 = compressed(
    {"num_bits": 8, "type": "float", "strategy": "channel", "symmetric": True},
    {"num_bits": 8, "type": "float", "strategy": "token", "dynamic": True},
    "float-quantized",
)
CT_INT8 = compressed(
    {"num_bits": 8, "type": "int", "strategy": "channel", "symmetric": True},
    {"num_bits": 8, "type": "int", "strategy": "token", "dynamic": True},
    "int-quantized",
)
CT_W4A16 = compressed(
    {"num_bits": 4, "type": "int", "strategy": "group", "group_size": 128}, None, "pack-quantized"
)
GPTQ_4BIT = {"quant_method": "gptq", "bits": 4, "group_size": 128, "desc_act": False, "sym": True}
AWQ_4BIT = {"quant_method": "awq", "bits": 4, "group_size": 128, "zero_point": True}


def model_dir(root: Path, quant: dict[str, Any] | None, name: str = "ckpt") -> Path:
    directory = root / name
    directory.mkdir()
    config: dict[str, Any] = {"max_position_embeddings": 2048}
    if quant is not None:
        config["quantization_config"] = quant
    (directory / "config.json").write_text(json.dumps(config))
    return directory


@pytest.mark.parametrize(
    ("quant", "expected"),
    [
        (FP8_DYNAMIC, Quantization("fp8", "fp8", 8, 8, "dynamic")),
        (FP8_STATIC, Quantization("fp8", "fp8", 8, 8, "static")),
        (FP8_BLOCK, Quantization("fp8", "fp8", 8, 8, "dynamic, block 128x128")),
        (CT_FP8, Quantization("compressed-tensors", "fp8", 8, 8, "W8A8-FP, dynamic")),
        (CT_INT8, Quantization("compressed-tensors", "int8", 8, 8, "W8A8-INT, dynamic")),
        (CT_W4A16, Quantization("compressed-tensors", "w4a16", 4, None, "W4A16-INT")),
        (GPTQ_4BIT, Quantization("gptq", "gptq-int4", 4, None, "W4A16")),
        (AWQ_4BIT, Quantization("awq", "awq-int4", 4, None, "W4A16")),
        (None, None),
    ],
    ids=[
        "fp8-dynamic",
        "fp8-static",
        "fp8-block",
        "ct-w8a8-fp8",
        "ct-w8a8-int8",
        "ct-w4a16",
        "gptq-4bit",
        "awq",
        "none",
    ],
)
def test_detects_the_checkpoints_quantization(
    tmp_path: Path, quant: dict[str, Any] | None, expected: Quantization | None
) -> None:
    found, plain = read_checkpoint(model_dir(tmp_path, quant))
    assert found == expected
    assert plain == (quant is None)


def test_a_vlms_text_config_and_an_old_compression_config_count(tmp_path: Path) -> None:
    vlm = tmp_path / "vlm"
    vlm.mkdir()
    (vlm / "config.json").write_text(json.dumps({"text_config": {"quantization_config": CT_FP8}}))
    assert read_checkpoint(vlm)[0] == Quantization(
        "compressed-tensors", "fp8", 8, 8, "W8A8-FP, dynamic"
    )
    old = tmp_path / "old"
    old.mkdir()
    (old / "config.json").write_text(json.dumps({"compression_config": CT_INT8}))
    assert read_checkpoint(old)[0] is not None


def test_a_side_quantize_config_makes_it_neither_plain_nor_known(tmp_path: Path) -> None:
    directory = model_dir(tmp_path, None)
    (directory / "quantize_config.json").write_text(json.dumps({"bits": 4}))
    assert read_checkpoint(directory) == (None, False)
    check_quantization("gptq", None, False, str(directory))  # vLLM reads the side file


@pytest.mark.parametrize(
    ("asked", "quant"),
    [
        ("awq", GPTQ_4BIT),
        ("gptq", AWQ_4BIT),
        ("fp8", GPTQ_4BIT),
        ("gptq", FP8_DYNAMIC),
        ("fp8", CT_FP8),  # vLLM's method for it is compressed-tensors, not fp8
        ("compressed-tensors", FP8_STATIC),
        ("fp8_per_tensor", FP8_DYNAMIC),
    ],
)
def test_a_contradicting_quantization_is_refused(
    tmp_path: Path, asked: str, quant: dict[str, Any]
) -> None:
    found, plain = read_checkpoint(model_dir(tmp_path, quant))
    with pytest.raises(PlanError) as exc:
        check_quantization(asked, found, plain, "m")
    message = str(exc.value)
    assert message.startswith(f"--quantization {asked} contradicts the checkpoint: m/config.json")
    assert f"quant_method {quant['quant_method']}" in message and "\n" not in message


@pytest.mark.parametrize("asked", ["gptq", "awq_marlin", "compressed-tensors", "moe_wna16"])
def test_a_checkpoint_method_on_a_plain_checkpoint_is_refused(tmp_path: Path, asked: str) -> None:
    with pytest.raises(PlanError, match=f"--quantization {asked} needs a .* checkpoint"):
        check_quantization(asked, *read_checkpoint(model_dir(tmp_path, None)), "m")


@pytest.mark.parametrize(
    ("asked", "quant"),
    [
        ("fp8", None),  # online: vLLM quantizes the weights at load
        ("fp8_per_block", None),
        ("experts_int8", None),
        ("fp8", FP8_STATIC),
        ("compressed-tensors", CT_W4A16),
        ("gptq_marlin", GPTQ_4BIT),
        ("auto_gptq", GPTQ_4BIT),
        ("awq_marlin", AWQ_4BIT),
        ("humming", CT_INT8),
        (None, GPTQ_4BIT),
    ],
)
def test_what_vllm_accepts_passes_quietly(
    tmp_path: Path, asked: str | None, quant: dict[str, Any] | None
) -> None:
    assert check_quantization(asked, *read_checkpoint(model_dir(tmp_path, quant)), "m") == []


@pytest.mark.parametrize(("asked", "quant"), [("gptq", GPTQ_4BIT), ("awq", AWQ_4BIT)])
def test_an_explicit_gptq_or_awq_warns_of_the_slow_kernel(
    tmp_path: Path, asked: str, quant: dict[str, Any]
) -> None:
    (warning,) = check_quantization(asked, *read_checkpoint(model_dir(tmp_path, quant)), "m")
    assert "slower non-Marlin kernel" in warning and "drop --quantization" in warning


def test_label_run_puts_the_label_in_run_json(tmp_path: Path) -> None:
    run = make_run(ModelRef.resolve(str(model_dir(tmp_path, FP8_DYNAMIC))))
    seen: list[str] = []
    labelled = label_run(run, seen.append)
    assert seen == []
    data = labelled.to_dict()
    assert data["engine"]["precision"] == "fp8"
    assert data["engine"]["quantization"] is None  # nothing was forced
    assert data["model"]["quantization"] == {
        "method": "fp8",
        "label": "fp8",
        "weight_bits": 8,
        "activation_bits": 8,
        "scheme": "dynamic",
    }


def test_label_run_without_a_quantized_checkpoint(tmp_path: Path) -> None:
    plain = ModelRef.resolve(str(model_dir(tmp_path, None)))
    forced = make_run(plain, engine=EngineConfig(max_model_len=1024, quantization="fp8"))
    data = label_run(forced, print).to_dict()
    assert data["engine"]["precision"] == "fp8" and "quantization" not in data["model"]
    hub = make_run(ModelRef(source="org/not-cached"))  # a dry run's uncached hub model
    assert label_run(hub, print).to_dict()["engine"]["precision"] is None


def test_label_run_warns_through_the_note(tmp_path: Path) -> None:
    model = ModelRef.resolve(str(model_dir(tmp_path, GPTQ_4BIT)))
    run = make_run(model, engine=EngineConfig(max_model_len=1024, quantization="gptq"))
    seen: list[str] = []
    label_run(run, seen.append)
    assert len(seen) == 1 and seen[0].startswith("warning: --quantization gptq")


# -- results read the label ------------------------------------------------------------------------


def _copy_fixture(tmp_path: Path, engine: dict[str, Any]) -> Path:
    run_dir = tmp_path / FIXTURE_RUN.name
    shutil.copytree(FIXTURE_RUN, run_dir)
    run_json = run_dir / "run.json"
    data = json.loads(run_json.read_text())
    data["engine"].update(engine)
    run_json.write_text(json.dumps(data))
    return run_dir


def test_results_read_the_checkpoints_label(tmp_path: Path) -> None:
    run_dir = _copy_fixture(tmp_path, {"precision": "fp8"})
    records = records_from_run(load_run(run_dir))
    assert records and {r.precision for r in records} == {"fp8"}
    assert {r.quantization for r in records} == {"fp8"}


def test_results_of_old_runs_keep_dtype_or_quantization(tmp_path: Path) -> None:
    records = records_from_run(load_run(FIXTURE_RUN))  # no engine.precision: as before
    assert {r.precision for r in records} == {"bfloat16"}
    forced = _copy_fixture(tmp_path, {"quantization": "fp8"})
    assert {r.precision for r in records_from_run(load_run(forced))} == {"fp8"}
