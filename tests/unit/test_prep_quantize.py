"""`bench-prep quantize`: its argument checks (one line each, nothing written), recipes, record."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from runner.checkpoint import Quantization, describe
from runner.errors import PlanError, PreflightError
from runner.prep import worker
from runner.prep.cli import main
from runner.prep.quantize import (
    DEFAULT_CALIBRATION,
    find_python,
    model_identity,
    parse_calibration,
    run_worker,
)
from runner.prep.schemes import SCHEMES, recipe_for

# config.json's quantization_config as amd-quark 0.13's export_safetensors wrote it for the tiny
# model (fp8 scheme, fp8 KV cache), trimmed to the keys bench-run reads
QUARK_FP8_KV = {
    "quant_method": "quark",
    "exclude": ["lm_head"],
    "global_quant_config": {
        "input_tensors": {"dtype": "fp8_e4m3", "is_dynamic": False, "qscheme": "per_tensor"},
        "weight": {"dtype": "fp8_e4m3", "is_dynamic": False, "qscheme": "per_tensor"},
        "output_tensors": None,
    },
    "kv_cache_quant_config": {
        "*k_proj": {"output_tensors": {"dtype": "fp8_e4m3", "qscheme": "per_tensor"}},
        "*v_proj": {"output_tensors": {"dtype": "fp8_e4m3", "qscheme": "per_tensor"}},
    },
}


def plain_model(root: Path, quant: dict[str, Any] | None = None) -> Path:
    model = root / "model"
    model.mkdir()
    config: dict[str, Any] = {"model_type": "llama", "hidden_size": 8}
    if quant is not None:
        config["quantization_config"] = quant
    (model / "config.json").write_text(json.dumps(config))
    (model / "model.safetensors").write_bytes(b"weights")
    return model


def invoke(args: list[str], env: dict[str, str] | None = None) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["quantize", *args], env=env)
    return result.exit_code, result.stderr


def test_every_scheme_has_an_llm_compressor_recipe_and_quark_makes_fp8_only() -> None:
    for name in SCHEMES:
        scheme, recipe = recipe_for(name, "llm-compressor")
        assert recipe and all({"step", "args"} <= set(step) for step in recipe)
        assert scheme.calibration == (name != "fp8-dynamic")
    _, quark = recipe_for("fp8", "quark")
    assert quark[0]["args"]["kv_cache_scheme"] == "fp8"
    with pytest.raises(PlanError, match="--tool quark cannot make --scheme w4a16 here"):
        recipe_for("w4a16", "quark")
    with pytest.raises(PlanError, match="unknown scheme 'int3'"):
        recipe_for("int3", "llm-compressor")


@pytest.mark.parametrize(
    ("extra", "env", "expected"),
    [
        (["--scheme", "int3"], {}, "Invalid value for '--scheme'"),
        (["--scheme", "w4a16", "--tool", "quark"], {}, "--tool quark cannot make"),
        (
            ["--scheme", "fp8", "--calibration", "/no/such/cal.jsonl"],
            {},
            "calibration file /no/such/cal.jsonl does not exist",
        ),
        (
            ["--scheme", "w8a8-int8", "--calibration", "some-org/some-dataset"],
            {"HF_HUB_OFFLINE": "1"},
            "is a hub dataset, but HF_HUB_OFFLINE",
        ),
    ],
)
def test_bad_arguments_are_one_line_and_write_nothing(
    tmp_path: Path, extra: list[str], env: dict[str, str], expected: str
) -> None:
    model = plain_model(tmp_path)
    out = tmp_path / "out"
    code, err = invoke(["--model", str(model), "--out", str(out), *extra], env)
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("error: ") and expected in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]


def test_an_already_quantized_model_is_refused(tmp_path: Path) -> None:
    model = plain_model(tmp_path, QUARK_FP8_KV)
    code, err = invoke(["--model", str(model), "--scheme", "fp8-dynamic", "--out", "x"])
    assert code == 2
    assert "is already quantized (quark, fp8): quantize the original" in err
    (tmp_path / "side").mkdir()
    side = plain_model(tmp_path / "side")
    (side / "quantize_config.json").write_text("{}")
    code, err = invoke(["--model", str(side), "--scheme", "fp8-dynamic", "--out", "y"])
    assert code == 2 and "quantization side file" in err


def test_a_non_empty_out_is_refused_and_kept(tmp_path: Path) -> None:
    model = plain_model(tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    (out / "mine.txt").write_text("keep")
    code, err = invoke(["--model", str(model), "--scheme", "fp8-dynamic", "--out", str(out)])
    assert code == 2 and "exists and is not empty" in err
    assert (out / "mine.txt").read_text() == "keep"


def test_a_python_without_the_tool_is_one_line(tmp_path: Path) -> None:
    # this interpreter is the project's venv: vLLM's pins keep llmcompressor out of it
    model = plain_model(tmp_path)
    out = tmp_path / "out"
    args = ["--model", str(model), "--scheme", "fp8-dynamic", "--out", str(out)]
    code, err = invoke([*args, "--python", sys.executable])
    assert code == 1
    assert (
        f"no Python that can import llmcompressor (llm-compressor): tried {sys.executable}" in err
    )
    assert not out.exists()
    with pytest.raises(PreflightError, match="cannot run the Python /no/python"):
        find_python("/no/python", "quark", {})


def test_calibration_sources(tmp_path: Path) -> None:
    dynamic, static = SCHEMES["fp8-dynamic"], SCHEMES["fp8"]
    assert parse_calibration("x.jsonl", dynamic, {}, "train", "text") is None
    default = parse_calibration(None, static, {}, "train", "text")
    assert default is not None and default.default and default.source == str(DEFAULT_CALIBRATION)
    assert DEFAULT_CALIBRATION.is_file()
    hub = parse_calibration("org/data", static, {}, "test", "prompt")
    assert hub is not None and hub.spec() == {
        "kind": "hub", "name": "org/data", "split": "test", "column": "prompt"
    }  # fmt: skip
    other = tmp_path / "cal.csv"
    other.write_text("a,b\n")
    with pytest.raises(PlanError, match=r"neither \.jsonl nor \.txt"):
        parse_calibration(str(other), static, {}, "train", "text")
    with pytest.raises(PlanError, match="HF_DATASETS_OFFLINE"):
        parse_calibration("org/data", static, {"HF_DATASETS_OFFLINE": "true"}, "train", "text")


def test_the_worker_reads_jsonl_and_text_samples(tmp_path: Path) -> None:
    jsonl = tmp_path / "cal.jsonl"
    jsonl.write_text('{"text": "one"}\n\n{"text": "two", "id": 2}\n"three"\n')
    assert worker._texts_from_file(jsonl, "text") == ["one", "two", "three"]
    paragraphs = tmp_path / "cal.txt"
    paragraphs.write_text("a line\nmore of it\n\nsecond paragraph\n")
    assert worker._texts_from_file(paragraphs, "text") == ["a line\nmore of it", "second paragraph"]
    lines = tmp_path / "lines.txt"
    lines.write_text("first\nsecond\n\n")
    assert worker._texts_from_file(lines, "text") == ["first", "second"]
    spec = {"calibration": {"kind": "file", "path": str(jsonl)}, "samples": 2}
    assert worker.calibration_texts(spec) == ["one", "two"]
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "ok"}\n{"prompt": "no text"}\n')
    with pytest.raises(worker.WorkerError, match=r'bad.jsonl:2 has no string "text" field'):
        worker._texts_from_file(bad, "text")


def test_a_failing_worker_is_one_line_and_keeps_its_log(tmp_path: Path) -> None:
    """The real worker script under this Python: the calibration file is read before any tool
    is imported, so its error reaches the user as the worker's own one line."""
    bad = tmp_path / "cal.jsonl"
    bad.write_text("{not json\n")
    spec = {
        "tool": "llm-compressor",
        "calibration": {"kind": "file", "path": str(bad), "column": "text"},
        "samples": 4,
        "result": str(tmp_path / "result.json"),
    }
    notes: list[str] = []
    with pytest.raises(PlanError, match=r"cal.jsonl:1 is not JSON .*\(log: .*worker.log\)"):
        run_worker(spec, sys.executable, tmp_path, notes.append)
    assert not (tmp_path / "result.json").exists()


