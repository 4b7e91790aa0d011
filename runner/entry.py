"""The one library entry point: a RunRequest becomes a validated plan and the executor to run it."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from runner import scenarios as registry
from runner.checkpoint import label_plan
from runner.engine_flags import draft_model, with_draft_path
from runner.errors import PlanError
from runner.executors.base import EventSink, Executor
from runner.executors.docker import DockerExecutor, DockerSettings
from runner.executors.docker_replicas import allowed_cpus as replica_cpus_allowed
from runner.executors.local import LocalExecutor, LocalSettings
from runner.images import docker_ops
from runner.images.catalog import Catalog, load_catalog, resolve_image_choice
from runner.jobs import Deadlines
from runner.models import DEFAULT_ENDPOINT, HubSettings, ModelFetch, resolve_plan
from runner.plan import (
    EngineConfig,
    ModelRef,
    Plan,
    Run,
    make_run_id,
    parse_engine_args,
    parse_env,
)
from runner.replicas import Replicas, plan_replicas
from runner.request import DEFAULT_OUTPUT_LEN, RunRequest
from runner.vendors import detect_vendor, discover, parse_gpus, profile_for

Note = Callable[[str], None]


@dataclass(frozen=True)
class HostSettings:
    """What the environment says, read once at the edge: the HF home, the hub, the engine."""

    hf_home: Path  # where models are downloaded and what containers mount
    hub: HubSettings
    environ: Mapping[str, str]

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> HostSettings:
        home = Path(environ.get("HF_HOME") or Path.home() / ".cache" / "huggingface").expanduser()
        offline = environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")
        hub = HubSettings(
            cache_dir=home / "hub",  # inside the HF home the docker executor mounts
            token=environ.get("HF_TOKEN") or None,
            endpoint=environ.get("HF_ENDPOINT") or DEFAULT_ENDPOINT,
            offline=offline,
        )
        return cls(hf_home=home, hub=hub, environ=dict(environ))


@dataclass(frozen=True)
class Prepared:
    """A plan validated once, the executor that runs it, and why that executor was chosen."""

    plan: Plan
    executor: Executor
    executor_name: str
    why: str  # empty when the executor was named


def engine_answers(environ: Mapping[str, str]) -> bool:
    """True if a Docker engine answers at DOCKER_HOST (or the default socket)."""
    try:
        docker_ops.connect(dict(environ))
    except docker_ops.DockerError:
        return False
    return True


def choose_executor(request: RunRequest, environ: Mapping[str, str]) -> tuple[str, str]:
    """The executor `--executor auto` means here, and why (empty when it was named)."""
    if request.executor != "auto":
        return request.executor, ""
    container_flags = request.container_flags()
    if request.replicas != "1":  # --gpus then names this host's GPUs to split into sets
        container_flags = [flag for flag in container_flags if flag != "--gpus"]
        if not container_flags:
            return "local", "auto: --replicas runs on this host (docker: --executor docker)"
    if container_flags:
        return "docker", f"auto: {', '.join(container_flags)} given"
    if request.vllm_path or request.port is not None:
        return "local", "auto: --vllm/--port name this host's vLLM"
    if engine_answers(environ):
        return "docker", "auto: a Docker engine answers; --executor local uses this host's vllm"
    return "local", "auto: no Docker engine answers; running this host's vllm"


@dataclass(frozen=True)
class _RunParts:
    """Everything of a Run but its image, validated: the image waits for the executor choice."""

    vendor: str
    model: ModelRef
    engine: EngineConfig
    params: Mapping[str, object]  # every scenario's, by its name
    scenarios: tuple[str, ...]
    draft: ModelRef | None = None  # --speculative-config's model
    replicas: Replicas | None = None  # --replicas > 1


def _with_draft(engine: EngineConfig) -> tuple[EngineConfig, ModelRef | None]:
    """The draft model of --speculative-config checked like --model; vLLM gets its full path."""
    text = draft_model(engine.extra_args)
    if text is None:
        return engine, None
    draft = ModelRef.resolve(text, flag="--engine-arg speculative-config's model")
    args = with_draft_path(engine.extra_args, draft.path_or_id)
    return dataclasses.replace(engine, extra_args=args), draft


def _run_parts(request: RunRequest) -> _RunParts:
    model = ModelRef.resolve(request.model)
    engine = EngineConfig(
        tp=request.tp,
        dtype=request.dtype,
        quantization=request.quantization,
        kv_cache_dtype=request.kv_cache_dtype,
        max_model_len=request.max_model_len,
        max_num_seqs=request.max_num_seqs,
        max_num_batched_tokens=request.max_num_batched_tokens,
        gpu_memory_utilization=request.gpu_memory_utilization,
        chunked_prefill=request.chunked_prefill,
        prefix_caching=request.prefix_caching,
        extra_args=parse_engine_args(request.engine_arg),
    )
    engine, draft = _with_draft(engine)
    # Every scenario's parameters from the flags, chosen or not: run.json records them all.
    flags = vars(request)
    params = {name: registry.get(name).params_from(flags) for name in registry.names()}
    vendor = request.vendor or detect_vendor()
    profile_for(vendor)  # an unknown vendor: one line naming the known ones
    scenarios = tuple(dict.fromkeys(request.scenario or ("serve",)))
    replicas = _replicas(request, vendor, engine.tp, scenarios)
    return _RunParts(vendor, model, engine, params, scenarios, draft, replicas)


def _replicas(
    request: RunRequest, vendor: str, tp: int, scenarios: tuple[str, ...]
) -> Replicas | None:
    """--replicas and --spread checked against this host's GPUs (or CPUs), before anything."""
    if request.replicas == "1" and request.spread is None:
        return None
    return plan_replicas(
        replicas=request.replicas,
        spread=request.spread,
        tp=tp,
        vendor=vendor,
        uses_gpus=profile_for(vendor).uses_gpus,
        scenarios=scenarios,
        gpus=parse_gpus(request.gpus) if request.gpus else (),
        discover=lambda: [gpu.index for gpu in discover(vendor)],
        # the CPUs the replicas will share: --cpus for docker's containers, else bench-run's
        cpus=lambda: replica_cpus_allowed(request.cpus),
    )


