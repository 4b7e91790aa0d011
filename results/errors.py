"""The errors users see: each a one-line message saying what is wrong and what to do."""


class UserError(Exception):
    """A failure the user can act on; a command line prints it as one line and exits `exit_code`.

    The base of every such error in the project (results' own and the runner's BenchError), so
    that one click helper (results.cli.common) turns any of them into an `error: ...` line.
    """

    exit_code = 1


class ResultsError(UserError):
    """A problem with the run directories given; the CLI prints it as one line and exits 1."""
