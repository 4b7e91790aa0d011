"""The one-line error helper every command shares (bench-run, bench-images, bench-results)."""

from __future__ import annotations

import click
import pytest
from click.testing import CliRunner

from results.cli.common import OneLineGroup
from results.errors import ResultsError, UserError


class _Refused(UserError):
    exit_code = 2


class _Foreign(Exception):
    """An error tree of its own (as the runner's BenchError), with an exit code."""

    exit_code = 3


class _Group(OneLineGroup):
    user_errors = (UserError, _Foreign)


def _cli(error: BaseException | None) -> click.Group:
    @click.group(cls=_Group)
    def main() -> None:
        """A group."""

    @main.command()
    @click.option("--count", type=int)
    def go(count: int | None) -> None:
        if error is not None:
            raise error

    return main


@pytest.mark.parametrize(
    ("error", "args", "code", "line"),
    [
        (ResultsError("no run\n  here"), ["go"], 1, "error: no run here"),
        (_Refused("bad flag"), ["go"], 2, "error: bad flag"),
        (_Foreign("from elsewhere"), ["go"], 3, "error: from elsewhere"),
        (click.exceptions.Abort(), ["go"], 130, "error: aborted"),
        (None, ["go", "--count", "x"], 2, "(see main go --help)"),
    ],
)
def test_errors_end_as_one_line(
    error: BaseException | None, args: list[str], code: int, line: str
) -> None:
    result = CliRunner().invoke(_cli(error), args, prog_name="main")
    assert result.exit_code == code
    assert line in result.stderr and len(result.stderr.splitlines()) == 1


def test_other_errors_are_not_hidden() -> None:
    result = CliRunner().invoke(_cli(KeyError("bug")), ["go"], prog_name="main")
    assert isinstance(result.exception, KeyError)
