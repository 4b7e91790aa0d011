"""Hugging Face models on the host: a repo id becomes a snapshot directory of the HF cache."""

from __future__ import annotations

import dataclasses
import errno
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx2
from huggingface_hub import snapshot_download
from huggingface_hub.errors import (
    DisabledRepoError,
    GatedRepoError,
    HfHubHTTPError,
    HFValidationError,
    IncompleteSnapshotError,
    LocalEntryNotFoundError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)

from runner.engine_flags import draft_revision, with_draft_path
from runner.errors import PlanError, PreflightError
from runner.plan import ModelRef, Plan, Run

DEFAULT_ENDPOINT = "https://huggingface.co"
# The source documents skip a repo's original/ folder: Meta's own checkpoint format, which vLLM
# does not read, and as large as the weights it does read.
DEFAULT_EXCLUDE = ("original/*",)

Note = Callable[[str], None]


@dataclass(frozen=True)
class HubSettings:
    """Where the hub is and where its cache lives (from HF_* variables, read at the CLI edge)."""

    cache_dir: Path  # the hub cache: $HF_HOME/hub
    token: str | None = None
    endpoint: str = DEFAULT_ENDPOINT
    offline: bool = False  # HF_HUB_OFFLINE: the cache or nothing

    def __post_init__(self) -> None:
        if not self.endpoint.startswith(("http://", "https://")):
            raise PlanError(
                f"HF_ENDPOINT {self.endpoint!r} is not an http(s) URL: unset it or fix it"
            )


@dataclass(frozen=True)
class ModelFetch:
    """Which files of a hub repo, at which revision, and whether they may be downloaded."""

    revision: str | None = None
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = DEFAULT_EXCLUDE
    download: bool = True

    def __post_init__(self) -> None:
        if self.revision is not None and not self.revision.strip():
            raise PlanError("--revision is empty: give a branch, a tag or a commit hash")
        for flag, patterns in (("--hf-include", self.include), ("--hf-exclude", self.exclude)):
            if any(not p.strip() for p in patterns):
                raise PlanError(f"{flag}: a pattern is empty; give globs such as '*.safetensors'")

    def describe(self) -> str:
        parts = [f"revision {self.revision}"] if self.revision else []
        parts.append("include " + (", ".join(self.include) if self.include else "everything"))
        if self.exclude:
            parts.append("exclude " + ", ".join(self.exclude))
        return "; ".join(parts)


def _one_line(text: str, limit: int = 200) -> str:
    """The first line of a library's message, short: our errors are one line."""
    first = next((line.strip() for line in text.splitlines() if line.strip()), "")
    return first if len(first) <= limit else first[: limit - 3] + "..."