def _build_run(request: RunRequest, parts: _RunParts, image: str | None, run_id: str) -> Run:
    return Run(
        run_id=run_id,
        vendor=parts.vendor,
        model=parts.model,
        engine=parts.engine,
        scenarios=parts.scenarios,
        params=parts.params,
        input_len=request.input_len,
        # latency and throughput need a length; sharegpt's serving sweep keeps its own
        output_len=DEFAULT_OUTPUT_LEN if request.output_len is None else request.output_len,
        env=parse_env(request.env),
        image=image,
        draft_model=parts.draft,
        replicas=parts.replicas,
        strict_host=request.strict_host,
        expect_partition=request.partition,
    )


def check_image_vendor(image: str, vendor: str, catalog: Catalog) -> None:
    """A catalog variant is built for one vendor: refuse running another vendor's on it."""
    if image not in catalog:
        return  # an outside image says nothing of its vendor until it runs
    variant = catalog[image]
    if variant.vendor != vendor:
        raise PlanError(
            f"--image {image} is a {variant.vendor} image, but the run is for --vendor {vendor}: "
            f"choose a {vendor} variant (bench-images list) or --vendor {variant.vendor}"
        )


def _image_for(request: RunRequest, vendor: str, executor: str) -> tuple[str | None, str]:
    """The image a container run uses (the vendor's default when none is given), and a note."""
    if executor == "local":
        return None, ""
    catalog = load_catalog()
    note = ""
    image = request.image
    if not image:
        image = profile_for(vendor).default_image
        note = f", image {image} (the {vendor} default; see --image)"
    image = resolve_image_choice(image, catalog)
    check_image_vendor(image, vendor, catalog)
    return image, note


def make_executor(
    request: RunRequest,
    name: str,
    image: str | None,
    host: HostSettings,
    on_image_event: EventSink | None = None,
) -> Executor:
    """The executor named, configured from the request and the host's settings."""
    deadlines = Deadlines(server_ready_s=request.server_timeout, point_s=request.point_timeout)
    if name == "docker":
        assert image is not None  # _image_for gives every container run an image
        return DockerExecutor(
            DockerSettings(
                out_root=request.out_dir,
                image=image,
                pull=request.pull,
                gpus=parse_gpus(request.gpus) if request.gpus else (),
                cpus=request.cpus,
                shm_size=request.shm_size,
                privileged=request.privileged,
                keep=request.keep,
                hf_cache=host.hf_home,  # mounted if it exists at container start
                hf_token=host.hub.token,
                deadlines=deadlines,
                base_image=request.base_image,
                wheelhouse=request.wheelhouse,
                pip_extra_index_url=request.pip_extra_index_url,
            ),
            on_image_event=on_image_event,
        )
    request.check_local()
    return LocalExecutor(
        LocalSettings(
            out_root=request.out_dir,
            vllm=request.vllm_path,
            host=request.host,
            port=request.port,
            deadlines=deadlines,
        )
    )


def model_fetch(request: RunRequest) -> ModelFetch:
    return ModelFetch(
        revision=request.revision,
        include=tuple(request.hf_include),
        exclude=tuple(p for p in request.hf_exclude if p),  # --hf-exclude '' excludes nothing
        download=not request.no_download,
    )


def prepare(
    request: RunRequest,
    host: HostSettings,
    *,
    on_image_event: EventSink | None = None,
    note: Note | None = None,
) -> Prepared:
    """Validate the request once, choose the executor, resolve the model; start nothing.

    Every PlanError (bad input, exit 2) comes before any engine is asked or model downloaded,
    but a --quantization the checkpoint contradicts: that needs its config.json, so a hub model's
    download first. A gated or missing hub model fails here too, before anything starts.
    """
    return prepare_many([request], host, on_image_event=on_image_event, note=note)


