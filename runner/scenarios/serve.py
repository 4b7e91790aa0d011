"""The online serving sweep: `vllm bench serve` against the run's server, one point per rate."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runner.agent.search import probe_id
from runner.agent.slo import Slo, goodput_args
from runner.agent.sonnet import CHARS_PER_TOKEN as SONNET_CHARS_PER_TOKEN
from runner.errors import PlanError
from runner.jobs import PathMap, Target
from runner.plan import Point, Run, format_rate
from runner.rundir import SonnetJob
from runner.scenarios import Scenario, register
from runner.scenarios._slo_flags import (
    check_search,
    parse_tolerance,
    slo_from,
    with_slo_percentiles,
)
from runner.scenarios.judges.serve import judge

DATASETS = ("random", "sonnet", "sharegpt")
CLIENT_MODES = ("persistent", "process")
# --endpoint: vLLM's client backend and the server path it sends each request to
ENDPOINTS = {
    "completions": ("openai", "/v1/completions"),
    "chat": ("openai-chat", "/v1/chat/completions"),
}
# Shakespeare's sonnets (1609, public domain), the text the source documents' sonnet recipe drew
# from: `--dataset sonnet` works without --dataset-path
BUNDLED_SONNETS = Path(__file__).with_name("data") / "sonnets.txt"
# vLLM's old sonnet loader shared this many prompt tokens when not told (the documents ran it so)
SONNET_PREFIX_LEN = 200


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
    # persistent: one load generator for the sweep (vLLM's code, imported once); process: one
    # `vllm bench serve` process per point, as a shell loop runs it
    client_mode: str = "persistent"
    endpoint: str = "completions"  # a key of ENDPOINTS
    # sonnet: the leading tokens every prompt shares (the old recipe's prefix)
    prefix_len: int = 0
    # sonnet: send the text as it is; a base model has no chat template to apply
    skip_chat_template: bool = False
    # sharegpt: --output-len when given; None keeps each conversation's own answer length
    sharegpt_output_len: int | None = None
    # --slo: (metric, limit in ms) pairs every point is judged against; () when none
    slo: Slo = ()
    # --find-max-qps: the agent bisects between the lowest and highest finite --qps rate for the
    # highest rate that meets the SLO, to within qps_tolerance (a fraction of the rate, or req/s)
    find_max_qps: bool = False
    qps_tolerance: float = 0.05
    qps_tolerance_relative: bool = True
    # how the prompts' lengths were set, in words: run.json and the records say it
    lengths: str = field(init=False, default="")

    def __post_init__(self) -> None:
        if self.client_mode not in CLIENT_MODES:
            raise PlanError(
                f"--client-mode {self.client_mode!r}: choose one of {', '.join(CLIENT_MODES)}"
            )
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
        self._check_recipe()
        check_search(self)
        object.__setattr__(self, "lengths", self._lengths())  # frozen: set once, here

    def _check_recipe(self) -> None:
        """The endpoint and the dataset's own settings, each refused with the flag named."""
        if self.endpoint not in ENDPOINTS:
            raise PlanError(f"--endpoint {self.endpoint!r}: choose one of {', '.join(ENDPOINTS)}")
        if self.prefix_len < 0:
            raise PlanError(f"--prefix-len {self.prefix_len}: must be 0 or more tokens")
        if self.prefix_len and self.dataset != "sonnet":
            raise PlanError(
                f"--prefix-len is for --dataset sonnet (prompts sharing their first tokens); "
                f"{self.dataset} prompts have no shared prefix"
            )
        if self.skip_chat_template and self.dataset != "sonnet":
            raise PlanError(
                "--skip-chat-template is for --dataset sonnet, the only dataset whose prompts "
                "get the model's chat template on the client"
            )
        if self.skip_chat_template and self.endpoint == "chat":
            raise PlanError(
                "--skip-chat-template: the chat endpoint applies the model's chat template on "
                "the server; use --endpoint completions to send the text as it is"
            )
        given = self.sharegpt_output_len
        if given is not None and given < 1:
            raise PlanError(f"--output-len {given}: must be at least 1 token")
        if given is not None and self.dataset != "sharegpt":
            raise PlanError("sharegpt_output_len is for --dataset sharegpt: use --output-len")

    def _lengths(self) -> str:
        if self.dataset == "random":
            return "exact: --input-len random tokens, --output-len tokens (--ignore-eos)"
        if self.dataset == "sharegpt":
            if self.sharegpt_output_len is None:
                return (
                    "from the dataset: each conversation's first turn and the answer's length; "
                    "vLLM's result holds the counts"
                )
            return (
                f"input from the dataset, output at most {self.sharegpt_output_len} tokens; "
                "vLLM's result holds the counts"
            )
        template = {
            "chat": ", plus the chat template the server applies",
            "completions": ", plus the model's chat template",
        }[self.endpoint]
        return (
            f"input estimated at {SONNET_CHARS_PER_TOKEN} characters per token (the first "
            f"{self.prefix_len} shared){'' if self.skip_chat_template else template}, output at "
            "most --output-len tokens; vLLM's result holds the true counts"
        )

    def prompts_for(self, qps: float) -> int:
        """Prompts per point: --num-prompts, else seconds-per-point x QPS (as the sources do)."""
        if self.num_prompts is not None:
            return self.num_prompts
        assert self.seconds_per_point is not None  # guaranteed by __post_init__
        return max(1, round(self.seconds_per_point * qps))


