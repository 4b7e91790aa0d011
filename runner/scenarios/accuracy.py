"""Accuracy: lm-eval's tasks against the run's server, one point beside the serving sweep."""

from __future__ import annotations

import functools
import importlib.util
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from runner.agent.own import AGENT_PYTHON
from runner.errors import PlanError
from runner.jobs import Target, vendor_env
from runner.plan import Point, Run
from runner.rundir import raw_result
from runner.scenarios import Scenario, register
from runner.scenarios.judges.accuracy import judge

# --endpoint: lm-eval's API model and the server path it sends each request to
LMEVAL_MODELS = {
    "completions": ("local-completions", "/v1/completions"),
    "chat": ("local-chat-completions", "/v1/chat/completions"),
}
# requests lm-eval keeps in flight against the server
NUM_CONCURRENT = 4
# datasets' builders that read local files; any other dataset_path is a hub dataset
_LOCAL_BUILDERS = ("json", "csv", "parquet", "text", "arrow", "pandas")
# tasks scored by log-likelihood, which a chat API does not return
_LOGLIKELIHOOD = ("multiple_choice", "loglikelihood", "loglikelihood_rolling")
_OFF = ("1", "true", "yes", "on")


@dataclass(frozen=True)
class TaskInfo:
    """What the plan knows of a task before it runs: where it is defined, what it reads."""

    name: str
    source: str  # the --task-dir YAML, or "lm-eval"
    needs_hub: bool
    output_type: str | None = None


@dataclass(frozen=True)
class AccuracyParams:
    """lm-eval against the running server: its tasks, limits and API."""

    tasks: tuple[str, ...] = ()
    limit: int | None = None
    num_fewshot: int | None = None
    task_dir: str | None = None
    endpoint: str = "completions"  # a key of LMEVAL_MODELS
    num_concurrent: int = NUM_CONCURRENT

    def __post_init__(self) -> None:
        if self.limit is not None and self.limit < 1:
            raise PlanError(f"--limit {self.limit}: must be at least 1 document per task")
        if self.num_fewshot is not None and self.num_fewshot < 0:
            raise PlanError(f"--num-fewshot {self.num_fewshot}: must be 0 or more")
        if self.endpoint not in LMEVAL_MODELS:
            raise PlanError(
                f"--endpoint {self.endpoint!r}: choose one of {', '.join(LMEVAL_MODELS)}"
            )


def _yaml_loader() -> type[yaml.SafeLoader]:
    """A safe loader that reads lm-eval's `!function module.name` tags as plain text."""

    class Loader(yaml.SafeLoader):
        pass

    def tag(loader: yaml.SafeLoader, _: str, node: yaml.Node) -> str:
        return str(node.value) if isinstance(node, yaml.ScalarNode) else ""

    Loader.add_multi_constructor("!", tag)
    return Loader


def _needs_hub(cfg: Mapping[str, Any], folder: Path) -> bool:
    if cfg.get("custom_dataset"):
        return False
    path = cfg.get("dataset_path")
    if not isinstance(path, str):
        return "group" in cfg or "include" in cfg  # a group of tasks defined elsewhere
    return path not in _LOCAL_BUILDERS and not (folder / path).is_dir() and not Path(path).is_dir()


@functools.cache
def dir_tasks(task_dir: str) -> dict[str, TaskInfo]:
    """The tasks and groups the YAMLs of --task-dir define, by name."""
    found: dict[str, TaskInfo] = {}
    loader = _yaml_loader()
    for path in sorted(Path(task_dir).rglob("*.yaml")):
        try:
            cfg = yaml.load(path.read_text(encoding="utf-8"), Loader=loader)  # noqa: S506
        except (OSError, yaml.YAMLError) as exc:
            raise PlanError(f"--task-dir: cannot read {path}: {exc}") from None
        if not isinstance(cfg, dict):
            continue
        for key in ("task", "group"):
            name = cfg.get(key)
            if isinstance(name, str):
                output = cfg.get("output_type")
                found[name] = TaskInfo(
                    name,
                    str(path),
                    _needs_hub(cfg, path.parent),
                    output if isinstance(output, str) else None,
                )
    return found


def lmeval_available() -> bool:
    return importlib.util.find_spec("lm_eval") is not None


@functools.cache
def registry_tasks() -> dict[str, TaskInfo]:
    """lm-eval's own tasks and groups (its TaskManager; a few seconds), by name."""
    from lm_eval.tasks import (  # type: ignore[import-untyped]  # noqa: PLC0415 - only when chosen
        TaskManager,
    )

    found: dict[str, TaskInfo] = {}
    for name, entry in TaskManager().task_index.items():
        cfg = entry.cfg if isinstance(getattr(entry, "cfg", None), dict) else {}
        output = cfg.get("output_type")
        folder = Path(str(getattr(entry, "yaml_path", "") or ".")).parent
        found[name] = TaskInfo(
            name, "lm-eval", _needs_hub(cfg, folder), output if isinstance(output, str) else None
        )
    return found


def parse_tasks(text: str | None) -> tuple[str, ...]:
    names = tuple(dict.fromkeys(t.strip() for t in (text or "").split(",") if t.strip()))
    if text is not None and not names:
        raise PlanError("--tasks: give lm-eval task names, such as mmlu_pro,gsm8k")
    return names


