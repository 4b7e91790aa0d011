"""The plan: frozen, validated descriptions of what to run (pure but for reading config.json)."""

from __future__ import annotations

import functools
import hashlib
import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields, is_dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from runner import scenarios as registry
from runner.engine_flags import Translation, translate
from runner.errors import PlanError
from runner.vendors import parse_partition, profile_for

if TYPE_CHECKING:
    from runner.checkpoint import Quantization
    from runner.replicas import Replicas
    from runner.scenarios.latency import LatencyParams
    from runner.scenarios.serve import ServeParams
    from runner.scenarios.throughput import ThroughputParams

PLAN_SCHEMA = 1

_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")
_ENGINE_KEY = re.compile(r"^[a-z0-9][a-z0-9-]*$")


@functools.lru_cache(maxsize=64)
def _parsed_config(path: str, mtime_ns: int, size: int) -> Any:
    del mtime_ns, size  # the cache key: a config.json rewritten since is read again
    return json.loads(Path(path).read_text())


def model_config(model_dir: Path | str) -> Any:
    """A model directory's config.json, parsed once per model (a plan validates runs by the
    thousand); PlanError when it cannot be read. Callers must not change what it returns."""
    path = Path(model_dir) / "config.json"
    try:
        stat = path.stat()
        return _parsed_config(str(path), stat.st_mtime_ns, stat.st_size)
    except (OSError, json.JSONDecodeError) as exc:
        raise PlanError(f"cannot read {model_dir}/config.json: {exc}") from None


def parse_engine_args(items: Sequence[str]) -> tuple[tuple[str, str | None], ...]:
    """Parse repeated `--engine-arg KEY=VALUE` (or a bare `KEY` for a switch) into vLLM flags."""
    parsed: list[tuple[str, str | None]] = []
    for item in items:
        key, sep, value = item.partition("=")
        key = key.strip().lstrip("-").replace("_", "-")
        if not _ENGINE_KEY.match(key):
            raise PlanError(
                f"--engine-arg {item!r}: expected KEY=VALUE or KEY (a vLLM flag name, "
                "such as enforce-eager or block-size=16)"
            )
        parsed.append((key, value if sep else None))
    return tuple(parsed)


def parse_env(items: Sequence[str]) -> tuple[tuple[str, str], ...]:
    """Parse repeated `--env KEY=VALUE` into environment variables for vLLM."""
    parsed: list[tuple[str, str]] = []
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", key):
            raise PlanError(
                f"--env {item!r}: expected NAME=VALUE, such as VLLM_CPU_KVCACHE_SPACE=4"
            )
        parsed.append((key, value))
    return tuple(parsed)


def format_rate(qps: float) -> str:
    """A request rate exactly as given ('inf', '3', '0.5'): it names points and files."""
    if math.isinf(qps):
        return "inf"
    return str(int(qps)) if qps.is_integer() else repr(qps)


@dataclass(frozen=True)
class ModelRef:
    """A model: a local directory holding config.json, or a Hugging Face repo id."""

    source: str
    local_path: str | None = None

    @classmethod
    def resolve(cls, text: str, cwd: Path | None = None, flag: str = "--model") -> ModelRef:
        """`flag` names where the text came from in messages (the draft model: its option)."""
        text = text.strip()
        if not text:
            raise PlanError(
                f"{flag} is empty: give a Hugging Face repo id or a local model directory"
            )
        base = cwd or Path.cwd()
        looks_like_path = text.startswith(("/", "./", "../", "~")) or text in (".", "..")
        candidate = (base / Path(text).expanduser()).resolve()
        if looks_like_path or candidate.exists():
            if not candidate.is_dir():
                raise PlanError(f"model directory {candidate} does not exist: check {flag}")
            if not (candidate / "config.json").is_file():
                raise PlanError(
                    f"model directory {candidate} has no config.json: point {flag} at a "
                    "Hugging Face model directory"
                )
            return cls(source=text, local_path=str(candidate))
        if not _REPO_ID.match(text):
            raise PlanError(
                f"{flag} {text!r} is neither an existing directory nor a Hugging Face repo id "
                "(owner/name)"
            )
        return cls(source=text)

    @property
    def path_or_id(self) -> str:
        """What vLLM is given: the absolute directory, or the repo id."""
        return self.local_path or self.source

    @property
    def short_name(self) -> str:
        return Path(self.path_or_id).name or self.source

    def max_position_embeddings(self) -> int | None:
        """The context length the local config.json declares, when it declares one."""
        if self.local_path is None:
            return None
        config = model_config(self.local_path)
        value = config.get("max_position_embeddings") if isinstance(config, dict) else None
        return value if isinstance(value, int) else None


