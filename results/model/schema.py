"""The versioned point-record schema: what ran, the normalised metrics, validity, provenance."""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from results.errors import ResultsError
from results.model.accuracy import parse_score_name
from results.model.probed import PROBE_METRICS
from runner.rundir import NOT_RUN  # the contract's verdicts

SCHEMA_VERSION = 1

Better = Literal["lower", "higher"]

# vLLM's latency families, in the order tables show them
LATENCIES = ("ttft", "tpot", "itl", "e2el")
LATENCY_LABEL = {
    "ttft": "TTFT",
    "tpot": "TPOT",
    "itl": "ITL",
    "e2el": "E2EL",
}
# what tables, comparisons and the gate look at unless told otherwise
HEADLINE_METRICS: tuple[str, ...] = (
    "request_throughput",
    "output_throughput",
    *(f"{family}_{stat}_ms" for family in LATENCIES for stat in ("mean", "median", "p99")),
)
_LATENCY_NAME = re.compile(
    r"^(?P<family>ttft|tpot|itl|e2el)_(?P<stat>mean|median|std|p\d+(?:\.\d+)?)_ms$"
)


@dataclass(frozen=True)
class MetricInfo:
    """How to read one normalised metric: its label, unit and which direction is better."""

    name: str
    label: str
    unit: str
    better: Better


# Throughputs and counts; latency metrics are described by metric_info() from their names.
_FIXED: dict[str, MetricInfo] = {
    m.name: m
    for m in (
        MetricInfo("request_throughput", "requests/s", "req/s", "higher"),
        MetricInfo("request_goodput", "goodput", "req/s", "higher"),
        MetricInfo("output_throughput", "output tokens/s", "tok/s", "higher"),
        MetricInfo("input_throughput", "input tokens/s", "tok/s", "higher"),
        MetricInfo("total_token_throughput", "total tokens/s", "tok/s", "higher"),
        MetricInfo("output_throughput_per_gpu", "output tokens/s per GPU", "tok/s/GPU", "higher"),
        MetricInfo(
            "total_token_throughput_per_gpu", "total tokens/s per GPU", "tok/s/GPU", "higher"
        ),
        MetricInfo("max_output_tokens_per_s", "peak output tokens/s", "tok/s", "higher"),
        MetricInfo("max_concurrent_requests", "peak concurrent requests", "requests", "higher"),
        MetricInfo("duration_s", "duration", "s", "lower"),
        MetricInfo("total_input_tokens", "input tokens", "tokens", "higher"),
        MetricInfo("total_output_tokens", "output tokens", "tokens", "higher"),
    )
}
# the agent's probe: the server's counters, the client's CPU, telemetry and energy (probed.py)
_FIXED.update({n: MetricInfo(n, label, unit, b) for n, label, unit, b in PROBE_METRICS})


def metric_info(name: str) -> MetricInfo:
    """The description of a normalised metric name; ResultsError if the name is not one."""
    if name in _FIXED:
        return _FIXED[name]
    score = parse_score_name(name)
    if score is not None:  # lm-eval's: a fraction (acc), or what the metric counts
        label = f"{score.task} {score.metric}" + (" stderr" if score.stderr else "")
        return MetricInfo(name, label, "score", "lower" if score.better == "lower" else "higher")
    match = _LATENCY_NAME.match(name)
    if match is None:
        known = ", ".join(sorted(_FIXED))
        raise ResultsError(
            f"unknown metric {name!r}: use one of {known}, a latency such as tpot_median_ms "
            "(ttft|tpot|itl|e2el _ mean|median|std|pNN _ms), or an accuracy TASK:METRIC "
            "such as gsm8k:exact_match@strict-match"
        )
    family, stat = match["family"], match["stat"]
    label = f"{LATENCY_LABEL[family]} {'median' if stat == 'median' else stat}"
    # a spread is neither better nor worse, but smaller spread is the steadier server
    return MetricInfo(name, label, "ms", "lower")


def latency_name(family: str, stat: str) -> str:
    """The normalised name of a latency statistic: latency_name('tpot', 'p99') -> tpot_p99_ms."""
    return f"{family}_{stat}_ms"


