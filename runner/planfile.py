"""A plan file: bench-run's options as YAML keys, a matrix of them, and exclusions; pure."""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import yaml

from runner.errors import PlanError
from runner.request import RunRequest

MATRIX, EXCLUDE = "matrix", "exclude"
# The same for every configuration: they choose the executor, the hub snapshot, the output.
WHOLE_PLAN = frozenset((
    "vendor", "executor", "pull", "gpus", "cpus", "shm_size", "privileged", "keep", "base_image",
    "wheelhouse", "pip_extra_index_url", "image", "out_dir", "vllm_path", "host", "port",
    "dry_run", "revision", "hf_include", "hf_exclude", "no_download",
    # Kubernetes: one cluster side for the sweep (gpu_product may vary: a Job per product)
    "namespace", "sweep_id", "node_selector", "toleration", "model_pvc", "model_pvc_root",
    "hf_token_secret", "parallel", "supplemental_group", "active_deadline", "ttl_after_finished",
    "backoff_per_index", "max_failed_indexes", "hold_s",
))  # fmt: skip
_FIELDS = {f.name: str(f.type) for f in fields(RunRequest)}


@dataclass(frozen=True)
class PlanFile:
    """A plan file as read: its text and hash, the fixed keys, the matrix, the exclusions."""

    path: Path
    text: str
    sha256: str
    base: Mapping[str, Any]
    matrix: Mapping[str, tuple[Any, ...]]
    exclude: tuple[Mapping[str, Any], ...]


@dataclass(frozen=True)
class Configuration:
    """One point of the matrix: every option value, and the matrix values that name it."""

    options: Mapping[str, Any]
    varying: Mapping[str, Any]

    def label(self) -> str:
        return " ".join(f"{k}={_show(v)}" for k, v in self.varying.items()) or "(the only one)"


def _show(value: Any) -> str:
    if isinstance(value, tuple):
        return ",".join(str(v) for v in value)
    return "none" if value is None else str(value)


def _where(path: Path, node: yaml.Node) -> str:
    return f"{path}:{node.start_mark.line + 1}"


def _scalar(node: yaml.Node) -> Any:
    return yaml.safe_load(yaml.serialize(node)) if node.tag != "tag:yaml.org,2002:null" else None


def coerce(name: str, value: Any, where: str) -> Any:
    """A YAML value as the request field wants it; `none` (or null) is the field left unset."""
    kind = _FIELDS[name]
    optional = kind.endswith("| None")
    if value is None or (optional and value == "none"):
        if optional or kind.startswith("tuple"):
            return None if optional else ()
        raise PlanError(f"{where}: {name} cannot be none: give a {kind}")
    if name == "qps" and isinstance(value, list | int | float):
        value = ",".join(str(v) for v in (value if isinstance(value, list) else [value]))
    if name == "replicas" and isinstance(value, int) and not isinstance(value, bool):
        value = str(value)  # a number of servers, or "auto"
    base = kind.removesuffix(" | None")
    ok = {
        "str": isinstance(value, str),
        "int": isinstance(value, int) and not isinstance(value, bool),
        "float": isinstance(value, int | float) and not isinstance(value, bool),
        "bool": isinstance(value, bool),
        "Path": isinstance(value, str),
        "tuple[str, ...]": isinstance(value, str)
        or (isinstance(value, list) and all(isinstance(v, str) for v in value)),
    }.get(base, False)
    if not ok:
        raise PlanError(f"{where}: {name}: {value!r} is not a {base}")
    if base == "float":
        return float(value)
    if base == "Path":
        return Path(value)
    if base.startswith("tuple"):
        return (value,) if isinstance(value, str) else tuple(value)
    return value


def _key(path: Path, node: yaml.Node, allowed: Mapping[str, object] | frozenset[str]) -> str:
    name = node.value if isinstance(node, yaml.ScalarNode) else None
    if not isinstance(name, str) or name not in allowed:
        if isinstance(allowed, dict) and MATRIX not in allowed and name in _FIELDS:
            raise PlanError(f"{_where(path, node)}: exclude names {name!r}, not a matrix key")
        raise PlanError(
            f"{_where(path, node)}: unknown key {name!r}: use bench-run's long option names "
            "with _ for - (kv_cache_dtype), or matrix / exclude"
        )
    return name