@dataclass(frozen=True)
class EngineConfig:
    """vLLM engine settings shared by `vllm serve` and the offline benchmarks."""

    tp: int = 1
    dtype: str | None = None
    quantization: str | None = None
    kv_cache_dtype: str | None = None
    max_model_len: int | None = None
    max_num_seqs: int | None = None
    max_num_batched_tokens: int | None = None
    gpu_memory_utilization: float | None = None
    chunked_prefill: bool | None = None
    prefix_caching: bool | None = None
    extra_args: tuple[tuple[str, str | None], ...] = ()
    # Flags current vLLM removed, as asked and as passed (engine_flags.py): filled from extra_args
    translated: tuple[Translation, ...] = ()
    # What the weights are: the checkpoint's quantization label, else --quantization (checkpoint.py)
    precision: str | None = None

    def __post_init__(self) -> None:
        args, done = translate(self.extra_args)
        object.__setattr__(self, "extra_args", args)  # frozen: set once, while validating
        object.__setattr__(self, "translated", self.translated + done)
        if self.tp < 1:
            raise PlanError(f"--tp {self.tp}: tensor parallel size must be at least 1")
        for name in ("max_model_len", "max_num_seqs", "max_num_batched_tokens"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise PlanError(f"--{name.replace('_', '-')} {value}: must be a positive integer")
        gmu = self.gpu_memory_utilization
        if gmu is not None and not 0 < gmu <= 1:
            raise PlanError(f"--gpu-memory-utilization {gmu}: must be in (0, 1]")
        reserved = {
            "tensor-parallel-size", "tp", "dtype", "quantization", "kv-cache-dtype",
            "max-model-len", "max-num-seqs", "max-num-batched-tokens", "gpu-memory-utilization",
            "enable-chunked-prefill", "no-enable-chunked-prefill", "enable-prefix-caching",
            "no-enable-prefix-caching", "port", "host", "model",
        }  # fmt: skip
        for key, _ in self.extra_args:
            if key in reserved:
                raise PlanError(
                    f"--engine-arg {key}: this setting has its own bench-run option "
                    "(see bench-run --help); use that instead"
                )

    def args(self, *, random_data: bool) -> list[str]:
        """vLLM engine flags; prefix caching is off for random prompts unless asked for."""
        argv = ["--tensor-parallel-size", str(self.tp)]
        for flag, value in (
            ("--dtype", self.dtype),
            ("--quantization", self.quantization),
            ("--kv-cache-dtype", self.kv_cache_dtype),
            ("--max-model-len", self.max_model_len),
            ("--max-num-seqs", self.max_num_seqs),
            ("--max-num-batched-tokens", self.max_num_batched_tokens),
            ("--gpu-memory-utilization", self.gpu_memory_utilization),
        ):
            if value is not None:
                argv += [flag, str(value)]
        if self.chunked_prefill is not None:
            argv.append(
                "--enable-chunked-prefill"
                if self.chunked_prefill
                else "--no-enable-chunked-prefill"
            )
        prefix = self.prefix_caching
        if prefix is None and random_data:
            prefix = False  # cached random prompts inflate throughput
        if prefix is not None:
            argv.append("--enable-prefix-caching" if prefix else "--no-enable-prefix-caching")
        for key, value in self.extra_args:
            argv.append(f"--{key}")
            if value is not None:
                argv.append(value)
        return argv


@dataclass(frozen=True)
class Point:
    """One measurement of a run: a serving rate, or an offline benchmark."""

    id: str
    scenario: str
    qps: float | None = None
    num_prompts: int | None = None


@dataclass(frozen=True)
class Run:
    """One engine configuration of one model on one vendor, and the scenarios measured on it."""

    run_id: str
    vendor: str
    model: ModelRef
    engine: EngineConfig
    scenarios: tuple[str, ...] = ("serve",)
    # Every registered scenario's parameters by its name, the chosen ones and the others alike
    # (run.json records them all); a scenario left out gets its defaults.
    params: Mapping[str, object] = field(default_factory=dict, hash=False)
    input_len: int = 1024
    output_len: int = 128
    env: tuple[tuple[str, str], ...] = ()
    image: str | None = None
    strict_host: bool = False  # refuse, rather than warn of, host settings advised against
    # The draft model of speculative decoding (--speculative-config's model), resolved as `model`
    draft_model: ModelRef | None = None
    # The checkpoint's quantization_config, read once the model is a local directory
    checkpoint: Quantization | None = None
    # AMD: the partition modes --partition expects ("cpx/nps4"), checked where the agent runs
    expect_partition: str | None = None
    # --replicas > 1: the servers' count, spread and GPU sets (runner/replicas.py); None: one
    replicas: Replicas | None = None

    def __post_init__(self) -> None:
        profile_for(self.vendor)  # an unknown vendor: one line naming the registered ones
        self._check_partition()
        if not self.scenarios:
            raise PlanError(f"give at least one --scenario ({registry.choices()})")
        for name in self.scenarios:
            registry.get(name)  # an unknown one: one line naming the registered ones
        self._fill_params()
        if self.input_len < 1 or self.output_len < 1:
            raise PlanError("--input-len and --output-len must be at least 1 token")
        limit = self.engine.max_model_len
        limit_from = "--max-model-len"
        if limit is None:
            limit = self.model.max_position_embeddings()
            limit_from = "the model's max_position_embeddings"
        if limit is not None and self.input_len + self.output_len > limit:
            raise PlanError(
                f"--input-len {self.input_len} + --output-len {self.output_len} = "
                f"{self.input_len + self.output_len} tokens exceeds {limit_from} ({limit}): "
                "shorten the prompts or raise --max-model-len"
            )

    def _check_partition(self) -> None:
        if self.expect_partition is None:
            return
        if self.vendor != "amd":
            raise PlanError(
                f"--partition {self.expect_partition} is for AMD GPUs, but the run is for "
                f"--vendor {self.vendor}: drop --partition or use --vendor amd"
            )
        # frozen: normalized once, while validating ("CPX/NPS4" -> "cpx/nps4")
        object.__setattr__(self, "expect_partition", parse_partition(self.expect_partition))

    def _fill_params(self) -> None:
        given = dict(self.params)
        filled: dict[str, object] = {}
        for name in registry.names():
            params = given.pop(name, None)
            scenario = registry.get(name)
            filled[name] = scenario.checked(scenario.params_type() if params is None else params)
        if given:
            raise PlanError(f"parameters for unknown scenario(s): {', '.join(sorted(given))}")
        object.__setattr__(self, "params", filled)  # frozen: set once, while validating

    # Typed views of the built-in scenarios' parameters, for the executors' and models' reads.
    @property
    def serve(self) -> ServeParams:
        return cast("ServeParams", self.params["serve"])

    @property
    def latency(self) -> LatencyParams:
        return cast("LatencyParams", self.params["latency"])

    @property
    def throughput(self) -> ThroughputParams:
        return cast("ThroughputParams", self.params["throughput"])

    def points(self) -> list[Point]:
        """The points in the order they run: the serving sweep first, while the server is up."""
        return [
            point
            for name in registry.names()
            if name in self.scenarios
            for point in registry.get(name).points(self)
        ]

    def to_dict(self) -> dict[str, Any]:
        """run.json: the Run as planned, plain JSON (inf rates as the string 'inf')."""
        data: dict[str, Any] = {
            "run_id": self.run_id,
            "vendor": self.vendor,
            "model": _data(self.model),
            "engine": _data(self.engine),
            "scenarios": list(self.scenarios),
            **{name: _plain(params) for name, params in self.params.items()},
            "input_len": self.input_len,
            "output_len": self.output_len,
            "env": dict(self.env),
            "image": self.image,
            "schema": PLAN_SCHEMA,
        }
        data["engine"]["extra_args"] = [[k, v] for k, v in self.engine.extra_args]
        if self.checkpoint is not None:  # config.json's quantization_config, as read
            data["model"]["quantization"] = asdict(self.checkpoint)
        if self.draft_model is not None:
            data["draft_model"] = asdict(self.draft_model)
        if self.expect_partition is not None:
            data["expect_partition"] = self.expect_partition
        if self.replicas is not None:  # results/ reads run.json's "replicas" (absent: one server)
            data["replicas"] = self.replicas.to_dict()
        data["points"] = [_plain(p) for p in self.points()]
        return data


@functools.cache
def _field_names(cls: type) -> tuple[str, ...]:
    return tuple(f.name for f in fields(cls))


def _data(value: Any) -> Any:
    """dataclasses.asdict's result without its deep copies (a plan's values are immutable):
    run.json is made for every run of a plan, by the thousand."""
    if value is None or isinstance(value, (str, int, float)):
        return value
    if is_dataclass(value) and not isinstance(value, type):
        return {name: _data(getattr(value, name)) for name in _field_names(type(value))}
    if isinstance(value, (list, tuple)):
        return type(value)(_data(item) for item in value)
    if isinstance(value, dict):
        return {_data(key): _data(item) for key, item in value.items()}
    return value


def _plain(params: object) -> dict[str, Any]:
    """A dataclass as strict JSON: an infinite rate (qps, a list of them) becomes 'inf'."""
    assert is_dataclass(params) and not isinstance(params, type)
    return {name: _no_inf(getattr(params, name)) for name in _field_names(type(params))}


def _no_inf(value: Any) -> Any:
    if value is None or isinstance(value, (str, int)):
        return value
    if isinstance(value, float) and math.isinf(value):
        return format_rate(value)
    if isinstance(value, (list, tuple)):
        return [_no_inf(item) for item in value]
    return _data(value)


def make_run_id(
    model: ModelRef, vendor: str, engine: EngineConfig, now: datetime | None = None
) -> str:
    """A sortable, readable and unique-enough run id: time, model, vendor, config hash."""
    now = now or datetime.now(UTC)
    digest = hashlib.sha256(repr((model, vendor, engine, now.isoformat())).encode()).hexdigest()[:6]
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", model.short_name)[:40]
    return f"{now:%Y%m%d-%H%M%S}-{name}-{vendor}-{digest}"


@dataclass(frozen=True)
class Plan:
    """Everything bench-run will do, validated before anything starts."""

    runs: tuple[Run, ...]

    def __post_init__(self) -> None:
        if not self.runs:
            raise PlanError("the plan is empty: nothing to run")
        ids = [r.run_id for r in self.runs]
        if len(set(ids)) != len(ids):
            raise PlanError("two runs of the plan share a run id")
