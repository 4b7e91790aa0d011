"""Pieces of the agent (runner/agent) and of preflight (runner/preflight.py), without vLLM."""

from __future__ import annotations

import json
import socket
import stat
import sys
from pathlib import Path

import pytest

from runner.agent.judge import judge_point
from runner.agent.provenance import interpreter_of
from runner.agent.util import (
    REDACTED,
    error_line,
    is_secret_name,
    redact_argv,
    redact_env,
    secret_values,
)
from runner.errors import PreflightError
from runner.plan import EngineConfig, ModelRef, Plan, Run
from runner.preflight import check_gpus, check_port, find_vllm
from runner.rundir import FAILED, OK, atomic_write_json, tail_lines
from runner.vendors import Gpu

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures" / "vllm-0.32.0-cpu"


# -- judge ---------------------------------------------------------------------------------------


def test_judge_point_exit_status_and_timeout() -> None:
    ok_file = FIXTURES / "serve-ok.json"
    failed = judge_point("serve", ok_file, 20, 1, False, "RuntimeError: boom")
    assert failed.verdict == FAILED
    assert failed.reasons == ["exited with status 1", "RuntimeError: boom"]
    assert judge_point("serve", ok_file, 20, 1, False, None).reasons == ["exited with status 1"]
    timed = judge_point("latency", ok_file, 20, None, True, None)
    assert timed.verdict == FAILED
    assert timed.reasons == ["timed out"]
    assert judge_point("latency", ok_file, 20, -9, True, "Killed").reasons == [
        "timed out",
        "Killed",
    ]
    assert judge_point("serve", ok_file, 20, 0, False, "ERROR ignored").verdict == OK
    assert judge_point("serve", ok_file, 21, 0, False, None).reasons == [
        "completed 20 of 21 prompts"
    ]


# -- redaction -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    ["HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "OPENAI_API_KEY", "MY_APIKEY", "AWS_SECRET", "hf_token"],
)
def test_secret_names(name: str) -> None:
    assert is_secret_name(name)


@pytest.mark.parametrize(
    "name", ["HF_HUB_OFFLINE", "VLLM_CPU_KVCACHE_SPACE", "CUDA_VISIBLE_DEVICES", "PATH", "HOME"]
)
def test_plain_names(name: str) -> None:
    assert not is_secret_name(name)


def test_tokenizers_parallelism_is_not_a_secret() -> None:
    assert not is_secret_name("TOKENIZERS_PARALLELISM")
    env = {"TOKENIZERS_PARALLELISM": "false"}
    assert redact_env(env, secret_values(env)) == env


def test_redact_env_hides_secrets_and_scrubs_values() -> None:
    env = {
        "HF_TOKEN": "hf_abcdef123",
        "OPENAI_API_KEY": "sk-123456",
        "DB_SECRET": "s3cr3t!",
        "HF_HUB_OFFLINE": "1",
        "URL": "https://user:hf_abcdef123@example.com/x",
    }
    original = dict(env)
    out = redact_env(env, secret_values(env))
    assert out == {
        "DB_SECRET": REDACTED,
        "HF_HUB_OFFLINE": "1",
        "HF_TOKEN": REDACTED,
        "OPENAI_API_KEY": REDACTED,
        "URL": "https://user:***@example.com/x",
    }
    assert list(out) == sorted(env)
    assert env == original  # the input is left alone


def test_secret_values_longest_first_and_short_ignored() -> None:
    env = {"A_TOKEN": "abcd", "B_TOKEN": "abcdefgh", "C_TOKEN": "xyz", "PLAIN": "zzzzzz"}
    assert secret_values(env) == ["abcdefgh", "abcd"]