def dataset_file(text: str | None) -> str | None:
    """--dataset-path as an absolute path to an existing file."""
    if text is None:
        return None
    resolved = Path(text).expanduser().resolve()
    if not resolved.is_file():
        raise PlanError(f"--dataset-path {text}: no such file")
    return str(resolved)


def _sonnet_prefix(values: Mapping[str, Any]) -> int:
    """--prefix-len, checked against --input-len; sonnet's default is the old recipe's."""
    given = values.get("prefix_len")
    if values["dataset"] != "sonnet":
        return 0 if given is None else int(given)  # ServeParams refuses a prefix elsewhere
    input_len = int(values.get("input_len") or 1024)
    if given is None:
        # the documents' 200 shared tokens; a shorter prompt shares half of itself
        return min(SONNET_PREFIX_LEN, input_len // 2)
    if given >= input_len:
        raise PlanError(
            f"--prefix-len {given} must be below --input-len {input_len}: the rest of each "
            "prompt is random poem lines"
        )
    return int(given)


def params_from(values: Mapping[str, Any]) -> ServeParams:
    num_prompts = values["num_prompts"]
    slo = slo_from(values.get("slo"))
    tolerance, relative = parse_tolerance(values.get("qps_tolerance") or "5%")
    dataset, path = values["dataset"], values["dataset_path"]
    if dataset == "sonnet" and path is None:
        path = str(BUNDLED_SONNETS)
    return ServeParams(
        qps=parse_qps_list(values["qps"]),
        # --num-prompts fixes every point's size; seconds-per-point only sizes points without it
        seconds_per_point=None if num_prompts is not None else values["seconds_per_point"],
        num_prompts=num_prompts,
        max_concurrency=values["max_concurrency"],
        dataset=dataset,
        dataset_path=dataset_file(path),
        percentiles=with_slo_percentiles(parse_percentiles(values["percentiles"]), slo),
        client_mode=values.get("client_mode") or "persistent",
        endpoint=values.get("endpoint") or "completions",
        prefix_len=_sonnet_prefix(values),
        skip_chat_template=bool(values.get("skip_chat_template")),
        # only sharegpt has lengths of its own to keep; the others take --output-len's default
        sharegpt_output_len=values.get("output_len") if dataset == "sharegpt" else None,
        slo=slo,
        find_max_qps=bool(values.get("find_max_qps")),
        qps_tolerance=tolerance,
        qps_tolerance_relative=relative,
    )


def points(run: Run) -> list[Point]:
    serve = run.serve
    if serve.find_max_qps:  # the search's first probe; the agent decides the others
        low = min(q for q in serve.qps if math.isfinite(q))
        return [Point(probe_id(1, low), "serve", low, serve.prompts_for(low))]
    return [
        Point(f"serve-qps{format_rate(qps)}", "serve", qps, serve.prompts_for(qps))
        for qps in serve.qps
    ]


def sonnet_prompts_file(point: Point) -> str:
    """Where the agent writes the sonnet prompts of a point, relative to the run directory."""
    return f"data/{point.id}.sonnet.jsonl"


def _dataset_args(run: Run, point: Point, paths: PathMap) -> list[str]:
    dataset = run.serve.dataset
    if dataset == "random":
        return [
            "--dataset-name", "random",
            "--random-input-len", str(run.input_len),
            "--random-output-len", str(run.output_len),
            "--ignore-eos",
        ]  # fmt: skip
    if dataset == "sharegpt":
        assert paths.dataset is not None
        given = run.serve.sharegpt_output_len
        return [
            "--dataset-name", "sharegpt",
            "--dataset-path", paths.dataset,
            # without it each request asks for as many tokens as the dataset's answer has
            *([] if given is None else ["--sharegpt-output-len", str(given)]),
        ]  # fmt: skip
    # sonnet: vLLM dropped its sonnet loader; the agent feeds the prompts as a custom set. The
    # client applies the model's chat template as the old recipe did, unless the server does
    # (chat) or the user said not to.
    skip = run.serve.skip_chat_template or run.serve.endpoint == "chat"
    return [
        "--dataset-name", "custom",
        "--dataset-path", sonnet_prompts_file(point),
        "--custom-output-len", str(run.output_len),
        *(["--skip-chat-template"] if skip else []),
    ]  # fmt: skip


def serve_point_argv(
    run: Run, point: Point, vllm: str, host: str, port: int, paths: PathMap | None = None
) -> list[str]:
    assert point.qps is not None and point.num_prompts is not None
    serve = run.serve
    paths = paths or PathMap.host(run)
    concurrency = (
        [] if serve.max_concurrency is None else ["--max-concurrency", str(serve.max_concurrency)]
    )
    backend, endpoint = ENDPOINTS[serve.endpoint]
    return [
        vllm, "bench", "serve",
        "--backend", backend,
        "--base-url", f"http://{host}:{port}",
        "--endpoint", endpoint,
        "--model", paths.model,
        "--tokenizer", paths.model,
        *_dataset_args(run, point, paths),
        "--num-prompts", str(point.num_prompts),
        "--request-rate", format_rate(point.qps),
        *concurrency,
        "--percentile-metrics", "ttft,tpot,itl,e2el",
        "--metric-percentiles", ",".join(f"{v:g}" for v in serve.percentiles),
        *goodput_args(serve.slo),
        "--seed", "0",
        "--disable-tqdm",
        "--save-result", "--save-detailed",
        "--result-dir", "raw",
        "--result-filename", f"{point.id}.json",
        "--metadata", f"run_id={run.run_id}", f"point={point.id}",
    ]  # fmt: skip


def _argv(run: Run, point: Point, target: Target) -> list[str]:
    return serve_point_argv(run, point, target.vllm, target.host, target.port, target.paths)


def sonnet(run: Run, point: Point, paths: PathMap) -> SonnetJob | None:
    """The sonnet recipe's prompts, which the agent writes before the point runs."""
    if run.serve.dataset != "sonnet":
        return None
    assert paths.dataset is not None and point.num_prompts is not None
    return SonnetJob(
        paths.dataset,
        sonnet_prompts_file(point),
        point.num_prompts,
        run.input_len,
        run.serve.prefix_len,
    )


SERVE = register(
    Scenario(
        name="serve",
        help="online serving: `vllm bench serve` against one server, a point per --qps rate",
        order=10,
        needs_server=True,
        params_type=ServeParams,
        params_from=params_from,
        points=points,
        argv=_argv,
        judge=judge,
        sonnet=sonnet,
    )
)
