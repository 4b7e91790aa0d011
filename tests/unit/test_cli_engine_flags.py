"""bench-run with the source documents' old engine flags, a draft model and a quantized checkpoint:
bad input is one `error: ` line and exit status 2; what is translated is said and run as said."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.unit.test_cli_input import PLAN_ERROR, assert_one_error_line, invoke

GPTQ = {"quant_method": "gptq", "bits": 4, "group_size": 128, "desc_act": False, "sym": True}
FP8 = {"quant_method": "fp8", "activation_scheme": "dynamic"}


@pytest.fixture(autouse=True)
def no_gpu_tools(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No nvidia-smi / amd-smi / rocm-smi / vllm on PATH, whatever host runs the tests."""
    empty = tmp_path / "empty-path"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))


def checkpoint(root: Path, name: str, quant: dict[str, Any] | None = None) -> Path:
    directory = root / name
    directory.mkdir()
    config: dict[str, Any] = {"max_position_embeddings": 2048}
    if quant is not None:
        config["quantization_config"] = quant
    (directory / "config.json").write_text(json.dumps(config))
    return directory


def run_args(model: Path, *extra: str) -> list[str]:
    return ["--vendor", "cpu", "--model", str(model), "--input-len", "64", "--output-len", "32",
            "--qps", "1", "--num-prompts", "4", *extra]  # fmt: skip


@pytest.mark.parametrize(
    ("flag", "fragments"),
    [
        ("swap-space=16", ("--engine-arg swap-space: current vLLM has no --swap-space", "#36216")),
        ("num-scheduler-steps=10", ("no --num-scheduler-steps", "--async-scheduling")),
        ("use-v2-block-manager=x", ()),  # dropped, not refused: see the dry run below
        ("max-seq-len-to-capture=8192", ("--max-cudagraph-capture-size", "#25543")),
        ("device=cuda", ("no --device", "#21349")),
        ("num-speculative-tokens=5", ("needs speculative-model",)),
        ("speculative-config={bad", ("speculative-config is not JSON",)),
    ],
)
def test_removed_or_bad_engine_flags(tmp_path: Path, flag: str, fragments: tuple[str, ...]) -> None:
    model = checkpoint(tmp_path, "m")
    result = invoke(run_args(model, "--engine-arg", flag, "--dry-run"), tmp_path / "runs")
    if not fragments:
        assert result.exit_code == 0, result.stderr
        return
    assert_one_error_line(result, PLAN_ERROR, *fragments)
    assert not (tmp_path / "runs").exists()


def test_a_missing_draft_directory_is_refused(tmp_path: Path) -> None:
    model = checkpoint(tmp_path, "m")
    args = run_args(
        model, "--engine-arg", f"speculative-model={tmp_path / 'nope'}",
        "--engine-arg", "num-speculative-tokens=3",
    )  # fmt: skip
    assert_one_error_line(
        invoke(args, tmp_path / "runs"), PLAN_ERROR,
        "does not exist: check --engine-arg speculative-config's model",
    )  # fmt: skip


def test_a_draft_directory_without_config_json_is_refused(tmp_path: Path) -> None:
    model, draft = checkpoint(tmp_path, "m"), tmp_path / "draft"
    draft.mkdir()
    args = run_args(model, "--engine-arg", f'speculative-config={{"model": "{draft}"}}')
    assert_one_error_line(invoke(args, tmp_path / "runs"), PLAN_ERROR, "has no config.json")


@pytest.mark.parametrize(
    ("quant", "asked", "fragments"),
    [
        (GPTQ, "awq", ("--quantization awq contradicts the checkpoint", "quant_method gptq")),
        (FP8, "gptq", ("--quantization gptq contradicts the checkpoint", "quant_method fp8")),
        (None, "gptq", ("--quantization gptq needs a GPTQ checkpoint",)),
    ],
)
def test_a_quantization_the_checkpoint_contradicts(
    tmp_path: Path, quant: dict[str, Any] | None, asked: str, fragments: tuple[str, ...]
) -> None:
    model = checkpoint(tmp_path, "m", quant)
    result = invoke(run_args(model, "--quantization", asked, "--dry-run"), tmp_path / "runs")
    assert_one_error_line(result, PLAN_ERROR, *fragments)


def test_a_refusal_after_a_translation_is_still_the_only_line(tmp_path: Path) -> None:
    model = checkpoint(tmp_path, "m", GPTQ)
    args = run_args(model, "--engine-arg", "disable-log-requests", "--quantization", "awq")
    assert_one_error_line(invoke(args, tmp_path / "runs"), PLAN_ERROR, "contradicts")


def test_the_dry_run_says_what_it_translated_and_runs_it(tmp_path: Path) -> None:
    model, draft = checkpoint(tmp_path, "m", GPTQ), checkpoint(tmp_path, "draft")
    args = run_args(
        model, "--quantization", "gptq", "--scenario", "serve", "--scenario", "latency",
        "--engine-arg", "disable-log-requests",
        "--engine-arg", f"speculative-model={draft}", "--engine-arg", "num-speculative-tokens=5",
        "--dry-run",
    )  # fmt: skip
    result = invoke(args, tmp_path / "runs")
    assert result.exit_code == 0, result.stderr
    notes = result.stderr.splitlines()
    assert any(n.startswith("note: --engine-arg --disable-log-requests: dropped") for n in notes)
    assert any("passing --speculative-config" in n for n in notes)
    assert any(n.startswith("warning: --quantization gptq on a GPTQ checkpoint") for n in notes)
    config = json.dumps({"model": str(draft), "num_speculative_tokens": 5})
    assert result.stdout.count(f"--speculative-config '{config}'") == 2  # server and latency
    assert "disable-log-requests" not in result.stdout
