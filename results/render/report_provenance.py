"""The report's provenance section as data: each run's software, host, GPUs, image and commands."""

from __future__ import annotations

import json
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from results.model.schema import Record

GPU_COLUMNS = ("index", "name", "vendor", "driver", "memory_mib", "bus_id", "uuid")

# provenance keys the structured view shows; any other is listed as JSON so nothing is hidden
_SHOWN = {
    "format", "run_id", "tool", "executor", "vendor", "host", "gpus", "gpu_model", "gpu_count",
    "driver", "agent_python", "vllm_version", "packages", "commands", "env", "started",
    "finished", "container", "summary", "partition",
}  # fmt: skip

Pairs = list[tuple[str, object]]


@dataclass(frozen=True)
class ContainerView:
    """The image and container a run used: identity, the image's labels, the container spec."""

    identity: Pairs
    labels: Pairs
    spec: str | None


@dataclass(frozen=True)
class ProvenanceView:
    """One run's provenance, ready for the template: key-value pairs, rows and texts."""

    run_id: str
    short: str
    label: str
    # what the records kept, when provenance.json could not be read
    summary: Pairs | None
    software: Pairs
    # None when the run recorded no GPU list
    gpus: list[list[object]] | None
    container: ContainerView | None
    executor: object
    packages: Pairs
    env: Pairs
    commands: list[tuple[str, str]]
    other: str | None


def _section(prov: Mapping[str, Any], name: str) -> dict[str, Any]:
    value = prov.get(name)
    return value if isinstance(value, dict) else {}


def _command(argv: object) -> str:
    if isinstance(argv, list) and all(isinstance(a, str) for a in argv):
        return shlex.join(argv)
    return json.dumps(argv)


def _software(prov: Mapping[str, Any]) -> Pairs:
    tool, executor, host = (
        _section(prov, "tool"),
        _section(prov, "executor"),
        _section(prov, "host"),
    )
    return [
        ("tool", f"{tool.get('name') or 'vllm-bench-images'} {tool.get('version') or ''}"),
        ("git commit", tool.get("git_commit")),
        ("executor", executor.get("name")),
        ("vLLM", prov.get("vllm_version")),
        ("agent Python", prov.get("agent_python")),
        ("host", host.get("hostname")),
        ("OS", host.get("os")),
        ("kernel", host.get("kernel")),
        ("CPU", f"{host.get('cpu_model') or '-'} x {host.get('cpu_count') or '-'}"),
        ("memory (GiB)", host.get("memory_gib")),
        ("GPU driver", prov.get("driver")),
        *([("GPU partition modes", prov["partition"])] if prov.get("partition") else []),
        ("started", prov.get("started")),
        ("finished", prov.get("finished")),
    ]


def _gpus(prov: Mapping[str, Any]) -> list[list[object]] | None:
    gpus = prov.get("gpus")
    if not isinstance(gpus, list) or not gpus:
        return None
    return [[g.get(c) for c in GPU_COLUMNS] for g in gpus if isinstance(g, dict)]


def _container(prov: Mapping[str, Any]) -> ContainerView | None:
    container = _section(prov, "container")
    if not container:
        return None
    digests = container.get("image_digests")
    labels = container.get("image_labels")
    spec = None
    if "spec" in container:
        spec = json.dumps(container["spec"], indent=1, sort_keys=True, default=str)
    return ContainerView(
        identity=[
            ("image", container.get("image")),
            ("image id", container.get("image_id")),
            ("digests", ", ".join(digests) if isinstance(digests, list) else digests),
            ("container id", container.get("id")),
        ],
        labels=sorted(labels.items()) if isinstance(labels, dict) else [],
        spec=spec,
    )


def _commands(prov: Mapping[str, Any]) -> list[tuple[str, str]]:
    """Each command with what it ran for: the server first, then each point, then the rest."""
    commands = _section(prov, "commands")
    found: list[tuple[str, str]] = []
    if "server" in commands:
        found.append(("server", _command(commands["server"])))
    points = commands.get("points")
    if isinstance(points, dict):
        found += [(str(point), _command(argv)) for point, argv in points.items()]
    found += [
        (key, _command(value)) for key, value in commands.items() if key not in ("server", "points")
    ]
    return found


def provenance_view(run_id: str, short: str, label: str, prov: Mapping[str, Any]) -> ProvenanceView:
    """What the report shows of one run's provenance.json (or of the summary its records kept)."""
    other = {k: v for k, v in prov.items() if k not in _SHOWN}
    return ProvenanceView(
        run_id=run_id,
        short=short,
        label=label,
        summary=sorted(_section(prov, "summary").items()) if "summary" in prov else None,
        software=_software(prov),
        gpus=_gpus(prov),
        container=_container(prov),
        executor=_section(prov, "executor").get("name"),
        packages=sorted(_section(prov, "packages").items()),
        env=sorted(_section(prov, "env").items()),
        commands=_commands(prov),
        other=json.dumps(other, indent=1, sort_keys=True, default=str) if other else None,
    )


def provenance_views(
    records: Sequence[Record], provenance: Mapping[str, Mapping[str, Any]], runs: Mapping[str, str]
) -> list[ProvenanceView]:
    """One view per run, in the order the records first name them."""
    first: dict[str, Record] = {}
    for rec in records:
        first.setdefault(rec.run_id, rec)
    return [
        provenance_view(
            run_id,
            runs[run_id],
            rec.config_label,
            provenance.get(run_id) or {"summary": dict(rec.provenance)},
        )
        for run_id, rec in first.items()
    ]
