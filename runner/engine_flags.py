"""Engine flags current vLLM removed: translated where a replacement exists, else refused."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from runner.errors import PlanError

EngineArgs = tuple[tuple[str, str | None], ...]
SPEC_CONFIG = "speculative-config"
# Values of the old --speculative-model that name a method, not a model (vLLM 0.32 still reads
# them as the ngram method inside --speculative-config).
_NGRAM = ("ngram", "[ngram]")


@dataclass(frozen=True)
class Removed:
    """One flag vLLM removed: what bench-run does with it, why, and which change removed it."""

    action: Literal["drop", "refuse", "speculative"]
    reason: str  # one line: why it is gone, and what replaced it (if anything did)
    removed_by: str  # the vLLM release and pull request that removed it
    key: str | None = None  # speculative: the --speculative-config key it became
    integer: bool = False  # speculative: the value is a positive integer


_SPEC_PR = "vLLM 0.8.x, PR #15466, deprecated by #14434"
LEGACY_FLAGS: dict[str, Removed] = {
    "disable-log-requests": Removed(
        "drop", "request logging is off by default now; --enable-log-requests turns it on",
        "vLLM 0.12.0, PR #29402, deprecated by #21739",
    ),
    "use-v2-block-manager": Removed(
        "drop", "block manager v2 is the only one (v1 was removed)",
        "a no-op since PR #8704, vLLM 0.6.x; last mentions removed by PR #13492",
    ),
    "num-scheduler-steps": Removed(
        "refuse", "multi-step scheduling was removed with the V0 engine; V1 schedules every "
        "step; the nearest is --async-scheduling", "PR #22779 (with #22138), Aug 2025",
    ),
    "swap-space": Removed(
        "refuse", "V1 preempts by recomputing and never swaps the KV cache to CPU memory; CPU "
        "offloading is --kv-offloading-size", "vLLM 0.18.0, PR #36216",
    ),
    "max-seq-len-to-capture": Removed(
        "refuse", "V1 captures CUDA/HIP graphs by batch size, whatever the sequence length"
        "; the nearest is --max-cudagraph-capture-size", "vLLM 0.11.0, PR #25543",
    ),
    "device": Removed(
        "refuse", "vLLM runs on the platform it was built for; choose GPUs with --gpus, the "
        "CPU with --vendor cpu", "vLLM 0.10.0, PR #21349, deprecated by #18399",
    ),
    "speculative-model": Removed(
        "speculative", "became --speculative-config's model", _SPEC_PR, "model"
    ),
    "num-speculative-tokens": Removed(
        "speculative", "became --speculative-config's num_speculative_tokens", _SPEC_PR,
        "num_speculative_tokens", integer=True,
    ),
    "speculative-draft-tensor-parallel-size": Removed(
        "speculative", "became --speculative-config's draft_tensor_parallel_size", _SPEC_PR,
        "draft_tensor_parallel_size", integer=True,
    ),
    "speculative-max-model-len": Removed(
        "speculative", "became --speculative-config's max_model_len", _SPEC_PR,
        "max_model_len", integer=True,
    ),
    "ngram-prompt-lookup-max": Removed(
        "speculative", "became --speculative-config's prompt_lookup_max", _SPEC_PR,
        "prompt_lookup_max", integer=True,
    ),
    "ngram-prompt-lookup-min": Removed(
        "speculative", "became --speculative-config's prompt_lookup_min", _SPEC_PR,
        "prompt_lookup_min", integer=True,
    ),
    "speculative-disable-by-batch-size": Removed(
        "refuse", "speculative decoding is no longer switched off by batch size; the setting "
        "is gone", "PR #15466; the config key too, PR #35060",
    ),
}  # fmt: skip


_KEEP = Removed("drop", "", "")  # stands for a flag the table does not hold (never acted on)


@dataclass(frozen=True)
class Translation:
    """What was asked, what vLLM is given instead ('' when nothing), and why."""

    asked: str
    passed: str
    reason: str


def _flag(key: str, value: str | None) -> str:
    return f"--{key}" if value is None else f"--{key} {value}"


def _refusal(key: str, entry: Removed) -> PlanError:
    return PlanError(
        f"--engine-arg {key}: current vLLM has no --{key} ({entry.removed_by}): "
        f"{entry.reason}; drop it"
    )


def _spec_value(key: str, value: str | None, entry: Removed) -> object:
    if value is None or not value.strip():
        raise PlanError(f"--engine-arg {key} needs a value, such as {key}=VALUE")
    if not entry.integer:
        return value.strip()
    if not value.strip().isdigit() or int(value) < 1:
        raise PlanError(f"--engine-arg {key}={value}: must be a positive integer")
    return int(value)


def _speculative_config(spec: Sequence[tuple[str, str | None]]) -> dict[str, Any]:
    """The --speculative-config object the old speculative flags meant, checked as vLLM did."""
    config: dict[str, Any] = {}
    for key, value in spec:
        entry = LEGACY_FLAGS[key]
        assert entry.key is not None
        config[entry.key] = _spec_value(key, value, entry)
    if "model" not in config:
        raise PlanError(
            f"--engine-arg {spec[0][0]} needs speculative-model (the draft model), as it did "
            "in the vLLM that had it; or give speculative-config='{...}' instead"
        )
    if config["model"] in _NGRAM:
        config["method"] = "ngram"
        del config["model"]
    elif "num_speculative_tokens" not in config:
        raise PlanError(
            "--engine-arg speculative-model needs num-speculative-tokens=N (tokens the draft "
            "model proposes per step)"
        )
    return config


def translate(args: EngineArgs) -> tuple[EngineArgs, tuple[Translation, ...]]:
    """The engine flags as current vLLM takes them, and each translation made on the way.

    A removed flag with a replacement is rewritten (the old speculative flags together become
    one --speculative-config where the first of them stood); one whose effect is now the default
    is dropped; any other is refused with one PlanError naming what replaced it or that it is gone.
    """
    out: list[tuple[str, str | None]] = []
    done: list[Translation] = []
    spec = [(k, v) for k, v in args if LEGACY_FLAGS.get(k, _KEEP).action == "speculative"]
    for key, value in args:
        entry = LEGACY_FLAGS.get(key)
        if entry is None:
            out.append((key, value))
        elif entry.action == "refuse":
            raise _refusal(key, entry)
        elif entry.action == "drop":
            reason = f"{entry.reason}; {entry.removed_by}"
            done.append(Translation(_flag(key, value), "", reason))
        elif (key, value) == spec[0]:  # the speculative flags, once, where the first stood
            if any(k == SPEC_CONFIG for k, _ in args):
                raise PlanError(
                    f"--engine-arg {key} and speculative-config both given: put everything in "
                    "speculative-config (the old flags became its keys)"
                )
            passed = json.dumps(_speculative_config(spec))
            out.append((SPEC_CONFIG, passed))
            asked = " ".join(_flag(k, v) for k, v in spec)
            reason = f"the speculative flags became keys of --speculative-config; {_SPEC_PR}"
            done.append(Translation(asked, _flag(SPEC_CONFIG, passed), reason))
    return tuple(out), tuple(done)


# -- --speculative-config and its draft model ---------------------------------------------------


def speculative_config(args: EngineArgs) -> dict[str, Any] | None:
    """The --speculative-config object given (directly or by translation), None when none."""
    values = [value for key, value in args if key == SPEC_CONFIG]
    if not values:
        return None
    if len(values) > 1:
        raise PlanError("--engine-arg speculative-config is given twice: give it once")
    try:
        config = json.loads(values[0] or "")
    except json.JSONDecodeError as exc:
        raise PlanError(
            f"--engine-arg speculative-config is not JSON ({exc.msg}): give an object such as "
            '\'{"model": "org/draft", "num_speculative_tokens": 5}\''
        ) from None
    if not isinstance(config, dict):
        raise PlanError("--engine-arg speculative-config must be a JSON object ({...})")
    return config


def draft_model(args: EngineArgs) -> str | None:
    """The draft model named in --speculative-config ('model'), None for methods without one."""
    config = speculative_config(args)
    if config is None:
        return None
    model = config.get("model")
    if model is None or (isinstance(model, str) and model.strip() in _NGRAM):
        return None
    if not isinstance(model, str) or not model.strip():
        raise PlanError(
            "--engine-arg speculative-config: 'model' must be a Hugging Face repo id or a "
            "local model directory"
        )
    return model.strip()


def draft_revision(args: EngineArgs) -> str | None:
    """The draft model's revision in --speculative-config, when one is given."""
    revision = (speculative_config(args) or {}).get("revision")
    return revision if isinstance(revision, str) and revision.strip() else None


def with_draft_path(args: EngineArgs, path: str) -> EngineArgs:
    """The flags with --speculative-config's model replaced by `path` (where vLLM finds it)."""
    config = speculative_config(args)
    if config is None or config.get("model") == path:
        return args
    config["model"] = path
    passed = json.dumps(config)
    return tuple((key, passed if key == SPEC_CONFIG else value) for key, value in args)
