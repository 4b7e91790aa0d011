"""Where a run's files are inside its container: the mounts and the job's paths, mapped once."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Literal

from runner.agent import tunableop
from runner.errors import PlanError
from runner.jobs import PathMap
from runner.plan import ModelRef, Run
from runner.vendors import VendorProfile

# Where things are inside the container.
RUNS_DIR = "/runs"
MODELS_DIR = "/models"
DRAFT_MODELS_DIR = "/draft-models"  # apart from /models: a name shared with the model is no clash
DATASETS_DIR = "/datasets"
HF_CACHE_DIR = "/root/.cache/huggingface"
VLLM_CACHE_DIR = "/root/.cache/vllm"
HF_TOKEN_FILE = "/run/secrets/hf_token"  # noqa: S105 (where the token file goes, not a token)
TOKEN_PATH_VAR = "HF_TOKEN_PATH"  # noqa: S105 (a variable's name)
AGENT_DIR = "/opt/vllm-bench"  # the agent's files, mounted read-only (agent_mount.py)

_VOLUME_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]+$")  # the engine's rule for volume names


def container_job_path(run_id: str) -> str:
    """Where the agent reads its job inside the container (the executor writes it there)."""
    return f"{RUNS_DIR}/.jobs/{run_id}.json"


def host_job_path(run_dir_host: Path, run_id: str) -> Path:
    """The same job file as the host sees it, under the output root mounted at /runs."""
    return run_dir_host / ".jobs" / f"{run_id}.json"


def container_model_dir(model_host_dir: Path) -> str:
    """Where a local model directory appears inside the container (/models/<name>)."""
    name = model_host_dir.name
    if not name:
        raise PlanError(f"model directory {model_host_dir} has no name to mount it under")
    return f"{MODELS_DIR}/{name}"


def in_hf_cache(model_host_dir: Path, hf_cache_host: Path | None) -> str | None:
    """Where a model lying inside the mounted HF cache is in the container, else None.

    A hub snapshot's files are symlinks into ../../blobs: mounted alone, the snapshot directory
    holds dangling links, so such a model is reached through the cache mount instead.
    """
    if hf_cache_host is None or not model_host_dir.is_relative_to(hf_cache_host):
        return None
    return str(PurePosixPath(HF_CACHE_DIR, *model_host_dir.relative_to(hf_cache_host).parts))


def container_dataset_path(dataset_host_file: Path) -> str:
    """Where a --dataset-path file appears inside the container (/datasets/<name>)."""
    if not dataset_host_file.name:
        raise PlanError(f"dataset file {dataset_host_file} has no name to mount it under")
    return f"{DATASETS_DIR}/{dataset_host_file.name}"


@dataclass(frozen=True)
class MountSpec:
    """A bind mount of a host path, or a named volume, at `target` in the container."""

    type: Literal["bind", "volume"]
    source: str
    target: str
    read_only: bool = False

    def to_dict(self, *, host_side: bool = True) -> dict[str, Any]:
        """As JSON; without host_side a bind mount's host path is left out (for a job)."""
        data: dict[str, Any] = {"type": self.type, "source": self.source, "target": self.target,
                                "read_only": self.read_only}  # fmt: skip
        if not host_side and self.type == "bind":
            del data["source"]
        return data


@dataclass(frozen=True)
class ContainerPaths:
    """One run's files in its container: the mounts, the environment that points the tools at
    them, and the paths its job gives vLLM. The spec and the job both take them from here."""

    mounts: tuple[MountSpec, ...]
    job: PathMap
    environment: dict[str, str] = field(default_factory=dict)
    tunableop_dir: str | None = None  # where the TunableOp volume is, for the agent's job


def _absolute(path: Path, what: str) -> str:
    if not PurePosixPath(path).is_absolute():
        raise PlanError(f"{what} {path} must be an absolute path to mount it into a container")
    return str(path)


def _volume(name: str, what: str) -> str:
    if not _VOLUME_NAME.match(name):
        raise PlanError(
            f"{what} {name!r} is not a docker volume name (letters, digits, _ . -; two or more)"
        )
    return name


