"""Point commands the agent runs with its own Python: the plan cannot know that interpreter."""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

# A point's argv may start with this; the agent puts its own interpreter there (the venv of
# --executor local, the image's python3 in a container), with the runner package importable.
AGENT_PYTHON = "{agent-python}"
# The directory holding the runner package.
_AGENT_ROOT = Path(__file__).resolve().parents[2]


def resolve(argv: Sequence[str], env: Mapping[str, str]) -> tuple[list[str], dict[str, str]]:
    """The command and environment to run: the placeholder replaced, PYTHONPATH extended."""
    if not argv or argv[0] != AGENT_PYTHON:
        return list(argv), dict(env)
    return [sys.executable, *argv[1:]], with_agent_path(env)


def with_agent_path(env: Mapping[str, str]) -> dict[str, str]:
    """env with the runner package importable (first on PYTHONPATH)."""
    path = os.pathsep.join(p for p in (str(_AGENT_ROOT), env.get("PYTHONPATH")) if p)
    return {**env, "PYTHONPATH": path}
