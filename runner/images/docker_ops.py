"""Build, pull and inspect images through the Docker engine's API (docker-py), never its CLI."""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import docker
import docker.errors
import requests.exceptions
from docker.utils import kwargs_from_env, parse_repository_tag

from runner.errors import BenchError
from runner.images.catalog import Variant
from runner.images.render import LABEL_VARIANT, LABEL_VENDOR, LABEL_VLLM_VERSION, default_tag
from runner.images.render import render_to_dir as _render_to_dir

ENGINE_HINT = (
    "start one with `sudo systemctl start docker`, or `dockerd &` where there is no systemd"
)
PING_TIMEOUT_S = 15.0
# A build step can be silent for a long time (pip resolving, a big layer committing).
BUILD_TIMEOUT_S = 4 * 3600.0
LOG_TAIL_LINES = 40
_STEP_RE = re.compile(r"^Step \d+/\d+ : ")


class DockerError(BenchError):
    """The Docker engine refused or failed what was asked."""


class EngineUnavailable(DockerError):
    """No Docker engine answers where DOCKER_HOST (or the default socket) points."""


class ImageMissing(DockerError):
    """An image is neither present on the engine nor pullable."""


class PullFailed(DockerError):
    """The engine could not pull an image; `reason` is the engine's word for it."""

    def __init__(self, ref: str, reason: str) -> None:
        super().__init__(f"cannot pull {ref}: {reason}")
        self.reason = reason


class BuildFailed(DockerError):
    """`docker build` failed: the message names the failing step; `log_tail` has the log's end."""

    def __init__(self, message: str, log_tail: Iterable[str] = ()) -> None:
        super().__init__(message)
        self.log_tail = tuple(log_tail)


@dataclass(frozen=True)
class PullEvent:
    """One progress message of a pull: a layer's status and, while downloading, its bytes."""

    status: str
    layer: str = ""
    current: int = 0
    total: int = 0


@dataclass(frozen=True)
class BuildRequest:
    """A checked build: everything known good before the engine is contacted."""

    variant: Variant
    tag: str
    base: str
    wheelhouse: Path | None = None
    extra_index_url: str | None = None
    buildargs: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ImageInfo:
    """What `bench-images inspect` shows about an image on the engine."""

    ref: str
    id: str
    digests: tuple[str, ...]
    labels: Mapping[str, str]
    created: str
    size: int

    @property
    def vllm_version(self) -> str | None:
        return self.labels.get(LABEL_VLLM_VERSION)

    @property
    def variant(self) -> str | None:
        return self.labels.get(LABEL_VARIANT)

    @property
    def vendor(self) -> str | None:
        return self.labels.get(LABEL_VENDOR)


def _inspect(client: docker.APIClient, ref: str) -> dict[str, Any]:
    # docker-py's stubs leave inspect_image untyped; it returns the engine's JSON object.
    data: dict[str, Any] = client.inspect_image(ref)  # type: ignore[no-untyped-call]
    return data


def _one_line(text: object, limit: int = 300) -> str:
    line = " ".join(str(text).split())
    return line if len(line) <= limit else line[: limit - 3] + "..."


def connect(environ: Mapping[str, str]) -> docker.APIClient:
    """A client for the engine named by DOCKER_HOST & co. in `environ`; one line if none answers."""
    try:
        kwargs = kwargs_from_env(environment=dict(environ))
    except docker.errors.DockerException as exc:
        raise EngineUnavailable(
            f"bad Docker settings in the environment: {_one_line(exc)}"
        ) from exc
    where = kwargs.get("base_url") or "unix:///var/run/docker.sock"
    try:
        client = docker.APIClient(version="auto", timeout=int(PING_TIMEOUT_S), **kwargs)
        client.ping()
    except (docker.errors.DockerException, requests.exceptions.RequestException) as exc:
        raise EngineUnavailable(
            f"no Docker engine answers at {where} ({_one_line(exc, 160)}): {ENGINE_HINT}"
        ) from exc
    client.timeout = int(BUILD_TIMEOUT_S)
    return client


def build_step(line: str) -> str | None:
    """The build step a log line starts ('Step 3/19 : RUN ...'), else None."""
    return _one_line(line, 160) if _STEP_RE.match(line) else None


