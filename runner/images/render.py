"""Render a catalog variant into a Dockerfile and its whole build context (pure, no Docker)."""

from __future__ import annotations

import hashlib
import importlib.metadata
import os
import posixpath
import re
import shlex
import shutil
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2

from runner import __version__
from runner.errors import BenchError
from runner.images.catalog import EnvVar, Variant
from runner.images.resources import agent_sources, shim_script, templates_dir
from runner.vendors import profile_for

DISTRIBUTION = "vllm-bench-images"
LABEL_PREFIX = "vllm-bench."
LABEL_VARIANT = LABEL_PREFIX + "variant"
LABEL_VENDOR = LABEL_PREFIX + "vendor"
LABEL_VLLM_VERSION = LABEL_PREFIX + "vllm-version"
LABEL_ENV_HASH = LABEL_PREFIX + "env-sha256"
LABEL_BASE = LABEL_PREFIX + "base-image"


@dataclass(frozen=True)
class ImagePaths:
    """Where things live inside every image."""

    agent_dir: str = "/opt/bench"
    entrypoint: str = "/opt/bench/entrypoint.sh"
    venv: str = "/opt/venv"


PATHS = ImagePaths()


class TemplateError(BenchError):
    """A template is broken or uses a value nobody gave it."""


@dataclass(frozen=True)
class ContextFile:
    """One file of a build context."""

    content: bytes
    executable: bool = False


def _dockerfile_quote(value: object) -> str:
    """A double-quoted Dockerfile word (ENV, LABEL): backslash, quote and `$` escaped."""
    text = str(value)
    for char in ("\\", '"', "$"):
        text = text.replace(char, "\\" + char)
    return f'"{text}"'


def make_environment(directory: Path | None = None) -> jinja2.Environment:
    """The one Jinja environment: StrictUndefined, no HTML escaping, templates from package data."""
    environment = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(directory or templates_dir())),
        undefined=jinja2.StrictUndefined,
        autoescape=jinja2.select_autoescape(enabled_extensions=(), default=False),
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    environment.filters["dq"] = _dockerfile_quote
    environment.filters["shquote"] = lambda value: shlex.quote(str(value))
    environment.filters["dirname"] = lambda value: posixpath.dirname(str(value))
    return environment


def render_template(environment: jinja2.Environment, name: str, **values: Any) -> str:
    """Render one template; a value it uses that nobody gave it raises TemplateError naming it."""
    try:
        return environment.get_template(name).render(**values)
    except jinja2.UndefinedError as exc:
        raise TemplateError(f"template {name} uses an undefined value: {exc.message}") from exc
    except jinja2.TemplateSyntaxError as exc:
        where = f"{exc.filename or exc.name or name}, line {exc.lineno}"
        raise TemplateError(f"template syntax error in {where}: {exc.message}") from exc
    except jinja2.TemplateNotFound as exc:
        raise TemplateError(f"template {exc.name} not found (rendering {name})") from exc


def env_hash(env: Iterable[EnvVar]) -> str:
    """sha256 of the tuned environment, sorted by name: equal hashes mean equal tunings."""
    lines = "".join(f"{var.name}={var.value}\n" for var in sorted(env, key=lambda v: v.name))
    return hashlib.sha256(lines.encode("utf-8")).hexdigest()


