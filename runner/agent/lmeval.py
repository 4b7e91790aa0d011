"""The accuracy point: lm-eval against the running server, its results JSON kept as the raw result.

Run as `python -m runner.agent.lmeval --result raw/<point>.json --health URL -- <lm-eval args>`
by the agent's own interpreter (own.py): lm-eval runs where the agent runs. Standard library
only: lm-eval is a separate process, and a missing lm-eval is one line, not a traceback.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from ..rundir import atomic_write_text
from .procs import http_status, kill_group

# The server is asked for /health this often while lm-eval runs; this many misses in a row
# mean it died, and lm-eval (which would retry each request for minutes) is stopped.
POLL_S = 2.0
MISSES = 3
EXIT_NO_LMEVAL = 3
EXIT_SERVER_DIED = 4
EXIT_NO_RESULT = 5


def _say(text: str) -> None:
    print(text, flush=True)


def _watch(proc: subprocess.Popen[bytes], health: str | None) -> int:
    """Wait for lm-eval; stop it when the server stops answering. Its exit status, or ours."""
    misses = 0
    while True:
        try:
            return proc.wait(timeout=POLL_S)
        except subprocess.TimeoutExpired:
            pass
        if health is None:
            continue
        misses = 0 if http_status(health) == 200 else misses + 1
        if misses >= MISSES:
            kill_group(proc, grace_s=10.0)
            _say(
                f"error: the server stopped answering {health} during the evaluation "
                "(see server.log); lm-eval was stopped"
            )
            return EXIT_SERVER_DIED


def newest_results(folder: Path) -> Path | None:
    """lm-eval's aggregated results file under its output folder (results_<date>.json)."""
    found = sorted(folder.rglob("results_*.json"), key=lambda p: p.stat().st_mtime)
    return found[-1] if found else None


def _keep(found: Path, result: Path) -> None:
    """lm-eval's JSON, checked and moved whole to the point's raw result (atomically)."""
    data = json.loads(found.read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise ValueError(f"{found} does not hold a JSON object")
    atomic_write_text(result, json.dumps(data, indent=2, sort_keys=True))


def lmeval_env(env: dict[str, str]) -> dict[str, str]:
    """Offline for the hub is offline for its datasets too (the plan refused hub tasks then)."""
    out = dict(env)
    if out.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on"):
        out["HF_DATASETS_OFFLINE"] = "1"
    out.setdefault("TOKENIZERS_PARALLELISM", "false")
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m runner.agent.lmeval")
    parser.add_argument("--result", required=True, help="where the results JSON is kept")
    parser.add_argument("--health", help="the server's /health URL, watched while lm-eval runs")
    parser.add_argument("lmeval", nargs=argparse.REMAINDER, help="-- then lm-eval's arguments")
    args = parser.parse_args(argv)
    rest = args.lmeval[1:] if args.lmeval[:1] == ["--"] else args.lmeval
    if importlib.util.find_spec("lm_eval") is None:
        _say(
            f"error: lm-eval is not installed for {sys.executable}: install it where the agent "
            "runs (pip install 'vllm-bench-images[eval]', or lm-eval[api] in the image)"
        )
        return EXIT_NO_LMEVAL
    result = Path(args.result)
    work = result.with_name(f"{result.stem}.lmeval")
    shutil.rmtree(work, ignore_errors=True)
    command = [sys.executable, "-m", "lm_eval", "run", *rest, "--output_path", str(work)]
    _say("lm-eval: " + " ".join(command))
    started = time.monotonic()
    proc = subprocess.Popen(command, env=lmeval_env(dict(os.environ)), start_new_session=True)
    try:
        code = _watch(proc, args.health)
    except BaseException:
        kill_group(proc, grace_s=10.0)
        raise
    if code == EXIT_SERVER_DIED:
        return code  # its line is the last: the point's reason
    _say(f"lm-eval exited with status {code} after {time.monotonic() - started:.1f} s")
    if code != 0:
        return code
    found = newest_results(work)
    if found is None:
        _say(f"error: lm-eval wrote no results_*.json under {work}")
        return EXIT_NO_RESULT
    _keep(found, result)
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
