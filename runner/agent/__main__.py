"""`python -m runner.agent --job JOB.json --out-root DIR`: run one job, events as JSON lines.

In a Kubernetes pod: `--jobs-dir DIR` (the job of $JOB_COMPLETION_INDEX) and, after the run,
`--collect-port PORT --hold-s S` (the run directory served until collected; see pod.py).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..rundir import EXIT_BAD_JOB
from . import pod
from .core import run_job
from .util import Events


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="agent", description=__doc__)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--job", help="the job file ('-' for standard input)")
    source.add_argument("--jobs-dir", help="a pod's jobs: the file of $JOB_COMPLETION_INDEX")
    parser.add_argument("--out-root", required=True, help="where the run directory is made")
    parser.add_argument("--collect-port", type=int, help="after the run, serve it on this port")
    parser.add_argument(
        "--hold-s", type=pod.hold_s_from, default=None, help="how long to wait to be collected"
    )
    return parser


def _job_source(args: argparse.Namespace) -> str:
    """Where the job comes from: a file, '-' (standard input), or the pod's index's file."""
    if args.jobs_dir is not None:
        return str(pod.job_path(Path(args.jobs_dir), pod.pod_environ()))
    return str(args.job)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    events = Events(sys.stdout)
    out_root = Path(args.out_root).resolve()
    run_id = ""
    source = args.job or args.jobs_dir
    try:
        source = _job_source(args)
        text = sys.stdin.read() if source == "-" else Path(source).read_text(encoding="utf-8")
        job = json.loads(text)
        run_id = str(job["run"]["run_id"]) if isinstance(job, dict) else ""
    except pod.PodJobError as exc:
        events.emit("job_error", reason=str(exc))
        code = EXIT_BAD_JOB
    except (OSError, json.JSONDecodeError, KeyError, TypeError) as exc:
        events.emit("job_error", reason=f"cannot read the job {source}: {exc}")
        code = EXIT_BAD_JOB
    else:
        code = run_job(job, out_root, events)
    if args.collect_port is not None:
        hold = pod.DEFAULT_HOLD_S if args.hold_s is None else args.hold_s
        found = pod.run_dir_of(out_root, run_id) if run_id else None
        pod.serve_run_dir(found, args.collect_port, hold, events, code)
    return code


if __name__ == "__main__":
    sys.exit(main())
