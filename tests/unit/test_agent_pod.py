"""The agent's pod side: its job by completion index, and its run directory served as a tar."""

from __future__ import annotations

import io
import json
import os
import socket
import subprocess
import sys
import tarfile
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from runner.agent import pod
from runner.agent.pod_contract import COLLECT_PATH_DONE, COLLECT_PATH_TAR, INDEX_VAR
from runner.agent.util import Events
from runner.rundir import EXIT_BAD_JOB

ROOT = Path(__file__).resolve().parents[2]
BINARY = bytes(range(256)) * 64 + b"\xff\xfe not utf-8 \r\n\x00"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _agent(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "runner.agent", *args],
        capture_output=True, text=True, timeout=60, cwd=ROOT, env={**os.environ, **env},
        check=False,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("index", "said"),
    [
        (None, f"${INDEX_VAR} is not set"),
        ("x1", f"${INDEX_VAR}='x1' is not a completion index"),
        ("-1", f"${INDEX_VAR}=-1 is not a completion index"),
    ],
)
def test_a_missing_or_bad_index_is_a_job_error(
    tmp_path: Path, index: str | None, said: str
) -> None:
    env = {} if index is None else {INDEX_VAR: index}
    if index is None:
        os.environ.pop(INDEX_VAR, None)
    done = _agent(["--jobs-dir", str(tmp_path), "--out-root", str(tmp_path / "out")], env)
    assert done.returncode == EXIT_BAD_JOB
    event = json.loads(done.stdout.splitlines()[0])
    assert event["event"] == "job_error" and said in event["reason"]


def test_the_index_picks_its_job_file(tmp_path: Path) -> None:
    (tmp_path / "job-3.json").write_text("{not json", encoding="utf-8")
    done = _agent(["--jobs-dir", str(tmp_path), "--out-root", str(tmp_path)], {INDEX_VAR: "3"})
    assert done.returncode == EXIT_BAD_JOB
    assert "job-3.json" in json.loads(done.stdout.splitlines()[0])["reason"]
    assert pod.job_path(tmp_path, {INDEX_VAR: "12"}) == tmp_path / "job-12.json"


def _serve(
    run_dir: Path | None, hold_s: float
) -> tuple[int, threading.Thread, list[bool], io.StringIO]:
    port = _free_port()
    out = io.StringIO()
    result: list[bool] = []
    thread = threading.Thread(
        target=lambda: result.append(pod.serve_run_dir(run_dir, port, hold_s, Events(out), 0)),
        daemon=True,
    )
    thread.start()
    for _ in range(100):
        if "collect_ready" in out.getvalue():
            break
        time.sleep(0.05)
    return port, thread, result, out


def test_the_run_directory_is_served_as_a_binary_safe_tar_until_collected(tmp_path: Path) -> None:
    run_dir = tmp_path / "run-1"
    (run_dir / "raw").mkdir(parents=True)
    (run_dir / "raw" / "blob.bin").write_bytes(BINARY)
    (run_dir / "status.json").write_text('{"status": "ok"}', encoding="utf-8")
    port, thread, result, out = _serve(run_dir, 60)
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{COLLECT_PATH_TAR}") as reply:
        data = reply.read()
    with tarfile.open(fileobj=io.BytesIO(data), mode="r|") as tar:
        tar.extractall(tmp_path / "got", filter="data")
    assert (tmp_path / "got" / "run-1" / "raw" / "blob.bin").read_bytes() == BINARY
    assert thread.is_alive(), "the pod holds until it is told the copy is home"
    request = urllib.request.Request(f"http://127.0.0.1:{port}{COLLECT_PATH_DONE}", method="POST")
    with urllib.request.urlopen(request) as reply:  # noqa: S310 (http, built above)
        assert reply.status == 200
    thread.join(10)
    assert result == [True]
    events = [json.loads(line) for line in out.getvalue().splitlines()]
    assert events[0]["event"] == "collect_ready" and events[0]["exit_code"] == 0
    assert events[-1] == {**events[-1], "event": "collect_end", "collected": True}


def test_nobody_collecting_within_the_hold_time_ends_it(tmp_path: Path) -> None:
    started = time.monotonic()
    _, thread, result, _ = _serve(None, 0.5)
    thread.join(10)
    assert result == [False] and time.monotonic() - started < 10