def _normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "_", name).lower()


def find_vllm_wheel(wheelhouse: Path, variant: Variant) -> Path:
    """The wheel of the variant's package at its vLLM version in `wheelhouse`, else one line."""
    if not wheelhouse.is_dir():
        raise BenchError(f"wheelhouse {wheelhouse}: no such directory")
    assert variant.package is not None
    package = _normalize(variant.package)
    wheels = sorted(wheelhouse.glob("*.whl"))
    candidates = [w for w in wheels if _normalize(w.name.split("-")[0]) in (package, "vllm")]
    for wheel in candidates:
        parts = wheel.name.split("-")
        if _normalize(parts[0]) == package and parts[1].split("+")[0] == variant.vllm_version:
            return wheel
    found = ", ".join(w.name for w in candidates) or "none"
    raise BenchError(
        f"wheelhouse {wheelhouse} has no {variant.requirement} wheel (vllm wheels found: {found}); "
        f"make one with: pip download {variant.requirement} -d {wheelhouse}"
    )


def plan_build(
    variant: Variant,
    *,
    base: str | None = None,
    wheelhouse: Path | None = None,
    tag: str | None = None,
    extra_index_url: str | None = None,
) -> BuildRequest:
    """Check a build's inputs without Docker: the wheelhouse, the index, the options that apply."""
    if variant.source == "wheelhouse":
        if wheelhouse is None:
            raise BenchError(
                f"{variant.name} installs from a wheelhouse: pass --wheelhouse DIR "
                f"(pip download {variant.requirement} -d DIR)"
            )
        find_vllm_wheel(wheelhouse, variant)
    elif wheelhouse is not None:
        raise BenchError(f"--wheelhouse is for wheelhouse variants; {variant.name} is not one")
    if extra_index_url is not None and variant.source != "pip":
        raise BenchError(f"--pip-extra-index-url is for pip variants; {variant.name} is not one")
    index = extra_index_url or variant.pip_extra_index_url
    if variant.extra_index_required and not index:
        raise BenchError(
            f"{variant.name} installs vLLM from a wheel index beside PyPI: "
            "pass --pip-extra-index-url URL"
        )
    buildargs = {"BASE_IMAGE": base} if base else {}
    if index:
        buildargs["VLLM_EXTRA_INDEX_URL"] = index
    return BuildRequest(
        variant=variant,
        tag=tag or default_tag(variant, base),
        base=base or variant.image,
        wheelhouse=wheelhouse.resolve() if wheelhouse is not None else None,
        extra_index_url=index,
        buildargs=buildargs,
    )


def ensure_image(
    client: docker.APIClient, ref: str, on_event: Callable[[PullEvent], None] | None = None
) -> None:
    """`ref` is on the engine, pulled if it was not; else ImageMissing in one line."""
    try:
        _inspect(client, ref)
        return
    except docker.errors.ImageNotFound:
        pass
    except docker.errors.APIError as exc:
        raise DockerError(
            f"cannot inspect image {ref}: {_one_line(exc.explanation or exc)}"
        ) from exc
    try:
        pull_image(client, ref, on_event)
    except PullFailed as exc:
        raise ImageMissing(
            f"image {ref} is not on this Docker engine and cannot be pulled ({exc.reason}): "
            "pull or load it (docker load, docker import), or name another base image "
            "(bench-images build --base, bench-run --base-image)"
        ) from exc


def pull_image(
    client: docker.APIClient, ref: str, on_event: Callable[[PullEvent], None] | None = None
) -> str:
    """Pull `ref`, reporting progress; returns the image id."""
    repository, tag = parse_repository_tag(ref)
    try:
        for event in client.pull(repository, tag=tag or "latest", stream=True, decode=True):
            if "error" in event:
                raise PullFailed(ref, _one_line(event["error"]))
            if on_event is not None:
                detail = event.get("progressDetail") or {}
                on_event(
                    PullEvent(
                        status=str(event.get("status", "")),
                        layer=str(event.get("id", "")),
                        current=int(detail.get("current") or 0),
                        total=int(detail.get("total") or 0),
                    )
                )
        return str(_inspect(client, ref)["Id"])
    except docker.errors.APIError as exc:
        raise PullFailed(ref, _one_line(exc.explanation or exc)) from exc
    except requests.exceptions.RequestException as exc:
        raise PullFailed(ref, f"the engine stopped answering: {_one_line(exc)}") from exc


