"""The agent mounted into any image: the launcher's choice of Python, the staged files, the spec."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from runner.executors.agent_mount import (
    LAUNCHER,
    LAUNCHER_NAME,
    NO_PYTHON,
    NO_PYTHON_EXIT,
    SHELL,
    stage_agent,
    staged_agent_dir,
)
from runner.executors.container_paths import AGENT_DIR, MountSpec, map_paths
from runner.executors.container_spec import build_spec
from runner.executors.docker_transport import DockerTransport
from runner.images.resources import agent_sources
from runner.plan import EngineConfig, ModelRef, Run
from runner.vendors import PROFILES


def launch(
    bin_dir: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """The launcher under sh with only `bin_dir` on PATH (it needs nothing but sh's builtins)."""
    environment = {"PATH": str(bin_dir), **(env or {})}
    return subprocess.run(
        [SHELL, "-c", LAUNCHER, LAUNCHER_NAME, *args],
        capture_output=True, text=True, env=environment, check=False, timeout=60,
    )  # fmt: skip


def fake_python(path: Path, has_vllm: bool) -> None:
    """A `python` that answers the launcher's probe, then prints how it was called."""
    probe_exit = 0 if has_vllm else 1
    path.write_text(
        "#!/bin/sh\n"
        f'if [ "$1" = "-c" ]; then exit {probe_exit}; fi\n'
        'echo "ran $0 $* PYTHONPATH=$PYTHONPATH"\n'
    )
    path.chmod(0o755)


@pytest.fixture
def bin_dir(tmp_path: Path) -> Path:
    where = tmp_path / "bin"
    where.mkdir()
    return where


def test_no_python_is_one_line_and_a_distinct_status(bin_dir: Path) -> None:
    result = launch(bin_dir, "--job", "x")
    assert result.returncode == NO_PYTHON_EXIT
    assert result.stderr.strip().startswith(f"{NO_PYTHON}: tried python3 (not found)")


def test_python3_without_vllm_is_passed_over_for_python(bin_dir: Path) -> None:
    fake_python(bin_dir / "python3", has_vllm=False)
    fake_python(bin_dir / "python", has_vllm=True)
    result = launch(bin_dir, "--job", "/runs/.jobs/r.json", env={"PYTHONPATH": "/srv/lib"})
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == (
        f"ran {bin_dir}/python -m runner.agent --job /runs/.jobs/r.json "
        f"PYTHONPATH={AGENT_DIR}:/srv/lib"
    )


def test_the_vllm_script_s_interpreter_is_the_last_resort(bin_dir: Path, tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    venv.mkdir()
    fake_python(venv / "python", has_vllm=True)
    fake_python(bin_dir / "python3", has_vllm=False)
    (bin_dir / "vllm").write_text(f"#!{venv}/python\nimport vllm\n")
    (bin_dir / "vllm").chmod(0o755)
    result = launch(bin_dir, "--out-root", "/runs")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"ran {venv}/python -m runner.agent --out-root /runs")


def test_a_found_python_with_no_vllm_is_said(bin_dir: Path) -> None:
    fake_python(bin_dir / "python3", has_vllm=False)
    (bin_dir / "vllm").write_text("not a script\n")
    (bin_dir / "vllm").chmod(0o755)
    result = launch(bin_dir)
    assert result.returncode == NO_PYTHON_EXIT
    line = result.stderr.strip()
    assert line.startswith(f"{NO_PYTHON}: tried python3 (no vllm)")
    assert "has no #! line" in line and "\n" not in line


def test_the_real_agent_runs_from_the_staged_copy(tmp_path: Path) -> None:
    staged = stage_agent(tmp_path / "runs")
    assert staged == staged_agent_dir(tmp_path / "runs")
    assert sorted(p.relative_to(staged).as_posix() for p in staged.rglob("*.py")) == sorted(
        agent_sources()
    )
    assert stage_agent(tmp_path / "runs") == staged, "one copy per content, reused"
    # the staged agent alone (no checkout on the path) starts with a plain Python
    result = subprocess.run(
        [sys.executable, "-m", "runner.agent", "--help"],
        cwd=tmp_path, capture_output=True, text=True, check=False, timeout=60,
        env={**os.environ, "PYTHONPATH": str(staged)},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "--job" in result.stdout


def test_every_container_runs_the_mounted_agent_through_the_launcher(tmp_path: Path) -> None:
    run = Run(run_id="r1", vendor="cpu", model=ModelRef(source="org/model"), engine=EngineConfig())
    agent = staged_agent_dir(Path("/srv/runs"))
    paths = map_paths(run, PROFILES["cpu"], run_dir_host=Path("/srv/runs"), agent_dir_host=agent)
    spec = build_spec(run, image="vllm/vllm-openai:v0.31.0", profile=PROFILES["cpu"], paths=paths)
    assert MountSpec("bind", str(agent), AGENT_DIR, True) in spec.mounts
    assert spec.entrypoint == SHELL
    assert list(spec.command) == [
        "-c", LAUNCHER, LAUNCHER_NAME, "--job", "/runs/.jobs/r1.json", "--out-root", "/runs",
    ]  # fmt: skip


class _Container:
    def __init__(self, stderr: str) -> None:
        self.stderr = stderr
        self.attrs: dict[str, object] = {"State": {}}

    def logs(self, **_: object) -> bytes:
        return self.stderr.encode()

    def reload(self) -> None:
        return None


def test_the_launcher_s_line_is_the_run_s_reason() -> None:
    run = Run(run_id="r1", vendor="cpu", model=ModelRef(source="org/model"), engine=EngineConfig())
    paths = map_paths(run, PROFILES["cpu"], run_dir_host=Path("/srv/runs"))
    spec = build_spec(run, image="thirdparty/x:1", profile=PROFILES["cpu"], paths=paths)
    said = f"{NO_PYTHON}: tried python3 (not found), python (not found)"
    transport = DockerTransport(
        None, _Container(f"noise\n{said}\n"), spec,  # type: ignore[arg-type]
        out_root=Path("/srv/runs"), run_id="r1", keep=False, on_event=lambda event: None,
    )  # fmt: skip
    reason = transport.end_reason(NO_PYTHON_EXIT, False)
    assert reason.startswith(said) and "thirdparty/x:1" in reason
    assert transport.end_reason(3, False).startswith("the container exited with status 3")