def source_url() -> str:
    """The project's source URL from the distribution's metadata, else its name."""
    try:
        meta = importlib.metadata.metadata(DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        return DISTRIBUTION
    for entry in meta.get_all("Project-URL") or []:
        label, _, url = str(entry).partition(",")
        if label.strip().lower() in ("source", "repository", "homepage") and url.strip():
            return url.strip()
    return str(meta["Home-page"] or DISTRIBUTION) if "Home-page" in meta else DISTRIBUTION


def image_labels(variant: Variant) -> dict[str, str]:
    """The image's fixed labels: the catalog's, OCI source and version, and the project's.

    The Dockerfile adds LABEL_BASE, the base image it was built FROM (a build argument).
    """
    labels = dict(variant.labels)
    labels.update(
        {
            "org.opencontainers.image.source": source_url(),
            "org.opencontainers.image.version": __version__,
            LABEL_VARIANT: variant.name,
            LABEL_VENDOR: variant.vendor,
            LABEL_VLLM_VERSION: variant.vllm_version,
            LABEL_ENV_HASH: env_hash(variant.env),
        }
    )
    return dict(sorted(labels.items()))


def default_tag(variant: Variant, base: str | None = None) -> str:
    """The tag `bench-images build` gives a variant unless told otherwise.

    Built FROM another base (--base, --base-image), the tag gains a short hash of that base's
    reference, so a build from one base is never taken for a build from another.
    """
    tag = f"vllm-bench/{variant.name}:{variant.vllm_version}"
    if base is None or base == variant.image:
        return tag
    return f"{tag}-base-{hashlib.sha256(base.encode('utf-8')).hexdigest()[:12]}"


def _values(variant: Variant) -> dict[str, Any]:
    return {
        "variant": variant,
        "env": variant.env,
        "labels": image_labels(variant),
        "paths": PATHS,
        "tool_version": __version__,
        "label_prefix": LABEL_PREFIX,
        "base_label": LABEL_BASE,
    }


def render_dockerfile(variant: Variant, environment: jinja2.Environment | None = None) -> str:
    """The variant's Dockerfile."""
    environment = environment or make_environment()
    family = profile_for(variant.vendor).template_family
    text = render_template(environment, f"dockerfile/{family}.Dockerfile.j2", **_values(variant))
    # Templates separate sections with blank lines freely; one blank line between is enough.
    return re.sub(r"\n{3,}", "\n\n", text).lstrip("\n")


def render_entrypoint(variant: Variant, environment: jinja2.Environment | None = None) -> str:
    """The variant's entrypoint script: start-up checks, then `exec "$@"`."""
    environment = environment or make_environment()
    family = profile_for(variant.vendor).template_family
    return render_template(environment, f"entrypoint/{family}.sh.j2", **_values(variant))


def render_context(
    variant: Variant, environment: jinja2.Environment | None = None
) -> dict[str, ContextFile]:
    """Every file of the build context by its relative path (the wheelhouse is added at build)."""
    environment = environment or make_environment()
    files = {
        "Dockerfile": ContextFile(render_dockerfile(variant, environment).encode("utf-8")),
        "bench/entrypoint.sh": ContextFile(
            render_entrypoint(variant, environment).encode("utf-8"), executable=True
        ),
    }
    for relative, source in agent_sources().items():
        files[f"bench/{relative}"] = ContextFile(source.read_bytes())
    if variant.needs_vllm_shim:
        files["bench/vllm_cpu_shim.py"] = ContextFile(shim_script().read_bytes())
    return files


def write_context(files: Mapping[str, ContextFile], directory: Path) -> None:
    """Write a build context into an existing, empty directory."""
    for relative, item in files.items():
        path = directory / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(item.content)
        path.chmod(0o755 if item.executable else 0o644)


def render_to_dir(
    variant: Variant, out_dir: Path, *, environment: jinja2.Environment | None = None
) -> Path:
    """Write the Dockerfile and its build context to `out_dir`, atomically; returns the path.

    The context is built in a hidden sibling directory and renamed into place, so `out_dir` is
    either the old render or the new one, never half of each.
    """
    files = render_context(variant, environment)
    out_dir = out_dir.resolve()
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    old: Path | None = None
    try:
        write_context(files, staging)
        if variant.source == "wheelhouse":
            (staging / "wheelhouse").mkdir()
        staging.chmod(0o755)
        if out_dir.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.old.", dir=out_dir.parent))
            os.replace(out_dir, old / "previous")
        os.replace(staging, out_dir)
    except OSError as exc:
        shutil.rmtree(staging, ignore_errors=True)
        raise BenchError(f"cannot write the build context to {out_dir}: {exc}") from exc
    finally:
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    return out_dir
