"""The supervisor over a real child process: relay, Ctrl-C once and twice, dead agents, outcomes."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from runner.executors.base import Event, EventSink
from runner.executors.supervisor import Supervisor
from runner.executors.transport import Transport
from runner.plan import EngineConfig, ModelRef, Run
from runner.rundir import EXIT_INTERRUPTED, FAILED, INTERRUPTED, NOT_RUN, OK, partial_dir

RUN_ID = "20261122-031500-tiny-llama-cpu-5c0ffe"
INSIDE = "/inside"  # where the fake agent believes its output root is, as a container would

# The fake agent's toolbox: events on stdout, a run directory as the real agent writes it.
PRELUDE = textwrap.dedent(
    """
    import json, os, signal, sys, time
    from pathlib import Path
    out, run_id = Path(sys.argv[1]), sys.argv[2]
    def emit(event, **fields):
        print(json.dumps({"event": event, **fields}), flush=True)
    def write(directory, status, reason=None, verdict="not-run"):
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "status.json").write_text(json.dumps({
            "format": 1, "run_id": run_id, "status": status, "reason": reason,
            "started": None, "finished": None, "server": None,
            "points": [{"id": "p1", "scenario": "serve", "verdict": verdict,
                        "reasons": [], "result": "raw/p1.json", "log": "logs/p1.log"}]}))
    partial = out / ("." + run_id + ".partial")
    final = out / run_id
    """
)


class ScriptTransport:
    """A Transport over `python -c SCRIPT OUT RUN_ID` in its own session, stderr kept in a file."""

    def __init__(self, script: str, out_root: Path, run_id: str = RUN_ID) -> None:
        self.stderr_file = out_root / f"{run_id}.stderr"
        self.out_root = out_root
        self.interrupts = 0
        self.kills = 0
        self.closed = 0
        with self.stderr_file.open("w") as stderr:
            self.proc = subprocess.Popen(
                [sys.executable, "-c", PRELUDE + textwrap.dedent(script), str(out_root), run_id],
                stdout=subprocess.PIPE,
                stderr=stderr,
                text=True,
                start_new_session=True,
            )

    def lines(self) -> Iterator[str]:
        assert self.proc.stdout is not None
        # Not `yield from`: closing this generator (Ctrl-C in the relay) would close the pipe.
        for line in self.proc.stdout:  # noqa: UP028
            yield line

    def host_event(self, event: Event) -> Event:
        where = event.get("run_dir")
        if isinstance(where, str) and where.startswith(INSIDE + "/"):
            return {**event, "run_dir": str(self.out_root) + where[len(INSIDE) :]}
        return event

    def interrupt(self) -> None:
        self.interrupts += 1
        self.proc.send_signal(signal.SIGINT)

    def kill(self) -> None:
        self.kills += 1
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)

    def wait(self, timeout: float) -> int:
        return self.proc.wait(timeout)

    def stderr_tail(self, count: int) -> list[str]:
        return self.stderr_file.read_text().splitlines()[-count:]

    def log_tail(self, count: int) -> list[str]:
        return []  # like a local child: the supervisor keeps what it relayed

    def end_reason(self, code: int, interrupted: bool) -> str:
        return f"the fake agent ended with {code}" + (" after Ctrl-C" if interrupted else "")

    def fetch_run_dir(self) -> None:
        return None

    def close(self) -> None:
        self.closed += 1
        if self.proc.poll() is None:
            self.kill()
            self.proc.wait()
        assert self.proc.stdout is not None
        self.proc.stdout.close()


def ctrl_c_on(*kinds: str, into: list[Event]) -> EventSink:
    """A sink that records events and, like a user at the keyboard, presses Ctrl-C on these."""

    def sink(event: Event) -> None:
        into.append(event)
        if event.get("event") in kinds:
            raise KeyboardInterrupt

    return sink


def test_a_finished_agent_is_relayed_and_its_outcome_read(tmp_path: Path) -> None:
    transport = ScriptTransport(
        """
        emit("run_started", run_id=run_id, run_dir="/inside/" + run_id)
        print("a line that is not JSON", flush=True)
        print("[1, 2]", flush=True)  # JSON, but not an event: dropped
        write(final, "ok", verdict="ok")
        emit("run_finished", run_id=run_id, status="ok", run_dir="/inside/" + run_id)
        """,
        tmp_path,
    )
    events: list[Event] = []
    outcome = Supervisor(tmp_path).supervise(RUN_ID, transport, events.append)
    assert events == [
        {"event": "run_started", "run_id": RUN_ID, "run_dir": str(tmp_path / RUN_ID)},
        {"event": "agent_output", "line": "a line that is not JSON"},
        {"event": "run_finished", "run_id": RUN_ID, "status": "ok",
         "run_dir": str(tmp_path / RUN_ID)},
    ]  # fmt: skip
    assert (outcome.run_id, outcome.run_dir) == (RUN_ID, tmp_path / RUN_ID)
    assert (outcome.status, outcome.reason, outcome.exit_code) == (OK, None, 0)
    assert (transport.interrupts, transport.kills, transport.closed) == (0, 0, 1)


def test_the_first_ctrl_c_interrupts_and_the_agent_winds_down(tmp_path: Path) -> None:
    transport = ScriptTransport(
        """
        def wind_down(signum, frame):
            write(final, "interrupted", reason="interrupted by Ctrl-C")
            emit("wound_down")
            sys.exit(130)
        signal.signal(signal.SIGINT, wind_down)
        emit("ready")
        while True:
            time.sleep(0.05)
        """,
        tmp_path,
    )
    events: list[Event] = []
    supervisor = Supervisor(tmp_path, interrupt_grace_s=60)
    outcome = supervisor.supervise(RUN_ID, transport, ctrl_c_on("ready", into=events))
    assert [e["event"] for e in events] == ["ready", "interrupting", "wound_down"]
    assert events[1] == {"event": "interrupting", "grace_s": 60}
    assert (outcome.status, outcome.reason) == (INTERRUPTED, "interrupted by Ctrl-C")
    assert outcome.exit_code == EXIT_INTERRUPTED
    assert (transport.interrupts, transport.kills, transport.closed) == (1, 0, 1)


IGNORES_CTRL_C = """
    def ignore(signum, frame):
        emit("ignored_sigint")
    signal.signal(signal.SIGINT, ignore)
    (partial / "raw").mkdir(parents=True)
    write(partial, "running")
    print("still busy", flush=True)
    emit("ready")
    while True:
        time.sleep(0.05)
    """


def test_a_second_ctrl_c_kills_and_the_run_dir_is_finished(tmp_path: Path) -> None:
    transport = ScriptTransport(IGNORES_CTRL_C, tmp_path)
    events: list[Event] = []
    sink = ctrl_c_on("ready", "ignored_sigint", into=events)
    outcome = Supervisor(tmp_path, interrupt_grace_s=60).supervise(RUN_ID, transport, sink)
    reason = f"the fake agent ended with {-signal.SIGKILL} after Ctrl-C"
    assert (transport.interrupts, transport.kills) == (1, 1)
    assert (outcome.status, outcome.reason) == (INTERRUPTED, reason)
    assert outcome.exit_code == EXIT_INTERRUPTED  # however the agent ended, Ctrl-C says 130
    assert outcome.run_dir == tmp_path / RUN_ID and not partial_dir(tmp_path, RUN_ID).exists()
    status = json.loads((outcome.run_dir / "status.json").read_text())
    assert status["status"] == INTERRUPTED and status["finished_by"] == "executor"
    assert status["points"][0]["verdict"] == NOT_RUN
    assert events[-1] == {"event": "run_finished", "run_id": RUN_ID, "status": INTERRUPTED,
                          "reason": reason, "run_dir": str(outcome.run_dir)}  # fmt: skip


def test_the_grace_watchdog_kills_an_agent_that_does_not_wind_down(tmp_path: Path) -> None:
    transport = ScriptTransport(IGNORES_CTRL_C, tmp_path)
    events: list[Event] = []
    supervisor = Supervisor(tmp_path, interrupt_grace_s=0.5)
    outcome = supervisor.supervise(RUN_ID, transport, ctrl_c_on("ready", into=events))
    assert (transport.interrupts, transport.kills) == (1, 1)  # the kill came from the watchdog
    assert "ignored_sigint" in [e["event"] for e in events]
    assert (outcome.status, outcome.exit_code) == (INTERRUPTED, EXIT_INTERRUPTED)
    assert (tmp_path / RUN_ID / "status.json").is_file()


def test_a_killed_agent_has_its_run_dir_finished_with_its_last_words(tmp_path: Path) -> None:
    transport = ScriptTransport(
        """
        (partial / "raw").mkdir(parents=True)
        write(partial, "running")
        print("loading weights", flush=True)
        print("Traceback: out of memory", file=sys.stderr, flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
        """,
        tmp_path,
    )
    events: list[Event] = []
    outcome = Supervisor(tmp_path).supervise(RUN_ID, transport, events.append)
    reason = f"the fake agent ended with {-signal.SIGKILL}"
    assert (outcome.status, outcome.reason) == (FAILED, reason)
    assert outcome.exit_code == -signal.SIGKILL
    assert outcome.run_dir == tmp_path / RUN_ID
    # stderr nobody saw is shown; the relayed output is kept with the unfinished point
    assert {"event": "agent_output", "line": "Traceback: out of memory"} in events
    status = json.loads((outcome.run_dir / "status.json").read_text())
    (point,) = status["points"]
    assert point["verdict"] == FAILED and point["reasons"] == [reason]
    assert point["log_tail"] == ["loading weights"]
    assert transport.closed == 1


def test_the_agent_s_own_error_is_the_reason(tmp_path: Path) -> None:
    transport = ScriptTransport(
        """
        (partial / "raw").mkdir(parents=True)
        write(partial, "running")
        emit("run_error", reason="no space left on /runs: free space and re-run")
        sys.exit(1)
        """,
        tmp_path,
    )
    outcome = Supervisor(tmp_path).supervise(RUN_ID, transport, lambda event: None)
    assert (outcome.status, outcome.exit_code) == (FAILED, 1)
    assert outcome.reason == "no space left on /runs: free space and re-run"


def test_an_agent_that_left_nothing_says_so(tmp_path: Path) -> None:
    transport = ScriptTransport("sys.exit(2)", tmp_path)
    outcome = Supervisor(tmp_path).supervise(RUN_ID, transport, lambda event: None)
    assert (outcome.status, outcome.exit_code) == (FAILED, 2)
    # the transport says why (a container's OOM kill, an image with no Python for the agent)
    assert outcome.reason == "the fake agent ended with 2"


def make_run(run_id: str) -> Run:
    return Run(run_id=run_id, vendor="cpu", model=ModelRef(source="org/model"),
               engine=EngineConfig())  # fmt: skip


@pytest.mark.parametrize("interrupted", [False, True])
def test_a_plan_stops_after_an_interrupted_run(interrupted: bool, tmp_path: Path) -> None:
    script = """
        signal.signal(signal.SIGINT, lambda s, f: sys.exit(130))
        write(final, "ok", verdict="ok")
        emit("ready")
        time.sleep(0.5)
        """
    started: list[str] = []

    def start(run: Run, on_event: EventSink) -> Transport:
        started.append(run.run_id)
        return ScriptTransport(script, tmp_path, run.run_id)

    events: list[dict[str, Any]] = []
    sink = ctrl_c_on("ready", into=events) if interrupted else events.append
    runs = [make_run("run-a"), make_run("run-b")]
    outcomes = Supervisor(tmp_path).run_plan(runs, start, sink)
    if interrupted:
        assert started == ["run-a"]
        assert [o.exit_code for o in outcomes] == [EXIT_INTERRUPTED]
    else:
        assert started == ["run-a", "run-b"]
        assert [(o.run_id, o.status, o.exit_code) for o in outcomes] == [
            ("run-a", OK, 0),
            ("run-b", OK, 0),
        ]
