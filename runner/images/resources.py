"""Where the catalog, the templates and the vLLM-CPU shim are: in a checkout or in a wheel."""

from __future__ import annotations

from pathlib import Path

from runner.errors import BenchError

_HERE = Path(__file__).resolve().parent
_CHECKOUT = _HERE.parent.parent


def _find(packaged: str, top_level: str) -> Path:
    # A wheel carries the directory inside runner/images (pyproject's package-dir); a checkout
    # (and an editable install) has it at the repository's top level.
    for candidate in (_HERE / packaged, _CHECKOUT / top_level):
        if candidate.is_dir():
            return candidate
    raise BenchError(f"{top_level}/ is missing from this installation: reinstall vllm-bench-images")


def catalog_dir() -> Path:
    """The image catalog: one YAML file per variant."""
    return _find("catalog_files", "images")


def templates_dir() -> Path:
    """The Jinja templates of the Dockerfiles and entrypoint scripts."""
    return _find("templates", "templates")


def shim_script() -> Path:
    """scripts/vllm_cpu_shim.py, copied into CPU build contexts (one copy of the logic)."""
    return _find("shim", "scripts") / "vllm_cpu_shim.py"


# The agent and everything it imports, all standard library only: one line per file or package.
AGENT_FILES = (
    "runner/__init__.py",
    "runner/errors.py",
    "runner/rundir.py",  # the run-directory contract
    "runner/vendors/*.py",  # GPU discovery
    "runner/agent/*.py",
    "runner/scenarios/__init__.py",  # the scenario registry, through which judges are reached
    "runner/scenarios/judges/*.py",  # each scenario's judge
)


def agent_sources() -> dict[str, Path]:
    """The agent's files by their path in the build context's `bench/` (AGENT_FILES)."""
    top = _HERE.parent.parent  # the directory that holds the runner package
    return {
        path.relative_to(top).as_posix(): path
        for pattern in AGENT_FILES
        for path in sorted(top.glob(pattern))
    }
