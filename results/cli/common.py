"""What the project's commands share: one-line errors (bench-run, bench-images, bench-results),
and bench-results' root and warnings."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any, NoReturn

import click

from results.errors import ResultsError, UserError
from results.model.sweeps import is_sweep_dir

ROOT_ENV = "BENCH_RESULTS_ROOT"
DEFAULT_ROOT = "runs"
EXIT_USAGE = 2
# what a shell reports for a process ended by Ctrl-C (128 + SIGINT)
EXIT_INTERRUPTED = 130


def fail(message: str, code: int) -> NoReturn:
    """Print `error: message` as one line on stderr and exit with `code`."""
    # one line, whatever the message holds, so scripts can grep it
    click.echo(f"error: {' '.join(message.split())}", err=True)
    sys.exit(code)


class OneLineCommand(click.Command):
    """A command whose failures end as one `error:` line on stderr, never a traceback.

    An error of `user_errors` exits with its `exit_code` (1 if it has none), a usage error with 2
    (and a pointer to --help), Ctrl-C or an abort with 130. Mixed in before click.Group by
    OneLineGroup.
    """

    # A subclass adds its own error tree: the runner's BenchError cannot derive from UserError,
    # since runner/errors.py travels with the agent into images that have no `results`.
    user_errors: tuple[type[Exception], ...] = (UserError,)

    def main(self, *args: Any, **kwargs: Any) -> Any:
        kwargs["standalone_mode"] = False
        try:
            return super().main(*args, **kwargs)
        except click.exceptions.NoArgsIsHelpError as exc:
            click.echo(exc.ctx.get_help() if exc.ctx else str(exc), err=True)
            sys.exit(EXIT_USAGE)
        except click.UsageError as exc:
            hint = f" (see {exc.ctx.command_path} --help)" if exc.ctx else ""
            fail(f"{exc.format_message()}{hint}", EXIT_USAGE)
        except click.exceptions.Abort:
            fail("aborted", EXIT_INTERRUPTED)
        except self.user_errors as exc:
            fail(str(exc), getattr(exc, "exit_code", 1))


class OneLineGroup(OneLineCommand, click.Group):
    """A group of commands with OneLineCommand's one-line errors."""


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


SWEEP_HELP = "Only the records of this sweep directory (bench-run --plan's sweep-*; default PATHS)."


def sweep_scope(
    sweep: Path | None, paths: tuple[Path, ...], where: tuple[str, ...]
) -> tuple[tuple[Path, ...], tuple[str, ...]]:
    """PATHS and --where narrowed to --sweep DIR: DIR itself when no PATHS, and sweep=NAME."""
    if sweep is None:
        return paths, where
    if not is_sweep_dir(sweep):
        raise click.BadParameter(
            f"{sweep} is not a sweep directory (no sweep.json): give the sweep-* directory "
            "bench-run --plan wrote",
            param_hint="'--sweep'",
        )
    return paths or (sweep,), (*where, f"sweep={sweep.resolve().name}")
