"""The plan: frozen, validated descriptions of what to run (pure but for reading config.json)."""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from runner.errors import PlanError
from runner.vendors import profile_for

SCENARIOS = ("serve", "latency", "throughput")
DATASETS = ("random", "sonnet", "sharegpt")
PLAN_SCHEMA = 1

_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")
_ENGINE_KEY = re.compile(r"^[a-z0-9][a-z0-9-]*$")


def parse_qps_list(text: str) -> tuple[float, ...]:
    """Parse '1,3,5,inf' into request rates; each must be a positive number or `inf`."""
    rates: list[float] = []
    for item in (part.strip() for part in text.split(",")):
        if item.lower() == "inf":
            rates.append(math.inf)
            continue
        try:
            value = float(item)
        except ValueError:
            raise PlanError(
                f"--qps: {item!r} is not a number; give positive request rates such as 1,3,5 or inf"
            ) from None
        if not math.isfinite(value) or value <= 0:
            raise PlanError(f"--qps: {item!r} must be a positive number of requests/s, or inf")
        rates.append(value)
    if not rates:
        raise PlanError("--qps: give at least one request rate, such as 1,3,5")
    if len(set(rates)) != len(rates):
        raise PlanError(f"--qps: {text!r} names a rate twice")
    return tuple(rates)


