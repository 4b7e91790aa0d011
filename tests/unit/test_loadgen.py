"""The sweep's load generator: its protocol, and the fall-back where vLLM cannot be imported."""

from __future__ import annotations

import json
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from runner.agent.client import LoadGenerator, LoadGenUnavailable, loadgen_python, serve_args

AGENT_ROOT = Path(__file__).resolve().parents[2]


def test_serve_args_are_what_follows_vllm_bench_serve() -> None:
    assert serve_args(["/v/bin/vllm", "bench", "serve", "--seed", "0"]) == ["--seed", "0"]
    assert serve_args(["vllm", "bench", "latency", "--seed", "0"]) is None
    assert serve_args(["python", "-c", "pass"]) is None


def _python_without_site(tmp_path: Path) -> Path:
    """A real interpreter that cannot import vLLM: this Python with site-packages turned off."""
    wrapper = tmp_path / "python-no-site"
    wrapper.write_text(f'#!/bin/sh\nexec {sys.executable} -S "$@"\n')
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IXUSR)
    return wrapper


def test_a_python_without_vllm_says_why_it_cannot_run(tmp_path: Path) -> None:
    loadgen = LoadGenerator(
        str(_python_without_site(tmp_path)), cwd=tmp_path, env={}, log=tmp_path / "lg.log"
    )
    loadgen.start()
    with pytest.raises(LoadGenUnavailable, match="vllm"):
        loadgen.wait_ready(60)
    assert not loadgen.alive


def test_the_protocol_reply_lines_stay_apart_from_printed_output(tmp_path: Path) -> None:
    # The process side alone, with no vLLM: it says "unavailable" on the protocol stream and
    # exits 3; nothing else reaches that stream.
    proc = subprocess.run(
        [sys.executable, "-S", "-m", "runner.agent.loadgen"],
        cwd=AGENT_ROOT,
        input="",
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 3
    (line,) = proc.stdout.splitlines()
    reply = json.loads(line)
    assert reply["event"] == "unavailable" and "vllm" in reply["reason"]


def test_loadgen_python_reads_the_console_scripts_interpreter(tmp_path: Path) -> None:
    script = tmp_path / "vllm"
    script.write_text(f"#!{sys.executable}\nprint('hi')\n")
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    assert loadgen_python(str(script)) == sys.executable
    assert loadgen_python(str(tmp_path / "missing")) is None