def test_redact_argv() -> None:
    secrets = ["hf_abcdef123"]
    argv = [
        "vllm", "serve", "m",
        "--api-key", "topsecret",
        "--api-key=other",
        "--hf-token", "hf_x",
        "--header", "Authorization: Bearer hf_abcdef123",
        "--port", "8000",
    ]  # fmt: skip
    assert redact_argv(argv, secrets) == [
        "vllm", "serve", "m",
        "--api-key", "***",
        "--api-key=***",
        "--hf-token", "***",
        "--header", "Authorization: Bearer ***",
        "--port", "8000",
    ]  # fmt: skip
    assert argv[4] == "topsecret"  # the input is left alone


def test_redact_argv_flag_at_the_end() -> None:
    assert redact_argv(["vllm", "--api-key"]) == ["vllm", "--api-key"]


# -- files and logs ------------------------------------------------------------------------------


def test_atomic_write_json_replaces_and_leaves_no_temp(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "status.json"
    atomic_write_json(target, {"a": 1})
    assert json.loads(target.read_text()) == {"a": 1}
    atomic_write_json(target, {"b": [1, 2], "p": Path("/x")})
    assert json.loads(target.read_text()) == {"b": [1, 2], "p": "/x"}
    assert target.read_text().endswith("}\n")
    assert sorted(p.name for p in target.parent.iterdir()) == ["status.json"]


def test_atomic_write_json_failure_keeps_old_content(tmp_path: Path) -> None:
    target = tmp_path / "status.json"
    atomic_write_json(target, {"a": 1})

    class Boom:
        def __str__(self) -> str:
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        atomic_write_json(target, {"x": Boom()})
    assert json.loads(target.read_text()) == {"a": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["status.json"]


def test_tail_lines(tmp_path: Path) -> None:
    assert tail_lines(tmp_path / "missing.log") == []
    log = tmp_path / "x.log"
    log.write_text("".join(f"line {i}  \n" for i in range(100)))
    assert tail_lines(log, count=3) == ["line 97", "line 98", "line 99"]
    assert tail_lines(log, count=2, max_bytes=15) == ["98", "line 99"]  # 10 bytes a line
    log.write_bytes(b"ok\n\xff\xfe bad bytes\n")
    assert tail_lines(log) == ["ok", "\ufffd\ufffd bad bytes"]


def test_error_line_picks_the_last_error() -> None:
    lines = [
        "INFO starting",
        "ERROR first problem",
        "Traceback (most recent call last):",
        '  File "x.py", line 1, in <module>',
        "ValueError: the real cause",
        "INFO shutting down",
    ]
    assert error_line(lines) == "ValueError: the real cause"
    assert error_line(["  Traceback (most recent call last):"]) is None
    assert error_line(["INFO all good", "DEBUG fine"]) is None
    assert error_line([]) is None
    assert error_line(["x", "  Killed  ", "y"]) == "Killed"
    assert error_line(["torch.OutOfMemoryError: CUDA out of memory"]) == (
        "torch.OutOfMemoryError: CUDA out of memory"
    )


# -- provenance ----------------------------------------------------------------------------------


def write_script(path: Path, text: str) -> Path:
    path.write_text(text)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def test_interpreter_of(tmp_path: Path) -> None:
    env = write_script(tmp_path / "a", "#!/usr/bin/env python3\nimport sys\n")
    direct = write_script(tmp_path / "b", "#!/opt/venv/bin/python\nimport sys\n")
    flags = write_script(tmp_path / "c", "#! /opt/venv/bin/python3.11 -E\n")
    binary = tmp_path / "d"
    binary.write_bytes(b"\x7fELF\x02\x01\x01\x00")
    assert interpreter_of(str(env)) == "python3"
    assert interpreter_of(str(direct)) == "/opt/venv/bin/python"
    assert interpreter_of(str(flags)) == "/opt/venv/bin/python3.11"
    assert interpreter_of(str(binary)) is None
    assert interpreter_of(str(tmp_path / "missing")) is None
    assert interpreter_of(str(write_script(tmp_path / "e", "#!\n"))) is None


def test_interpreter_of_sh_trampoline(tmp_path: Path) -> None:
    script = write_script(
        tmp_path / "vllm",
        "#!/bin/sh\n'''exec' \"/opt/my venv/bin/python\" \"$0\" \"$@\"\n' '''\nimport sys\n",
    )
    assert interpreter_of(str(script)) in ("/opt/my venv/bin/python", None)


# -- preflight -----------------------------------------------------------------------------------


def test_check_port_taken_and_free() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        with pytest.raises(PreflightError) as info:
            check_port("127.0.0.1", port)
        assert f"port {port} on 127.0.0.1 is in use" in str(info.value)
        assert "--port" in str(info.value)
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        free = probe.getsockname()[1]
    check_port("127.0.0.1", free)  # no exception


def test_find_vllm_explicit(tmp_path: Path) -> None:
    with pytest.raises(PreflightError) as info:
        find_vllm(str(tmp_path / "nope" / "vllm"))
    message = str(info.value)
    assert message.startswith(f"--vllm {tmp_path / 'nope' / 'vllm'}: no executable file there")
    assert "install" in message
    assert "pip install vllm" in message
    not_exec = tmp_path / "vllm-text"
    not_exec.write_text("#!/bin/sh\n")
    with pytest.raises(PreflightError, match="install"):
        find_vllm(str(not_exec))
    with pytest.raises(PreflightError, match="install"):
        find_vllm(str(tmp_path))  # a directory
    good = write_script(tmp_path / "vllm", "#!/bin/sh\nexit 0\n")
    assert find_vllm(str(good)) == str(good.resolve())


def test_find_vllm_beside_interpreter_then_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    venv_bin = tmp_path / "venv" / "bin"
    venv_bin.mkdir(parents=True)
    path_dir = tmp_path / "path"
    path_dir.mkdir()
    monkeypatch.setattr(sys, "executable", str(venv_bin / "python"))
    monkeypatch.setenv("PATH", str(path_dir))
    with pytest.raises(PreflightError, match="no vllm executable on PATH: install"):
        find_vllm(None)
    on_path = write_script(path_dir / "vllm", "#!/bin/sh\nexit 0\n")
    assert find_vllm(None) == str(on_path)
    beside = write_script(venv_bin / "vllm", "#!/bin/sh\nexit 0\n")
    assert find_vllm(None) == str(beside)  # an unactivated venv's own vllm comes first


def gpu_plan(vendor: str, tp: int) -> Plan:
    run = Run(
        run_id=f"r-{vendor}",
        vendor=vendor,
        model=ModelRef(source="org/model"),
        engine=EngineConfig(tp=tp),
    )
    return Plan(runs=(run,))


def h100(index: int) -> Gpu:
    return Gpu(index=index, name="NVIDIA H100", vendor="nvidia")


def test_check_gpus_too_few() -> None:
    with pytest.raises(PreflightError) as info:
        check_gpus(gpu_plan("nvidia", 2), {"nvidia": []})
    assert str(info.value).startswith(
        "--tp 2 needs 2 nvidia GPUs but nvidia-smi found 0 on this host"
    )
    with pytest.raises(PreflightError, match="needs 4 amd GPUs but amd-smi / rocm-smi found 2"):
        check_gpus(gpu_plan("amd", 4), {"amd": [h100(0), h100(1)]})


def test_check_gpus_enough() -> None:
    check_gpus(gpu_plan("nvidia", 2), {"nvidia": [h100(0), h100(1)]})
    check_gpus(gpu_plan("nvidia", 1), {"nvidia": [h100(0), h100(1)]})


def test_check_gpus_cpu_never_raises(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_discovery(vendor: str) -> list[Gpu]:
        raise AssertionError("cpu runs must not look for GPUs")

    monkeypatch.setattr("runner.preflight.discover", no_discovery)
    check_gpus(gpu_plan("cpu", 8), {"cpu": []})
    check_gpus(gpu_plan("cpu", 8))
