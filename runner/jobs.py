"""Turn a planned Run into the agent's job: exact argv lists and environment (pure)."""

from __future__ import annotations

import dataclasses
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runner import __version__, scenarios
from runner.engine_flags import with_draft_path
from runner.plan import Point, Run
from runner.replicas import Replicas
from runner.rundir import Job, PointJob, ServerJob, raw_result, server_log
from runner.vendors import profile_for

TOOL_NAME = "vllm-bench-images"


@dataclass(frozen=True)
class Deadlines:
    """How long the agent waits for each thing before it gives up."""

    server_ready_s: float = 1200.0
    server_stop_s: float = 30.0
    point_s: float = 3600.0


@dataclass(frozen=True)
class PathMap:
    """The run's files as the agent sees them: this host's paths, or where a container mounts them.

    Computed once per run by the executor; the same map gives the container's mounts and the
    job's command lines, so the two cannot disagree.
    """

    model: str  # what vLLM is given as the model and tokenizer
    dataset: str | None = None  # the --dataset-path file
    draft_model: str | None = None  # --speculative-config's model (speculative decoding)

    @classmethod
    def host(cls, run: Run) -> PathMap:
        draft = run.draft_model.path_or_id if run.draft_model else None
        return cls(model=run.model.path_or_id, dataset=run.serve.dataset_path, draft_model=draft)


@dataclass(frozen=True)
class Target:
    """Where a point's command finds vLLM: the executable, the server's address, the paths."""

    vllm: str
    host: str
    port: int
    paths: PathMap


def vendor_env(run: Run) -> dict[str, str]:
    """Environment every command of the run gets: the user's --env over the tool's defaults."""
    env: dict[str, str] = {}
    if run.model.local_path is not None:
        env["HF_HUB_OFFLINE"] = "1"  # a local directory needs nothing from the hub
    env.update(dict(run.env))
    return env


def server_argv(
    run: Run, vllm: str, host: str, port: int, paths: PathMap | None = None
) -> list[str]:
    random_data = run.serve.dataset == "random"
    model = (paths or PathMap.host(run)).model
    return [
        vllm, "serve", model, "--host", host, "--port", str(port),
        *run.engine.args(random_data=random_data),
    ]  # fmt: skip


def extra_ports(replicas: Replicas | None) -> int:
    """Ports a run needs besides its own: router: each server's and the router's metrics;
    clients: every server's but the first (which takes the run's port); dp: none."""
    if replicas is None or replicas.spread == "dp":
        return 0
    return replicas.count + 1 if replicas.spread == "router" else replicas.count - 1


@dataclass(frozen=True)
class RemoteReplicas:
    """Replicas another party starts (the docker executor: a container each on the run's
    network): each one's address and where the agent finds its log (server-<k>.log there, the
    wrapper's <log>.exit once it ended; the agent asks it to stop with <log>.stop)."""

    hosts: tuple[str, ...]
    log_dir: str
    cpus: tuple[tuple[int, ...] | None, ...] = ()  # each container's cpuset, for the record


def _replica_server(
    run: Run,
    target: Target,
    port: int,
    gpus: tuple[int, ...],
    extra: tuple[str, ...] = (),
    remote: tuple[RemoteReplicas, int] | None = None,
    in_container: bool = False,
) -> dict[str, Any]:
    profile = profile_for(run.vendor)
    visible = profile.gpu_env or "CUDA_VISIBLE_DEVICES"
    # host ids on the host; a container numbers the GPUs it was given from 0
    ids = range(len(gpus)) if in_container else gpus
    if remote is not None:  # its own container: listens on its network, its GPUs its own
        where, k = remote
        url = f"http://{where.hosts[k]}:{port}"
        cpus = where.cpus[k] if k < len(where.cpus) else None
        return {
            "argv": [*server_argv(run, target.vllm, "0.0.0.0", port, target.paths), *extra],  # noqa: S104
            "base_url": url, "health_url": f"{url}/health", "metrics_url": f"{url}/metrics",
            "gpus": list(gpus), "env": {},
            "remote": {"host": where.hosts[k], "log": f"{where.log_dir}/{server_log(k)}",
                       "cpus": None if cpus is None else list(cpus)},
        }  # fmt: skip
    url = f"http://{target.host}:{port}"
    return {
        "argv": [*server_argv(run, target.vllm, target.host, port, target.paths), *extra],
        "base_url": url,
        "health_url": f"{url}/health",
        "metrics_url": f"{url}/metrics",
        "gpus": list(gpus),
        "env": {visible: ",".join(str(g) for g in ids)} if profile.uses_gpus and gpus else {},
    }


def replicas_job(
    run: Run,
    target: Target,
    ports: Sequence[int],
    remote: RemoteReplicas | None = None,
    in_container: bool = False,
) -> dict[str, Any] | None:
    """The agent's view of --replicas: each server (port, GPUs, environment), the router.

    remote: the servers run elsewhere (one container each); the agent waits for them, spreads
    the load and counts, and starts only the router (--spread router) itself.
    """
    replicas = run.replicas
    if replicas is None:
        return None
    if len(ports) < extra_ports(replicas):
        raise ValueError(f"{extra_ports(replicas)} ports are needed, {len(ports)} given")
    if remote is not None and replicas.spread != "dp" and len(remote.hosts) != replicas.count:
        raise ValueError(f"{replicas.count} replica hosts are needed, {len(remote.hosts)} given")
    spec: dict[str, Any] = {
        **replicas.to_dict(),
        "uses_gpus": profile_for(run.vendor).uses_gpus,
        "router": None,
    }
    if replicas.spread == "dp":
        every = tuple(g for s in replicas.sets for g in s)
        dp = ("--data-parallel-size", str(replicas.count))
        spec["servers"] = [
            _replica_server(run, target, target.port, every, dp, in_container=in_container)
        ]
        return spec
    if replicas.spread == "clients":
        mine = [target.port, *ports[: replicas.count - 1]]
        spec["servers"] = [
            _replica_server(run, target, p, s, remote=None if remote is None else (remote, k))
            for k, (p, s) in enumerate(zip(mine, replicas.sets, strict=True))
        ]
        return spec
    servers = [
        _replica_server(run, target, p, s, remote=None if remote is None else (remote, k))
        for k, (p, s) in enumerate(zip(ports[: replicas.count], replicas.sets, strict=True))
    ]
    spec["servers"] = servers
    spec["router"] = {
        "argv": [
            "vllm-router", "--host", target.host, "--port", str(target.port),
            "--worker-urls", *(s["base_url"] for s in servers),
            "--policy", "round_robin",
            "--prometheus-port", str(ports[replicas.count]),
        ],
        "health_url": f"http://{target.host}:{target.port}/health",
    }  # fmt: skip
    return spec


