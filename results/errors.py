"""The one error of the results package: every message says what is wrong and what to do."""


class ResultsError(Exception):
    """A problem with the run directories given; the CLI prints it as one line and exits 1."""
