"""The one error tree of the runner: every message says what is wrong and what to do."""


class BenchError(Exception):
    """A failure the user can act on; the CLI prints it as one line and exits with `exit_code`."""

    exit_code = 1


class PlanError(BenchError):
    """Bad input found while validating the plan (nothing has started)."""

    exit_code = 2


class PreflightError(BenchError):
    """The host cannot run the plan as asked (missing vLLM, too few GPUs, a rejected flag)."""


class RunFailed(BenchError):
    """The run finished, but at least one point failed or the run was interrupted."""
