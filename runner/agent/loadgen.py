"""One load generator per sweep: vLLM's own `vllm bench serve` code, imported once, run per point.

`python -m runner.agent.loadgen` runs with the Python of the vLLM it measures (a venv's or an
image's). It imports `vllm.benchmarks.serve` while the server starts, says `ready`, then runs
each point it is sent through the same `add_cli_args` parser and `main` that `vllm bench serve`
runs: the same JSON, the same metrics, the same `--save-detailed` arrays, without paying vLLM's
import (about 10 s on a small CPU host) once per point.

The protocol is one JSON object per line: requests on stdin (`{"id", "argv", "log", "cwd"}`,
argv being what follows `vllm bench serve`), replies on the stdout it started with (`{"event":
"ready"}` or `{"event": "unavailable", "reason"}`, then `{"id", "returncode", "error",
"seconds"}` per point). Everything vLLM prints goes to the point's log, as in process mode.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from typing import IO, Any

EXIT_UNAVAILABLE = 3  # this vLLM has no importable serving benchmark: use process mode


def _reply(proto: IO[str], **fields: Any) -> None:
    proto.write(json.dumps(fields) + "\n")
    proto.flush()


@contextlib.contextmanager
def _output_to(path: str) -> Iterator[None]:
    """Send file descriptors 1 and 2 (vLLM's prints, tqdm, warnings) to `path` meanwhile."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        yield
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for handle in (fd, *saved):
            os.close(handle)


def _load() -> tuple[Callable[[list[str]], Any], Callable[[Any], Any]]:
    """vLLM's serving-benchmark parser and entry point (the import that takes seconds)."""
    from vllm.benchmarks.serve import add_cli_args, main  # noqa: PLC0415
    from vllm.utils.argparse_utils import FlexibleArgumentParser  # noqa: PLC0415

    def parse(argv: list[str]) -> Any:
        parser = FlexibleArgumentParser(prog="vllm bench serve")  # type: ignore[no-untyped-call]
        add_cli_args(parser)
        return parser.parse_args(argv)

    return parse, main


def _run_point(request: dict[str, Any], parse: Callable[[list[str]], Any], main: Any) -> int:
    """One point, exactly as `vllm bench serve ARGV` would run it; its exit status."""
    os.chdir(str(request["cwd"]))
    try:
        args = parse([str(a) for a in request["argv"]])
    except SystemExit as exc:  # argparse said why on stderr, which is the point's log
        return int(exc.code) if isinstance(exc.code, int) else 2
    main(args)
    return 0


def serve_forever(proto: IO[str], requests: IO[str]) -> int:
    """Import vLLM's benchmark, say ready, run points until stdin closes."""
    started = time.monotonic()
    try:
        parse, main = _load()
    except Exception as exc:  # an older vLLM, or a broken one: the agent falls back
        _reply(proto, event="unavailable", reason=f"{type(exc).__name__}: {exc}")
        return EXIT_UNAVAILABLE
    _reply(proto, event="ready", seconds=round(time.monotonic() - started, 3))
    for line in requests:
        if not line.strip():
            continue
        request = json.loads(line)
        point_started = time.monotonic()
        error = None
        with _output_to(str(request["log"])):
            try:
                code = _run_point(request, parse, main)
            except Exception as exc:  # `vllm bench serve` would exit 1 with this traceback
                traceback.print_exc()
                code, error = 1, f"{type(exc).__name__}: {exc}"
        _reply(
            proto,
            id=request["id"],
            returncode=code,
            error=error,
            seconds=round(time.monotonic() - point_started, 3),
        )
    return 0


def main() -> int:
    # Replies go to the stdout this process started with; anything else that writes to fd 1
    # (vLLM's prints between points) goes to stderr, the load generator's own log.
    proto = os.fdopen(os.dup(1), "w", encoding="utf-8")
    os.dup2(2, 1)
    return serve_forever(proto, sys.stdin)


if __name__ == "__main__":
    sys.exit(main())
