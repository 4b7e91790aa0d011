"""What every bench-results command shares: the results root, warnings and the one-line error."""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn, ParamSpec, TypeVar

import click

from results.errors import ResultsError

ROOT_ENV = "BENCH_RESULTS_ROOT"
DEFAULT_ROOT = "runs"

P = ParamSpec("P")
R = TypeVar("R")


def default_root() -> Path:
    """The results root when no path is given: $BENCH_RESULTS_ROOT, else ./runs."""
    return Path(os.environ.get(ROOT_ENV) or DEFAULT_ROOT)


def paths_or_root(paths: tuple[Path, ...]) -> list[Path]:
    """The paths given, or the default root (which must exist: say how to point elsewhere)."""
    if paths:
        return list(paths)
    root = default_root()
    if not root.is_dir():
        raise ResultsError(
            f"no results root {root}: give run directories or a folder of them, or set {ROOT_ENV}"
        )
    return [root]


def warn(message: str) -> None:
    """One warning line on stderr; data stays on stdout."""
    click.echo(f"warning: {' '.join(message.split())}", err=True)


def _fail(message: str, code: int) -> NoReturn:
    # one line, whatever the message holds, so scripts can grep it
    click.echo(f"error: {' '.join(message.split())}", err=True)
    sys.exit(code)


class OneLineErrors(click.Group):
    """Usage errors (exit 2) and ResultsErrors (exit 1) end as one line, never a traceback."""

    def main(self, *args: Any, **kwargs: Any) -> Any:
        kwargs["standalone_mode"] = False
        try:
            return super().main(*args, **kwargs)
        except click.exceptions.NoArgsIsHelpError as exc:
            click.echo(exc.ctx.get_help() if exc.ctx else str(exc), err=True)
            sys.exit(2)
        except click.UsageError as exc:
            hint = f" (see {exc.ctx.command_path} --help)" if exc.ctx else ""
            _fail(f"{exc.format_message()}{hint}", 2)
        except click.exceptions.Abort:
            _fail("aborted", 130)
        except ResultsError as exc:
            _fail(str(exc), 1)


def one_line_errors(command: Callable[P, R]) -> Callable[P, R]:
    """Turn a ResultsError into one `error: ...` line and exit status 1 (for a command run alone;
    under the bench-results group, OneLineErrors does the same)."""

    @functools.wraps(command)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return command(*args, **kwargs)
        except ResultsError as exc:
            _fail(str(exc), 1)

    return wrapper