def git_commit(directory: Path | None = None) -> str | None:
    """The tool's git commit, when it runs from a checkout."""
    where = directory or Path(__file__).resolve().parent
    try:
        proc = subprocess.run(
            ["git", "-C", str(where), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return proc.stdout.strip() or None if proc.returncode == 0 else None


def _point_job(run: Run, point: Point, target: Target, deadlines: Deadlines) -> PointJob:
    scenario = scenarios.get(point.scenario)
    return PointJob(
        id=point.id,
        scenario=point.scenario,
        argv=tuple(scenario.argv(run, point, target)),
        result=raw_result(point.id),
        expected=point.num_prompts,
        needs_server=scenario.needs_server,
        timeout_s=deadlines.point_s,
        sonnet=scenario.sonnet(run, point, target.paths),
    )


def run_record(run: Run, paths: PathMap) -> dict[str, Any]:
    """run.json as the agent sees the run: the model and dataset at the paths it reads them from.

    No host path reaches a container's job; the host's paths are in provenance's mounts.
    """
    data = run.to_dict()
    local = run.model.local_path
    if local is not None and paths.model != local:
        data["model"]["local_path"] = paths.model
        if data["model"]["source"] == local:
            data["model"]["source"] = paths.model
    if paths.dataset != run.serve.dataset_path:
        data["serve"]["dataset_path"] = paths.dataset
    draft = run.draft_model
    if draft is not None and draft.local_path is not None and paths.draft_model != draft.local_path:
        data["draft_model"]["local_path"] = paths.draft_model
        if data["draft_model"]["source"] == draft.local_path:
            data["draft_model"]["source"] = paths.draft_model
            for done in data["engine"]["translated"]:  # the old flags named it by that path
                for key in ("asked", "passed"):
                    done[key] = done[key].replace(draft.local_path, paths.draft_model)
    return data


def _draft_at(run: Run, paths: PathMap) -> Run:
    """The run with vLLM's --speculative-config pointing at the draft model where `paths` put it."""
    if run.draft_model is None or paths.draft_model in (None, run.draft_model.path_or_id):
        return run
    assert paths.draft_model is not None
    args = with_draft_path(run.engine.extra_args, paths.draft_model)
    return dataclasses.replace(run, engine=dataclasses.replace(run.engine, extra_args=args))


def build_job(
    run: Run,
    *,
    vllm: str,
    host: str,
    port: int,
    deadlines: Deadlines,
    executor: dict[str, Any],
    commit: str | None,
    paths: PathMap | None = None,
    tuned_env: Mapping[str, str] | None = None,
    tunableop_dir: str | None = None,
    replica_ports: Sequence[int] = (),
    remote_replicas: RemoteReplicas | None = None,
    in_container: bool = False,
) -> Job:
    """The agent's job: every command line it runs, its environment and its deadlines.

    `tuned_env` is the vendor's tuning (the catalog's run-time values): the agent sets it under
    the user's --env, so what the user asks for wins. `tunableop_dir`: where the agent keeps
    TunableOp results per configuration, as it sees it (None: the vendor's own directory).
    remote_replicas: --replicas' servers in containers of their own (docker); in_container: the
    agent runs in a container, which numbers its GPUs from 0 (--spread dp's one server).
    """
    paths = paths or PathMap.host(run)
    run = _draft_at(run, paths)
    target = Target(vllm, host, port, paths)
    points = [_point_job(run, point, target, deadlines) for point in run.points()]
    server = None
    replicas = replicas_job(run, target, replica_ports, remote_replicas, in_container)
    if replicas is not None:  # the first server stands for all in sizing and descriptions
        first = replicas["servers"][0]
        server = ServerJob(
            argv=tuple(first["argv"]),
            health_url=first["health_url"],
            ready_timeout_s=deadlines.server_ready_s,
            stop_timeout_s=deadlines.server_stop_s,
        )
    elif any(p.needs_server for p in points):
        server = ServerJob(
            argv=tuple(server_argv(run, vllm, host, port, paths)),
            health_url=f"http://{host}:{port}/health",
            ready_timeout_s=deadlines.server_ready_s,
            stop_timeout_s=deadlines.server_stop_s,
        )
    return Job(
        run=run_record(run, paths),
        vllm=vllm,
        points=tuple(points),
        server=server,
        env=vendor_env(run),
        tool={"name": TOOL_NAME, "version": __version__, "git_commit": commit},
        executor=executor,
        client_mode=run.serve.client_mode,
        strict_host=run.strict_host,
        tuned_env=dict(tuned_env or {}),
        tunableop_dir=tunableop_dir,
        replicas=replicas,
    )
