"""`python -m runner.agent --job JOB.json --out-root DIR`: run one job, events as JSON lines."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..rundir import EXIT_BAD_JOB
from .core import run_job
from .util import Events


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="agent", description=__doc__)
    parser.add_argument("--job", required=True, help="the job file ('-' for standard input)")
    parser.add_argument("--out-root", required=True, help="where the run directory is made")
    args = parser.parse_args(argv)
    events = Events(sys.stdout)
    try:
        text = sys.stdin.read() if args.job == "-" else Path(args.job).read_text(encoding="utf-8")
        job = json.loads(text)
    except (OSError, json.JSONDecodeError) as exc:
        events.emit("job_error", reason=f"cannot read the job {args.job}: {exc}")
        return EXIT_BAD_JOB
    return run_job(job, Path(args.out_root).resolve(), events)


if __name__ == "__main__":
    sys.exit(main())