def _mapping(path: Path, node: yaml.Node, what: str) -> list[tuple[yaml.Node, yaml.Node]]:
    if not isinstance(node, yaml.MappingNode):
        raise PlanError(f"{_where(path, node)}: {what} must be a mapping of option: value")
    return list(node.value)


def _matrix(path: Path, node: yaml.Node) -> dict[str, tuple[Any, ...]]:
    matrix: dict[str, tuple[Any, ...]] = {}
    pairs = _mapping(path, node, MATRIX) if node.tag != "tag:yaml.org,2002:null" else []
    for key_node, value_node in pairs:
        name = _key(path, key_node, _FIELDS)
        where = _where(path, key_node)
        if name in WHOLE_PLAN:
            raise PlanError(f"{where}: {name} is the same for every configuration: not in matrix")
        if not isinstance(value_node, yaml.SequenceNode) or not value_node.value:
            raise PlanError(f"{where}: matrix {name} must be a non-empty list of values")
        values = tuple(coerce(name, _scalar(v), _where(path, v)) for v in value_node.value)
        matrix[name] = tuple(dict.fromkeys(values))
    if not matrix:
        raise PlanError(f"{_where(path, node)}: the matrix is empty: give option: [values, ...]")
    return matrix


def _exclude(path: Path, node: yaml.Node, matrix: Mapping[str, object]) -> list[dict[str, Any]]:
    if not isinstance(node, yaml.SequenceNode):
        raise PlanError(f"{_where(path, node)}: exclude must be a list of {{option: value}}")
    entries = []
    for entry in node.value:
        pairs = _mapping(path, entry, "an exclude entry")
        entries.append(
            {
                (name := _key(path, k, matrix)): coerce(name, _scalar(v), _where(path, v))
                for k, v in pairs
            }
        )
    return entries


def parse_plan(path: Path, text: str) -> PlanFile:
    """The plan file's text checked and typed; PlanError names the line of what is wrong."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        raise PlanError(f"{path}: not YAML: {' '.join(str(exc).split())}") from None
    if root is None or not isinstance(root, yaml.MappingNode):
        raise PlanError(f"{path}: a plan file is a mapping of option: value (see --help)")
    base: dict[str, Any] = {}
    matrix: dict[str, tuple[Any, ...]] = {}
    exclude_node: yaml.Node | None = None
    for key_node, value_node in root.value:
        name = _key(path, key_node, {**_FIELDS, MATRIX: 0, EXCLUDE: 0})
        if name == MATRIX:
            matrix = _matrix(path, value_node)
        elif name == EXCLUDE:
            exclude_node = value_node
        else:
            base[name] = coerce(name, _scalar(value_node), _where(path, key_node))
    exclude = _exclude(path, exclude_node, matrix) if exclude_node is not None else []
    digest = hashlib.sha256(text.encode()).hexdigest()
    return PlanFile(path, text, digest, base, matrix, tuple(exclude))


def read_plan(path: Path) -> PlanFile:
    """The plan file at `path`; one PlanError when it is missing or unreadable."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise PlanError(f"cannot read the plan file {path}: {exc}") from None
    return parse_plan(path, text)


def _combinations(matrix: Mapping[str, tuple[Any, ...]]) -> Iterator[dict[str, Any]]:
    names = list(matrix)
    for values in itertools.product(*(matrix[n] for n in names)):
        yield dict(zip(names, values, strict=True))


def expand(
    plan: PlanFile, overrides: Mapping[str, Any], under: Mapping[str, Any] | None = None
) -> list[Configuration]:
    """Every configuration of the plan; `overrides` (flags given) win over the file's keys,
    `under` (an environment variable's option) lose to them; excluded ones are left out."""
    matrix = {k: v for k, v in plan.matrix.items() if k not in overrides}
    fixed = {**(under or {}), **plan.base, **overrides}
    configurations = []
    for combination in _combinations(matrix) if matrix else iter([{}]):
        options = {**fixed, **combination}
        if any(all(options.get(k) == v for k, v in e.items()) for e in plan.exclude):
            continue
        configurations.append(Configuration(options, combination))
    if not configurations:
        raise PlanError(f"{plan.path}: exclude removes every configuration of the matrix")
    return configurations