def test_model_identity_hashes_config_and_weights(tmp_path: Path) -> None:
    model = plain_model(tmp_path)
    first = model_identity(model)
    assert first["hashed_files"] == ["config.json", "model.safetensors"]
    assert first["revision"] is None and len(first["sha256"]) == 64
    assert model_identity(model) == first
    (model / "model.safetensors").write_bytes(b"other weights")
    assert model_identity(model)["sha256"] != first["sha256"]
    rev = "0123456789abcdef0123456789abcdef01234567"
    snap = tmp_path / "hub" / "models--org--m" / "snapshots" / rev
    snap.mkdir(parents=True)
    (snap / "config.json").write_text("{}")
    assert model_identity(snap)["revision"] == rev


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        (QUARK_FP8_KV, Quantization("quark", "fp8", 8, 8, "W8A8-FP, static, KV cache fp8")),
        (
            {"quant_method": "quark", "global_quant_config": {"weight": {"dtype": "uint4"}}},
            Quantization("quark", "w4a16", 4, None, "W4A16-INT"),
        ),
        ({"quant_method": "quark", "global_quant_config": {}}, Quantization("quark", "quark")),
    ],
)
def test_bench_run_reads_quark_checkpoints(config: dict[str, Any], expected: Quantization) -> None:
    assert describe(config) == expected