def inspect_image(client: docker.APIClient, ref: str) -> ImageInfo:
    """Labels, digests and the vLLM version label of an image on the engine."""
    try:
        data = _inspect(client, ref)
    except docker.errors.ImageNotFound as exc:
        raise ImageMissing(
            f"image {ref} is not on this Docker engine: bench-images pull {ref}, or build it"
        ) from exc
    except docker.errors.APIError as exc:
        raise DockerError(
            f"cannot inspect image {ref}: {_one_line(exc.explanation or exc)}"
        ) from exc
    config = data.get("Config") or {}
    return ImageInfo(
        ref=ref,
        id=str(data.get("Id", "")),
        digests=tuple(data.get("RepoDigests") or ()),
        labels=dict(config.get("Labels") or {}),
        created=str(data.get("Created", "")),
        size=int(data.get("Size") or 0),
    )


def _link_or_copy(source: Path, target: Path) -> None:
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


def build_image(
    client: docker.APIClient,
    request: BuildRequest,
    on_line: Callable[[str], None],
    on_pull: Callable[[PullEvent], None] | None = None,
) -> str:
    """Render the context, add the wheelhouse, build through the engine; returns the image id.

    The base image must be present or pullable (checked first, one line if not). Progress lines
    go to `on_line`; a failure raises BuildFailed naming the failing step, with the log's tail.
    """
    ensure_image(client, request.base, on_pull)
    with tempfile.TemporaryDirectory(prefix="bench-images-") as scratch:
        context = _render_to_dir(request.variant, Path(scratch) / "context")
        if request.wheelhouse is not None:
            target = context / "wheelhouse"
            target.mkdir(exist_ok=True)
            for item in sorted(request.wheelhouse.iterdir()):
                if item.is_file():
                    _link_or_copy(item, target / item.name)
        return _stream_build(client, request, context, on_line)


class _BuildLog:
    """What a build's JSON stream said so far: its current step, its last lines, the image id."""

    def __init__(self, on_line: Callable[[str], None]) -> None:
        self.on_line = on_line
        self.tail: deque[str] = deque(maxlen=LOG_TAIL_LINES)
        self.step = "before the first step"
        self.image_id = ""

    def take(self, chunk: dict[str, Any], variant: str) -> None:
        if "error" in chunk:
            message = _one_line(chunk["error"])
            raise BuildFailed(f"building {variant} failed at {self.step}: {message}", self.tail)
        text = chunk.get("stream")
        if text:
            for line in str(text).splitlines():
                if not line.strip():
                    continue
                if _STEP_RE.match(line):
                    self.step = _one_line(line, 160)
                self.tail.append(line)
                self.on_line(line)
        elif "status" in chunk:
            self.on_line(str(chunk["status"]))
        aux = chunk.get("aux")
        if isinstance(aux, dict) and aux.get("ID"):
            self.image_id = str(aux["ID"])


def _stream_build(
    client: docker.APIClient, request: BuildRequest, context: Path, on_line: Callable[[str], None]
) -> str:
    log = _BuildLog(on_line)
    tail = log.tail
    try:
        stream = client.build(
            path=str(context),
            tag=request.tag,
            buildargs=dict(request.buildargs),
            decode=True,
            rm=True,
            forcerm=True,
            pull=False,
        )
        for chunk in stream:
            log.take(chunk, request.variant.name)
    except docker.errors.APIError as exc:
        raise BuildFailed(
            f"building {request.variant.name} failed at {log.step}: "
            f"{_one_line(exc.explanation or exc)}",
            tail,
        ) from exc
    except requests.exceptions.RequestException as exc:
        raise BuildFailed(
            f"building {request.variant.name}: the engine stopped answering at {log.step}: "
            f"{_one_line(exc)}",
            tail,
        ) from exc
    if log.image_id:
        return log.image_id
    try:
        return str(_inspect(client, request.tag)["Id"])
    except docker.errors.APIError as exc:
        raise BuildFailed(
            f"building {request.variant.name} ended without an image ({log.step})", tail
        ) from exc