def task_info(params: AccuracyParams) -> dict[str, TaskInfo]:
    """Every task asked for, found in --task-dir or lm-eval's registry; PlanError for others.

    Without lm-eval on this host (a container runs it) the names outside --task-dir are
    checked by lm-eval when the point runs.
    """
    local = dir_tasks(params.task_dir) if params.task_dir else {}
    infos = {name: local[name] for name in params.tasks if name in local}
    rest = [name for name in params.tasks if name not in local]
    if not rest or not lmeval_available():
        return infos
    known = registry_tasks()
    unknown = [name for name in rest if name not in known]
    if unknown:
        where = f" or in --task-dir {params.task_dir}" if params.task_dir else ""
        raise PlanError(
            f"--tasks: unknown lm-eval task(s) {', '.join(unknown)}: not in lm-eval's registry"
            f"{where} (list them with `lm-eval ls tasks`)"
        )
    infos.update({name: known[name] for name in rest})
    return infos


def params_from(values: Mapping[str, Any]) -> AccuracyParams:
    chosen = "accuracy" in (values.get("scenario") or ())
    tasks = parse_tasks(values.get("tasks"))
    given = [f for f in ("tasks", "limit", "num_fewshot", "task_dir") if values.get(f) is not None]
    if given and not chosen:
        flags = ", ".join("--" + f.replace("_", "-") for f in given)
        raise PlanError(f"{flags}: for --scenario accuracy; add it or drop them")
    if chosen and not tasks:
        raise PlanError("--scenario accuracy needs --tasks (lm-eval task names, such as gsm8k)")
    task_dir = values.get("task_dir")
    if task_dir is not None:
        folder = Path(task_dir).expanduser().resolve()
        if not folder.is_dir():
            raise PlanError(f"--task-dir {task_dir}: no such folder of lm-eval task YAMLs")
        task_dir = str(folder)
    params = AccuracyParams(
        tasks=tasks,
        limit=values.get("limit"),
        num_fewshot=values.get("num_fewshot"),
        task_dir=task_dir,
        endpoint=values.get("endpoint") or "completions",
    )
    if chosen:
        _check_endpoint(params, task_info(params))
    return params


def _check_endpoint(params: AccuracyParams, infos: Mapping[str, TaskInfo]) -> None:
    if params.endpoint != "chat":
        return
    scored = [i.name for i in infos.values() if i.output_type in _LOGLIKELIHOOD]
    if scored:
        raise PlanError(
            f"--endpoint chat: {', '.join(scored)} scored by log-likelihood, which a chat API "
            "does not return; use --endpoint completions"
        )


def offline(run: Run, environ: Mapping[str, str]) -> bool:
    """Whether lm-eval will run with HF_HUB_OFFLINE: the run's environment as the agent's."""
    value = vendor_env(run).get("HF_HUB_OFFLINE", environ.get("HF_HUB_OFFLINE", ""))
    return value.strip().lower() in _OFF


def check_host(run: Run, environ: Mapping[str, str]) -> None:
    """What the host decides: lm-eval present for a local run, the hub reachable if needed."""
    params = ACCURACY.params_of(run)
    if run.image is None and not lmeval_available():
        raise PlanError(
            "--scenario accuracy runs lm-eval in this venv, which lacks it: "
            "pip install -e '.[eval]' (or make venv)"
        )
    if run.image is not None and params.task_dir is not None:
        raise PlanError(
            "--task-dir is read where the agent runs, and container runs do not mount it yet: "
            "use --executor local"
        )
    if not offline(run, environ):
        return
    hub = [i.name for i in task_info(params).values() if i.needs_hub]
    hub += [n for n in params.tasks if n not in task_info(params)]  # unchecked: may need it
    if hub:
        why = (
            "the model is a local directory, so the run is offline"
            if run.model.local_path is not None
            else "HF_HUB_OFFLINE is set"
        )
        raise PlanError(
            f"--tasks {', '.join(hub)}: lm-eval downloads their datasets from the hub, but {why}: "
            "give them in --task-dir, or --env HF_HUB_OFFLINE=0 to let lm-eval download"
        )


def points(run: Run) -> list[Point]:
    return [Point("accuracy", "accuracy", num_prompts=ACCURACY.params_of(run).limit)]


def served_name(run: Run, target: Target) -> str:
    """The name the server answers to: --served-model-name's first, else the model's path."""
    for key, value in run.engine.extra_args:
        if key == "served-model-name" and value:
            return value.split()[0]
    return target.paths.model


def accuracy_argv(run: Run, point: Point, target: Target) -> list[str]:
    params = ACCURACY.params_of(run)
    model, path = LMEVAL_MODELS[params.endpoint]
    base = f"http://{target.host}:{target.port}"
    model_args = [
        f"base_url={base}{path}",
        f"model={served_name(run, target)}",
        f"tokenizer={target.paths.model}",
        f"num_concurrent={params.num_concurrent}",
        "max_retries=3",
    ]
    # lm-eval truncates prompts to this; its own default (2048) may be below the model's
    max_length = run.engine.max_model_len or run.model.max_position_embeddings()
    if max_length is not None:
        model_args.append(f"max_length={max_length}")
    return [
        AGENT_PYTHON, "-m", "runner.agent.lmeval",
        "--result", raw_result(point.id),
        "--health", f"{base}/health",
        "--",
        "--model", model,
        "--model_args", ",".join(model_args),
        "--tasks", ",".join(params.tasks),
        "--batch_size", "1",
        "--seed", "0",
        *([] if params.limit is None else ["--limit", str(params.limit)]),
        *([] if params.num_fewshot is None else ["--num_fewshot", str(params.num_fewshot)]),
        *([] if params.task_dir is None else ["--include_path", params.task_dir]),
        *(["--apply_chat_template"] if params.endpoint == "chat" else []),
    ]  # fmt: skip


ACCURACY: Scenario[AccuracyParams] = register(
    Scenario(
        name="accuracy",
        help="accuracy: lm-eval's --tasks against the run's server (beside the serving sweep)",
        order=15,
        needs_server=True,
        params_type=AccuracyParams,
        params_from=params_from,
        points=points,
        argv=accuracy_argv,
        judge=judge,
        check_host=check_host,
    )
)