def percentile_stat(value: float | str) -> str:
    """'p99', 'p99.9' from 99 or '99.9': vLLM's own spelling of percentile keys."""
    number = float(value)
    return f"p{int(number)}" if number.is_integer() else f"p{number:g}"


# what to_dict adds to the fields, worked out from them
DERIVED_FIELDS = ("layout", "gpus_used")


@dataclass(frozen=True)
class Record:
    """One point of one run, flat and self-describing (schema version SCHEMA_VERSION).

    Identity: run_id + point_id. What ran: the vendor, hardware, image, vLLM, model and engine
    settings, and the load. Metrics: every statistic vLLM reported, under normalised names in
    normalised units (ms, tokens/s, req/s; per GPU where GPUs were used); absent ones are
    missing, never zero. Validity: counts, requested vs achieved rate, the verdict and its
    reasons, and warnings that do not fail the point. Provenance: where the numbers came from.
    """

    run_id: str
    point_id: str
    scenario: str
    # what ran
    vendor: str = ""
    model: str = ""
    started: str | None = None
    gpu_model: str | None = None
    gpu_count: int | None = None
    image: str | None = None
    image_digest: str | None = None
    vllm_version: str | None = None
    dtype: str | None = None
    quantization: str | None = None
    kv_cache_dtype: str | None = None
    tp: int | None = None
    engine_args: tuple[str, ...] = ()
    # --replicas: servers on disjoint GPU sets (run.json's replicas; absent: one) and how the
    # load was spread over them (router, dp, clients); AMD's partition modes ("cpx/nps4")
    replicas: int = 1
    spread: str | None = None
    partition: str | None = None
    qps: float | None = None
    max_concurrency: int | None = None
    input_len: int | None = None
    output_len: int | None = None
    batch_size: int | None = None
    dataset: str | None = None
    num_prompts: int | None = None
    # serving: the API the requests went to (completions or chat), the tokens every prompt
    # shares (sonnet), and where the prompts' lengths came from, in words
    endpoint: str | None = None
    prefix_len: int | None = None
    lengths: str | None = None
    # validity
    verdict: str = NOT_RUN
    reasons: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()
    completed: int | None = None
    failed: int | None = None
    achieved_rate: float | None = None
    # serving against --slo: met or not (None: no SLO), each limit's check; a point that
    # misses is still a valid measurement
    slo_met: bool | None = None
    slo: dict[str, Any] = field(default_factory=dict, hash=False)
    # --find-max-qps: the run's answer (result, max_qps, lowest_missed, probes, slo), on each
    # of its serving records
    search: dict[str, Any] = field(default_factory=dict, hash=False)
    # a run of a plan's sweep: the sweep directory's name and the configuration's matrix values
    sweep: str | None = None
    matrix: dict[str, Any] = field(default_factory=dict, hash=False)
    # metrics and what was left over; hash=False keeps records hashable
    metrics: dict[str, float] = field(default_factory=dict, hash=False)
    extra: dict[str, Any] = field(default_factory=dict, hash=False)
    provenance: dict[str, Any] = field(default_factory=dict, hash=False)
    run_dir: str | None = None
    schema: int = SCHEMA_VERSION

    def __post_init__(self) -> None:
        if self.schema != SCHEMA_VERSION:
            raise ResultsError(
                f"record schema {self.schema} is not {SCHEMA_VERSION}: "
                "upgrade vllm-bench-images to read it"
            )

    def metric(self, name: str) -> float | None:
        """A metric by normalised name, or None where vLLM did not report it."""
        return self.metrics.get(name)

    @property
    def precision(self) -> str:
        """What the weights run at: the quantization method if any, else the dtype."""
        return self.quantization or self.dtype or "auto"

    @property
    def gpus_used(self) -> int | None:
        """GPUs the servers span (replicas x tensor x pipeline x data parallel); None on the CPU.

        A data-parallel --engine-arg already counts the replicas of --spread dp.
        """
        if not self.gpu_count:
            return None
        used = self.tp or 1
        data_parallel = False
        for flag in ("--pipeline-parallel-size", "-pp", "--data-parallel-size", "-dp"):
            value = _flag_value(self.engine_args, flag)
            if value is not None and value.isdigit():
                used *= int(value)
                data_parallel = data_parallel or flag in ("--data-parallel-size", "-dp")
        return used if data_parallel else used * max(self.replicas, 1)

    @property
    def layout(self) -> str:
        """How the GPUs are used: replicas x tensor-parallel size, "2xTP4", "8xTP1", "1xTP8"."""
        return f"{max(self.replicas, 1)}xTP{self.tp or 1}"

    @property
    def config_label(self) -> str:
        """A short name for the engine configuration: what a chart's legend shows."""
        parts = [self.model.rstrip("/").rsplit("/", 1)[-1] or "?", self.precision]
        if self.kv_cache_dtype and self.kv_cache_dtype != "auto":
            parts.append(f"kv-{self.kv_cache_dtype}")
        if self.replicas > 1:
            parts.append(self.layout + (f" {self.spread}" if self.spread else ""))
        elif self.tp and self.tp > 1:
            parts.append(f"tp{self.tp}")
        parts += list(self.engine_args)
        hardware = self.gpu_model or ("cpu" if self.vendor == "cpu" else self.vendor)
        if self.gpu_count:
            hardware = f"{self.gpus_used}x {hardware}"
        if self.partition:
            hardware += f" {self.partition}"
        return f"{' '.join(parts)} @ {hardware}"

    @property
    def config_key(self) -> tuple[Any, ...]:
        """Equal for runs of one configuration (repeats), so their samples pool together."""
        return (
            self.vendor,
            self.gpu_model,
            self.model,
            self.image_digest or self.image,
            self.vllm_version,
            self.dtype,
            self.quantization,
            self.kv_cache_dtype,
            self.tp,
            self.engine_args,
            self.replicas,
            self.spread,
            self.partition,
        )

    @property
    def point_key(self) -> tuple[Any, ...]:
        """Equal for the same load on any configuration: what comparisons match on."""
        return (
            self.scenario,
            _rate_key(self.qps),
            self.max_concurrency,
            self.input_len,
            self.output_len,
            self.batch_size,
            self.dataset,
            self.endpoint,
            self.prefix_len,
        )

    @property
    def point_label(self) -> str:
        """The load in words, e.g. 'serve @ 4 QPS' or 'latency batch 8'."""
        if self.scenario == "serve":
            label = f"serve @ {format_rate(self.qps)} QPS"
            if self.max_concurrency:
                label += f", concurrency {self.max_concurrency}"
            return label
        if self.scenario == "latency" and self.batch_size:
            return f"latency batch {self.batch_size}"
        return self.scenario

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict; math.inf becomes the string 'inf' as in run.json."""
        data = asdict(self)
        data["qps"] = _rate_out(self.qps)
        data["reasons"] = list(self.reasons)
        data["warnings"] = list(self.warnings)
        data["engine_args"] = list(self.engine_args)
        # derived, for readers of the JSON: from_dict drops them
        data["layout"] = self.layout
        data["gpus_used"] = self.gpus_used
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Record:
        """The inverse of to_dict; unknown keys are refused so a newer schema is noticed."""
        known = set(cls.__dataclass_fields__) | set(DERIVED_FIELDS)
        unknown = set(data) - known
        if unknown:
            raise ResultsError(
                f"record has fields this version does not know ({', '.join(sorted(unknown))}): "
                "upgrade vllm-bench-images"
            )
        values = {k: v for k, v in data.items() if k not in DERIVED_FIELDS}
        qps = values.get("qps")
        values["qps"] = math.inf if qps == "inf" else qps
        for key in ("reasons", "warnings", "engine_args"):
            values[key] = tuple(values.get(key) or ())
        return cls(**values)


def format_rate(qps: float | None) -> str:
    """A request rate as people write it: '4', '0.5', 'inf', or '-' when there is none."""
    if qps is None:
        return "-"
    return "inf" if math.isinf(qps) else f"{qps:g}"


def _rate_key(qps: float | None) -> float | str | None:
    return "inf" if qps is not None and math.isinf(qps) else qps


def _rate_out(qps: float | None) -> float | str | None:
    return _rate_key(qps)


def _flag_value(args: tuple[str, ...], flag: str) -> str | None:
    for index, arg in enumerate(args):
        if arg == flag and index + 1 < len(args):
            return args[index + 1]
        if arg.startswith(flag + "="):
            return arg.split("=", 1)[1]
    return None