def parse_percentiles(text: str) -> tuple[float, ...]:
    """Parse '50,90,99' into percentiles strictly between 0 and 100."""
    values: list[float] = []
    for item in (part.strip() for part in text.split(",") if part.strip()):
        try:
            value = float(item)
        except ValueError:
            raise PlanError(
                f"--percentiles: {item!r} is not a number (example: 50,90,99)"
            ) from None
        if not 0 < value < 100:
            raise PlanError(f"--percentiles: {item} must be between 0 and 100")
        values.append(value)
    if not values:
        raise PlanError("--percentiles: give at least one percentile, such as 50,90,99")
    return tuple(values)


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
    def resolve(cls, text: str, cwd: Path | None = None) -> ModelRef:
        text = text.strip()
        if not text:
            raise PlanError(
                "--model is empty: give a Hugging Face repo id or a local model directory"
            )
        base = cwd or Path.cwd()
        looks_like_path = text.startswith(("/", "./", "../", "~")) or text in (".", "..")
        candidate = (base / Path(text).expanduser()).resolve()
        if looks_like_path or candidate.exists():
            if not candidate.is_dir():
                raise PlanError(f"model directory {candidate} does not exist: check --model")
            if not (candidate / "config.json").is_file():
                raise PlanError(
                    f"model directory {candidate} has no config.json: point --model at a "
                    "Hugging Face model directory"
                )
            return cls(source=text, local_path=str(candidate))
        if not _REPO_ID.match(text):
            raise PlanError(
                f"--model {text!r} is neither an existing directory nor a Hugging Face repo id "
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
        try:
            config = json.loads((Path(self.local_path) / "config.json").read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise PlanError(f"cannot read {self.local_path}/config.json: {exc}") from None
        value = config.get("max_position_embeddings")
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

    def __post_init__(self) -> None:
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
class ServeParams:
    """An online serving sweep: one point per request rate."""

    qps: tuple[float, ...] = (1.0, 3.0, 5.0, 7.0, 9.0)
    seconds_per_point: float | None = 120.0
    num_prompts: int | None = None
    max_concurrency: int | None = None
    dataset: str = "random"
    dataset_path: str | None = None
    percentiles: tuple[float, ...] = (50.0, 90.0, 99.0)

    def __post_init__(self) -> None:
        if self.dataset not in DATASETS:
            raise PlanError(f"--dataset {self.dataset!r}: choose one of {', '.join(DATASETS)}")
        if self.dataset != "random" and self.dataset_path is None:
            raise PlanError(
                f"--dataset {self.dataset} needs --dataset-path (the {self.dataset} file)"
            )
        if self.num_prompts is not None and self.num_prompts < 1:
            raise PlanError(f"--num-prompts {self.num_prompts}: must be at least 1")
        seconds = self.seconds_per_point
        if seconds is not None and not (math.isfinite(seconds) and seconds > 0):
            raise PlanError(f"--seconds-per-point {seconds}: must be a positive number of seconds")
        if self.num_prompts is None and self.seconds_per_point is None:
            raise PlanError("give --seconds-per-point or --num-prompts for the serving sweep")
        if self.num_prompts is None and any(math.isinf(q) for q in self.qps):
            raise PlanError("--qps inf sends every prompt at once: give --num-prompts for it")
        if self.max_concurrency is not None and self.max_concurrency < 1:
            raise PlanError(f"--max-concurrency {self.max_concurrency}: must be at least 1")

    def prompts_for(self, qps: float) -> int:
        """Prompts per point: --num-prompts, else seconds-per-point x QPS (as the sources do)."""
        if self.num_prompts is not None:
            return self.num_prompts
        assert self.seconds_per_point is not None  # guaranteed by __post_init__
        return max(1, round(self.seconds_per_point * qps))


@dataclass(frozen=True)
class LatencyParams:
    """`vllm bench latency`: one batch, offline, repeated."""

    batch_size: int = 8
    iters: int = 10
    warmup_iters: int = 3

    def __post_init__(self) -> None:
        if self.batch_size < 1 or self.iters < 1 or self.warmup_iters < 0:
            raise PlanError(
                "--batch-size and --iters must be at least 1, --warmup-iters at least 0"
            )


@dataclass(frozen=True)
class ThroughputParams:
    """`vllm bench throughput`: offline, all prompts at once."""

    num_prompts: int = 1000

    def __post_init__(self) -> None:
        if self.num_prompts < 1:
            raise PlanError(f"--num-prompts {self.num_prompts}: must be at least 1")


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
    serve: ServeParams = field(default_factory=ServeParams)
    latency: LatencyParams = field(default_factory=LatencyParams)
    throughput: ThroughputParams = field(default_factory=ThroughputParams)
    input_len: int = 1024
    output_len: int = 128
    env: tuple[tuple[str, str], ...] = ()
    image: str | None = None

    def __post_init__(self) -> None:
        profile_for(self.vendor)  # an unknown vendor: one line naming the registered ones
        if not self.scenarios:
            raise PlanError("give at least one --scenario (serve, latency or throughput)")
        for scenario in self.scenarios:
            if scenario not in SCENARIOS:
                raise PlanError(
                    f"unknown scenario {scenario!r}: choose from {', '.join(SCENARIOS)}"
                )
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

    def points(self) -> list[Point]:
        """The points in the order they run: the serving sweep first, while the server is up."""
        points: list[Point] = []
        if "serve" in self.scenarios:
            for qps in self.serve.qps:
                points.append(
                    Point(f"serve-qps{format_rate(qps)}", "serve", qps, self.serve.prompts_for(qps))
                )
        if "latency" in self.scenarios:
            points.append(Point("latency", "latency", num_prompts=self.latency.batch_size))
        if "throughput" in self.scenarios:
            points.append(
                Point("throughput", "throughput", num_prompts=self.throughput.num_prompts)
            )
        return points

    def to_dict(self) -> dict[str, Any]:
        """run.json: the Run as planned, plain JSON (inf rates as the string 'inf')."""
        data = asdict(self)
        data["schema"] = PLAN_SCHEMA
        data["serve"]["qps"] = [format_rate(q) if math.isinf(q) else q for q in self.serve.qps]
        data["env"] = dict(self.env)
        data["engine"]["extra_args"] = [[k, v] for k, v in self.engine.extra_args]
        data["points"] = [
            {
                **asdict(p),
                "qps": format_rate(p.qps) if p.qps is not None and math.isinf(p.qps) else p.qps,
            }
            for p in self.points()
        ]
        return data


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