def _transport_error(exc: BaseException) -> httpx2.TransportError | None:
    """The network failure behind `exc`, if one is: huggingface_hub wraps some, not all."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, httpx2.TransportError):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def _repo_problem(exc: Exception, repo: str, fetch: ModelFetch, hub: HubSettings) -> str | None:
    """What the hub said of the repository itself: gated, missing, no such revision, disabled."""
    page = f"{hub.endpoint.rstrip('/')}/{repo}"
    if isinstance(exc, GatedRepoError):  # before RepositoryNotFoundError: a subclass of it
        held = " (the HF_TOKEN given has not been granted access yet)" if hub.token else ""
        return f"model {repo} is gated: accept its licence on {page} and set HF_TOKEN{held}"
    if isinstance(exc, RepositoryNotFoundError):
        token_hint = (
            "the HF_TOKEN given cannot read it" if hub.token else "set HF_TOKEN to a token that can"
        )
        return (
            f"model {repo} is not on {hub.endpoint}, or is private: check --model, or {token_hint}"
        )
    if isinstance(exc, RevisionNotFoundError):
        return (
            f"model {repo} has no revision {fetch.revision or 'main'}: check --revision "
            "(a branch, a tag or a commit hash)"
        )
    if isinstance(exc, DisabledRepoError):
        return f"model {repo} is disabled on {hub.endpoint}: choose another model"
    return None


def _cache_problem(
    exc: LocalEntryNotFoundError, repo: str, fetch: ModelFetch, hub: HubSettings
) -> str | None:
    """The cache lacks the model and a setting forbids downloading it; None if none forbids."""
    if hub.offline:
        forbids = ("HF_HUB_OFFLINE=1", "unset HF_HUB_OFFLINE")
    elif not fetch.download:
        forbids = ("--no-download", "drop --no-download")
    else:
        return None
    what = (
        f"the cached snapshot of {repo} in {hub.cache_dir} is incomplete"
        if isinstance(exc, IncompleteSnapshotError)
        else f"{repo} is not in the HF cache at {hub.cache_dir}"
    )
    return (
        f"{what} and {forbids[0]} forbids downloading: {forbids[1]} to download it "
        "first, or give a local directory to --model"
    )


def _disk_problem(exc: Exception, repo: str, cache: Path) -> str | None:
    """A full or unwritable HF cache."""
    if not isinstance(exc, OSError):
        return None
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return (
            f"no space left in the HF cache at {cache} while downloading {repo}: free some, "
            "or point HF_HOME at a larger disk"
        )
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return (
            f"cannot write the HF cache at {cache} ({exc.strerror}): fix its permissions, or "
            "point HF_HOME at a writable directory"
        )
    return None


def _hub_error(exc: Exception, repo: str, fetch: ModelFetch, hub: HubSettings) -> PreflightError:
    """One line saying what went wrong with the hub or the cache, and what to do about it."""
    problem = _repo_problem(exc, repo, fetch, hub)
    if problem is None and isinstance(exc, LocalEntryNotFoundError):
        problem = _cache_problem(exc, repo, fetch, hub)
        # The hub failed and the cache could not stand in: the hub's failure is the news.
        if problem is None and isinstance(exc.__cause__, HfHubHTTPError):
            return _hub_error(exc.__cause__, repo, fetch, hub)
    if problem is not None:
        return PreflightError(problem)
    transport = _transport_error(exc)
    if transport is not None:
        reason = _one_line(str(transport)) or type(transport).__name__
        return PreflightError(
            f"cannot reach {hub.endpoint} to download {repo} ({reason}), and the HF cache at "
            f"{hub.cache_dir} does not hold it: check the network and HF_ENDPOINT, or give a "
            "local directory to --model"
        )
    if isinstance(exc, HfHubHTTPError):
        return PreflightError(
            f"{hub.endpoint} refused {repo}: {_one_line(str(exc))}; check --model and HF_TOKEN"
        )
    problem = _disk_problem(exc, repo, hub.cache_dir)
    if problem is not None:
        return PreflightError(problem)
    return PreflightError(f"cannot get model {repo} from {hub.endpoint}: {_one_line(str(exc))}")


def _snapshot(repo: str, fetch: ModelFetch, hub: HubSettings, *, local_only: bool) -> Path:
    try:
        where = snapshot_download(
            repo,
            revision=fetch.revision,
            cache_dir=hub.cache_dir,
            allow_patterns=list(fetch.include) or None,
            ignore_patterns=list(fetch.exclude) or None,
            token=hub.token,
            endpoint=hub.endpoint,
            local_files_only=local_only,
        )
    except HFValidationError as exc:
        raise PlanError(f"--model {repo}: {_one_line(str(exc))}") from None
    except (HfHubHTTPError, LocalEntryNotFoundError, httpx2.TransportError, OSError) as exc:
        raise _hub_error(exc, repo, fetch, hub) from None
    return Path(where)


def resolve_model(
    model: ModelRef,
    fetch: ModelFetch,
    hub: HubSettings,
    *,
    dry_run: bool = False,
    note: Note | None = None,
) -> ModelRef:
    """The model as a local directory: a hub repo id becomes its snapshot in the HF cache.

    The snapshot is downloaded first when the cache lacks it, unless HF_HUB_OFFLINE, --no-download
    or a dry run forbid it; a dry run keeps the repo id of a model the cache does not hold.
    """
    if model.local_path is not None:
        if fetch.revision is not None or fetch.include:
            raise PlanError(
                f"--revision and --hf-include choose files of a hub repo; --model {model.source} "
                "is a local directory: drop them"
            )
        return model
    repo = model.source
    if dry_run:
        try:
            path = _snapshot(repo, fetch, hub, local_only=True)
        except PreflightError:
            if note is not None:
                note(
                    f"dry run: {repo} is not in the HF cache at {hub.cache_dir} (or not all of "
                    f"it); a real run downloads it first ({fetch.describe()})"
                )
            return model
    else:
        local_only = hub.offline or not fetch.download
        if not local_only and note is not None:
            note(
                f"downloading {repo} ({fetch.describe()}) from {hub.endpoint} into "
                f"{hub.cache_dir}; files already there are kept"
            )
        path = _snapshot(repo, fetch, hub, local_only=local_only)
    if not (path / "config.json").is_file():
        raise PreflightError(
            f"the snapshot of {repo} at {path} has no config.json: vLLM needs one; check "
            "--hf-include / --hf-exclude"
        )
    return dataclasses.replace(model, local_path=str(path))


def resolve_plan(
    plan: Plan,
    fetch: ModelFetch,
    hub: HubSettings,
    *,
    dry_run: bool = False,
    note: Note | None = None,
) -> Plan:
    """The plan with every hub model resolved to its snapshot directory (each model once).

    A draft model (--speculative-config's) is resolved the same way, at its own revision, with
    the same file patterns and the same errors, and vLLM is given its snapshot directory.
    """
    resolved: dict[ModelRef, ModelRef] = {}
    runs = []
    for planned in plan.runs:
        if planned.model not in resolved:
            resolved[planned.model] = resolve_model(
                planned.model, fetch, hub, dry_run=dry_run, note=note
            )
        # replace() validates the run again: now with the model's own context length
        run = dataclasses.replace(planned, model=resolved[planned.model])
        runs.append(_resolve_draft(run, fetch, hub, dry_run=dry_run, note=note))
    return Plan(runs=tuple(runs))


def _resolve_draft(
    run: Run, fetch: ModelFetch, hub: HubSettings, *, dry_run: bool, note: Note | None
) -> Run:
    """The run with its hub draft model's snapshot; the errors say that it is the draft model."""
    if run.draft_model is None or run.draft_model.local_path is not None:
        return run  # none, or a local directory: nothing to fetch
    own = dataclasses.replace(fetch, revision=draft_revision(run.engine.extra_args))
    try:
        draft = resolve_model(run.draft_model, own, hub, dry_run=dry_run, note=note)
    except (PlanError, PreflightError) as exc:
        raise type(exc)(f"the draft model (--speculative-config): {exc}") from None
    engine = dataclasses.replace(
        run.engine, extra_args=with_draft_path(run.engine.extra_args, draft.path_or_id)
    )
    return dataclasses.replace(run, draft_model=draft, engine=engine)
