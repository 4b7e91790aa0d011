"""The agent mounted into any image: its files staged on the host, and the launcher that runs it."""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from pathlib import Path

from runner.errors import PreflightError
from runner.executors.container_paths import AGENT_DIR
from runner.images.resources import agent_sources

SHELL = "/bin/sh"  # the entrypoint: every image vLLM runs in has a POSIX shell
LAUNCHER_NAME = "vllm-bench-launcher"  # $0 of the launcher script, in `ps` and its messages
NO_PYTHON_EXIT = 86  # the launcher's status when no Python in the image can import vllm
NO_PYTHON = "the image has no Python that can import vllm"
IMAGE_ENTRYPOINT = "/opt/bench/entrypoint.sh"  # a catalog image's start-up checks, when present
STAGE_DIR = ".agent"  # under the output root: the one host path the engine is known to see

# Finds a Python that can import vllm (python3, python, then the interpreter of the `vllm` script
# on PATH) and runs this bench-run's agent with it. find_spec, not `import vllm`: importing vLLM
# takes seconds (torch); a found spec is what `python -m vllm...` needs. A catalog image's own
# entrypoint still runs first, for the checks ENV cannot express (TunableOp, the preload).
LAUNCHER = f"""probe='import importlib.util as u, sys; sys.exit(u.find_spec("vllm") is None)'
tried=''
usable() {{
    if ! command -v "$1" >/dev/null 2>&1; then
        tried="$tried${{tried:+, }}$2 (not found)"; return 1
    fi
    if "$1" -c "$probe" >/dev/null 2>&1; then return 0; fi
    tried="$tried${{tried:+, }}$2 (no vllm)"; return 1
}}
interpreter() {{
    IFS= read -r line < "$1" 2>/dev/null || return 1
    case "$line" in '#!'*) ;; *) return 1 ;; esac
    set -- ${{line#??}}
    case "${{1:-}}" in */env) shift ;; esac
    [ -n "${{1:-}}" ] && printf '%s\\n' "$1"
}}
py=''
for name in python3 python; do
    if usable "$name" "$name"; then py=$(command -v "$name"); break; fi
done
if [ -z "$py" ]; then
    if ! script=$(command -v vllm 2>/dev/null); then
        tried="$tried, the vllm script's interpreter (no vllm on PATH)"
    elif ! found=$(interpreter "$script"); then
        tried="$tried, the vllm script's interpreter ($script has no #! line)"
    elif usable "$found" "$found (the interpreter of $script)"; then
        py=$found
    fi
fi
if [ -z "$py" ]; then
    echo "{NO_PYTHON}: tried $tried" >&2
    exit {NO_PYTHON_EXIT}
fi
PYTHONPATH="{AGENT_DIR}${{PYTHONPATH:+:$PYTHONPATH}}"
export PYTHONPATH
if [ -x {IMAGE_ENTRYPOINT} ]; then
    exec {IMAGE_ENTRYPOINT} "$py" -m runner.agent "$@"
fi
exec "$py" -m runner.agent "$@"
"""


def launcher_argv(agent_args: list[str]) -> list[str]:
    """The container's command after the SHELL entrypoint: the launcher, then the agent's args."""
    return ["-c", LAUNCHER, LAUNCHER_NAME, *agent_args]


def agent_digest() -> str:
    """A short hash of the agent's files and the launcher: the staged copy's name."""
    digest = hashlib.sha256(LAUNCHER.encode("utf-8"))
    for relative, source in sorted(agent_sources().items()):
        digest.update(relative.encode("utf-8") + b"\0" + source.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def staged_agent_dir(out_root: Path) -> Path:
    """Where the agent's files are staged for the mount (stage_agent writes them there)."""
    return out_root / STAGE_DIR / agent_digest()


def stage_agent(out_root: Path) -> Path:
    """Copy the agent's files under the output root (once per content); returns the directory.

    Named by content and renamed into place, so concurrent bench-runs sharing an output root
    reuse one copy and a container never sees half of one.
    """
    target = staged_agent_dir(out_root)
    if target.is_dir():
        return target
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
        try:
            for relative, source in agent_sources().items():
                path = staging / relative
                path.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(source, path)
                path.chmod(0o644)
            for directory in (staging, *(p for p in staging.rglob("*") if p.is_dir())):
                directory.chmod(0o755)  # readable by any user the image runs as
            os.replace(staging, target)
        except OSError:
            shutil.rmtree(staging, ignore_errors=True)
            if not target.is_dir():  # another bench-run's rename may have won: that is fine
                raise
    except OSError as exc:
        raise PreflightError(
            f"cannot stage the agent's files in {target.parent}: {exc.strerror or exc}"
        ) from None
    return target