def _model_mount(
    model: ModelRef, hf_cache_host: Path | None, root: str, what: str
) -> tuple[str, list[MountSpec]]:
    """Where vLLM finds a model in the container, and its mount (none: in the HF cache mount)."""
    if not model.local_path:
        return model.path_or_id, []  # a hub id (a dry run's uncached model): vLLM fetches it
    local = Path(model.local_path)
    cached = in_hf_cache(local, hf_cache_host)
    if cached is not None:
        return cached, []
    target = container_model_dir(local).replace(MODELS_DIR, root, 1)
    return target, [MountSpec("bind", _absolute(local, what), target, True)]


def _input_mounts(run: Run, hf_cache_host: Path | None) -> tuple[list[MountSpec], PathMap]:
    """The model, the draft model (unless the HF cache mount holds them), the dataset: read-only."""
    model, mounts = _model_mount(run.model, hf_cache_host, MODELS_DIR, "the model directory")
    draft = None
    if run.draft_model is not None:
        draft, more = _model_mount(
            run.draft_model, hf_cache_host, DRAFT_MODELS_DIR, "the draft model directory"
        )
        mounts += more
    dataset = None
    if run.serve.dataset_path:
        host_file = Path(run.serve.dataset_path)
        dataset = container_dataset_path(host_file)
        mounts.append(MountSpec("bind", _absolute(host_file, "the dataset file"), dataset, True))
    return mounts, PathMap(model, dataset, draft)


def map_paths(
    run: Run,
    profile: VendorProfile,
    *,
    run_dir_host: Path,
    hf_cache_host: Path | None = None,
    hf_token_file: Path | None = None,
    compile_cache_volume: str | None = None,
    tunableop_volume: str | None = None,
    agent_dir_host: Path | None = None,
) -> ContainerPaths:
    """The mounts of one run's container and where its job finds the model and dataset.

    Pure: paths are checked for shape only (absolute, named); nothing on the host is read.
    """
    mounts = [MountSpec("bind", _absolute(run_dir_host, "the output directory"), RUNS_DIR)]
    inputs, job = _input_mounts(run, hf_cache_host)
    mounts += inputs
    # Set by the tool so an image's own settings cannot bypass what is mounted.
    env: dict[str, str] = {}
    if hf_cache_host is not None:
        source = _absolute(hf_cache_host, "the Hugging Face cache")
        mounts.append(MountSpec("bind", source, HF_CACHE_DIR))
        env["HF_HOME"] = HF_CACHE_DIR
    if hf_token_file is not None:
        source = _absolute(hf_token_file, "the Hugging Face token file")
        mounts.append(MountSpec("bind", source, HF_TOKEN_FILE, True))
        env[TOKEN_PATH_VAR] = HF_TOKEN_FILE  # huggingface_hub reads the token from this file
    if compile_cache_volume is not None:
        volume = _volume(compile_cache_volume, "the compile cache volume")
        mounts.append(MountSpec("volume", volume, VLLM_CACHE_DIR))
        env["VLLM_CACHE_ROOT"] = VLLM_CACHE_DIR
    tunableop_dir = None
    if tunableop_volume is not None and profile.tunableop_dir is not None:
        volume = _volume(tunableop_volume, "the TunableOp volume")
        mounts.append(MountSpec("volume", volume, profile.tunableop_dir))
        tunableop_dir = profile.tunableop_dir
        # The agent tunes per configuration in a warm-up pass and runs measured servers with
        # tuning off; a value set here keeps the image's entrypoint from deciding too. A --env
        # naming either variable leaves TunableOp to the user (the entrypoint and the agent).
        if not {tunableop.TUNING, tunableop.FILENAME} & dict(run.env).keys():
            env[tunableop.TUNING] = "0"
    if agent_dir_host is not None:  # this bench-run's agent, whatever the image carries
        source = _absolute(agent_dir_host, "the agent's directory")
        mounts.append(MountSpec("bind", source, AGENT_DIR, True))
    return ContainerPaths(tuple(mounts), job, env, tunableop_dir)