def prepare_many(
    requests: Sequence[RunRequest],
    host: HostSettings,
    *,
    run_ids: Sequence[str] | None = None,
    on_image_event: EventSink | None = None,
    note: Note | None = None,
) -> Prepared:
    """prepare() for many configurations (a plan file's): one Run each, every one validated
    before anything is asked of an engine or the hub, and one executor for them all.

    The executor, its image and the hub options come from the first request: a plan file
    keeps them the same for every configuration. `run_ids` name the runs (default: made).
    """
    if requests[0].executor == "k8s":
        # Imported here: the kubernetes client is an optional extra, and k8s imports this module.
        from runner.executors.k8s import prepare_k8s  # noqa: PLC0415

        return prepare_k8s(requests, host.environ, run_ids=run_ids, note=note)
    for request in requests:
        request.check()
    parts = [_run_parts(request) for request in requests]
    first = requests[0]
    name, why = choose_executor(first, host.environ)
    note = note or _quiet
    image, image_note = _image_for(first, parts[0].vendor, name)
    ids = run_ids or [make_run_id(p.model, p.vendor, p.engine) for p in parts]
    plan = Plan(
        runs=tuple(
            _build_run(request, part, image, run_id)
            for request, part, run_id in zip(requests, parts, ids, strict=True)
        )
    )
    if name not in ("local", "docker") and any(part.replicas for part in parts):
        raise PlanError(
            f"--replicas runs with --executor local or docker for now: --executor {name} does "
            "not start replicas"
        )
    for run in plan.runs:  # what only the host's environment can tell (lm-eval, the hub)
        for scenario in run.scenarios:
            registry.get(scenario).check_host(run, host.environ)
    executor = make_executor(first, name, image, host, on_image_event)
    plan = resolve_plan(plan, model_fetch(first), host.hub, dry_run=first.dry_run, note=note)
    plan = label_plan(plan, note)  # the checkpoint's quantization, once the model is local
    _say_translations(parts, note)
    return Prepared(plan, executor, name, why + image_note if why else image_note.lstrip(", "))


def _say_translations(parts: Sequence[_RunParts], note: Note) -> None:
    """The engine flags current vLLM renamed or dropped, each said once (nothing left to refuse)."""
    said: set[str] = set()
    for part in parts:
        for done in part.engine.translated:
            passed = f"passing {done.passed}" if done.passed else "dropped"
            line = f"note: --engine-arg {done.asked}: {passed}: {done.reason}"
            if line not in said:
                said.add(line)
                note(line)


# Flags that place a run on this host; in a cluster the scheduler and device plugin place pods.
_HOST_ONLY = ("gpus", "cpus", "keep", "base_image", "wheelhouse", "pip_extra_index_url",
              "vllm_path", "port")  # fmt: skip


def _check_cluster_request(request: RunRequest) -> None:
    """Refuse what a cluster run cannot honour, one line each."""
    request.check()
    given = [name for name in _HOST_ONLY if getattr(request, name)]
    if given:
        flag = "--" + given[0].replace("_", "-").replace("vllm-path", "vllm")
        raise PlanError(
            f"{flag} is for this host (--executor docker or local); in a cluster the scheduler "
            "and the GPU device plugin place each pod: drop it (--node-selector, --gpu-product "
            "choose nodes)"
        )
    if getattr(request, "replicas", "1") != "1" or getattr(request, "spread", None):
        raise PlanError(
            "--replicas and --spread run with --executor local or docker: drop them for k8s"
        )
    if request.revision or request.hf_include:
        raise PlanError(
            "--revision and --hf-include choose files of a download here; in a pod vLLM "
            "downloads the hub model itself: drop them (--engine-arg revision=REV pins one)"
        )


def cluster_plan(
    requests: Sequence[RunRequest],
    *,
    run_ids: Sequence[str] | None = None,
    note: Note | None = None,
) -> tuple[Plan, str]:
    """The plan a cluster runs, and the image choice (a catalog variant or a reference).

    Validated as prepare_many() validates it, but nothing is asked of an engine, a cluster or
    the hub: a hub model stays a repo id (the pod downloads it), a local one stays a path (the
    manifests refuse it unless it lies on the model PVC).
    """
    for request in requests:
        _check_cluster_request(request)
    parts = [_run_parts(request) for request in requests]
    note = note or _quiet
    image, image_note = _image_for(requests[0], parts[0].vendor, "k8s")
    assert image is not None  # every container run has an image
    ids = run_ids or [make_run_id(p.model, p.vendor, p.engine) for p in parts]
    plan = Plan(
        runs=tuple(
            _build_run(request, part, image, run_id)
            for request, part, run_id in zip(requests, parts, ids, strict=True)
        )
    )
    plan = label_plan(plan, note)  # a local model's checkpoint quantization (no download)
    if image_note:
        note(image_note.lstrip(", "))
    _say_translations(parts, note)
    return plan, image


def _quiet(text: str) -> None:
    """Notes nobody asked to see."""
