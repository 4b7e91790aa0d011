"""procs.spawn's children: pinned, killed with the agent, and started with no preexec_fn."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from runner.agent.procs import spawn

ROOT = Path(__file__).resolve().parents[2]
linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux prctl")


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as handle:
            return handle.read().split(") ", 1)[1][0] != "Z"
    except FileNotFoundError:
        return False


@linux_only
def test_child_dies_with_the_agent(tmp_path: Path) -> None:
    # A stand-in agent spawns a long sleep, says its pid, and is then SIGKILLed: the sleep
    # gets SIGTERM from the kernel (PR_SET_PDEATHSIG, set by the exec wrapper).
    agent = textwrap.dedent(
        f"""
        import os, sys, time
        from pathlib import Path
        sys.path.insert(0, {str(ROOT)!r})
        from runner.agent.procs import spawn
        proc = spawn(["sleep", "300"], cwd=Path({str(tmp_path)!r}), env=os.environ,
                     log=Path({str(tmp_path / "child.log")!r}))
        print(proc.pid, flush=True)
        time.sleep(300)
        """
    )
    parent = subprocess.Popen([sys.executable, "-c", agent], stdout=subprocess.PIPE, text=True)
    assert parent.stdout is not None
    child = int(parent.stdout.readline())
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:  # the wrapper has exec'd sleep
        with open(f"/proc/{child}/cmdline", "rb") as handle:
            if handle.read().split(b"\0")[0] == b"sleep":
                break
        time.sleep(0.05)
    assert _alive(child)
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    deadline = time.monotonic() + 10
    while _alive(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    alive = _alive(child)
    if alive:
        os.kill(child, signal.SIGKILL)
    assert not alive, "the child outlived its agent"


@linux_only
def test_missing_command_is_one_line_in_its_log(tmp_path: Path) -> None:
    log = tmp_path / "missing.log"
    proc = spawn(["no-such-command-here"], cwd=tmp_path, env=os.environ, log=log)
    assert proc.wait(timeout=30) == 127
    text = log.read_text(encoding="utf-8").strip()
    assert text == "cannot start no-such-command-here: No such file or directory"


def test_spawn_passes_no_preexec_fn() -> None:
    # Python code between fork and exec can deadlock beside the probe's sampling thread.
    source = (ROOT / "runner" / "agent").glob("*.py")
    assert not [p.name for p in source if "preexec_fn=" in p.read_text(encoding="utf-8")]
