"""PyTorch TunableOp on ROCm: tuned results kept per configuration, tuned in a warm-up pass.

PyTorch reads PYTORCH_TUNABLEOP_FILENAME the first time a tunable op runs; with
PYTORCH_TUNABLEOP_TUNING=1 it tunes every GEMM shape it has no result for and writes the results
when the process exits. Each process replaces "%d" in the name with its device ordinal (without
one, the ordinal goes before the name's last "."): a TP=N server writes N files, ordinals 0..N-1.

Tuning inside a measured point would distort it, and one file for every model mixes GEMM
shapes, so the agent keeps one results file set per GPU model (and partition mode: a CPX
partition is a smaller device), model, TP and dtype (quantization),
`<root>/<gpu model>[-<partition>]/<model>/tp<N>-<dtype>[-<quant>]/tunableop_results%d.csv`.
When the set is incomplete it first runs a warm-up pass: a server with tuning on, a short load
that is not a point, the server stopped (which writes the files). Measured servers always run
with tuning off, reading whatever results there are. A pass that writes nothing is a warning
(PyTorch has releases that do not save them): the points are then measured untuned.
"""

from __future__ import annotations

import dataclasses
import re
import shutil
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..rundir import LOGS_DIR, Job, PointJob, ServerJob, now
from ..vendors import (
    Runner,
    discover,
    gpu_topology,
    names,
    profile_for,
    run_tool,
    topology_partition,
)
from . import sonnet
from .host import ConfigRejected
from .procs import CommandResult, Server, ServerFailed
from .util import Events

ENABLED = "PYTORCH_TUNABLEOP_ENABLED"
TUNING = "PYTORCH_TUNABLEOP_TUNING"
FILENAME = "PYTORCH_TUNABLEOP_FILENAME"
RESULTS_NAME = "tunableop_results%d.csv"  # %d: each process's device ordinal
WARMUP_ID = "tunableop-warmup"
WARMUP_PROMPTS = 16  # the warm-up load: this many of the first serving point's prompts, at once
TUNING_SERVER_LOG = f"{LOGS_DIR}/tunableop-server.log"
WARMUP_LOG = f"{LOGS_DIR}/{WARMUP_ID}.log"
_SCRATCH = ".tunableop-warmup"  # the warm-up's result file, removed after the pass
_UNSAFE = re.compile(r"[^A-Za-z0-9._+-]+")

Measure = Callable[[PointJob, Path], CommandResult]


def component(text: str, default: str = "unknown") -> str:
    """One safe path component: no separator, no leading dot, no "%" (PyTorch's token)."""
    return _UNSAFE.sub("-", text).strip("-.") or default


def model_name(model: Mapping[str, Any]) -> str:
    """A local directory's name, or the repo id with "/" as "--" (the HF cache's own rule)."""
    source = str(model.get("source") or "")
    if model.get("local_path") and source == model.get("local_path"):
        return component(Path(source).name)
    return component(source.replace("/", "--"))


def gpu_key(gpu_model: str, partition: str | None = None) -> str:
    """The GPU part of the key: its model, and its partition mode where not the whole GPU.

    A CPX partition of an MI300X is one XCD (38 CUs, not 304): GEMMs tuned on it are not those
    of the whole GPU, so "AMD Instinct MI300X" and "AMD Instinct MI300X cpx/nps4" keep apart.
    """
    whole = partition is None or partition.split("/")[0] in ("spx", "nps1")
    return component(gpu_model if whole else f"{gpu_model}-{partition}", "unknown-gpu")


def config_dir(
    root: str, gpu_model: str, run: Mapping[str, Any], partition: str | None = None
) -> Path:
    """`<root>/<gpu model>[-<partition>]/<model>/tp<N>-<dtype>[-<quantization>]`."""
    engine = run.get("engine") or {}
    setting = f"tp{int(engine.get('tp') or 1)}-{component(str(engine.get('dtype') or 'auto'))}"
    if engine.get("quantization"):
        setting += f"-{component(str(engine['quantization']))}"
    model = model_name(run.get("model") or {})
    return Path(root) / gpu_key(gpu_model, partition) / model / setting


def ordinal_files(results: str, count: int) -> tuple[Path, ...]:
    """The files PyTorch reads and writes for a name holding "%d", one per device ordinal."""
    return tuple(Path(results.replace("%d", str(ordinal), 1)) for ordinal in range(count))


def _complete(files: Sequence[Path]) -> bool:
    return bool(files) and all(f.is_file() and f.stat().st_size > 0 for f in files)


def _mtime(path: Path) -> int | None:
    try:
        return path.stat().st_mtime_ns
    except OSError:
        return None


@dataclass
class Decision:
    """What the agent does with TunableOp for one job; `record` is provenance's "tunableop"."""

    record: dict[str, Any]
    results: str | None = None  # the results name (with %d) when the agent manages TunableOp
    files: tuple[Path, ...] = ()
    tune_first: bool = False  # a warm-up pass runs before the measured server
    env: dict[str, tuple[str, str]] = field(default_factory=dict)  # name: (value, why)

    def in_use(self) -> bool:
        """Whether the measured server reads tuned results for every GPU it uses."""
        return _complete(self.files)

    def point_entry(self) -> dict[str, Any]:
        """A point's "tunableop" in status.json."""
        return {"results": self.results, "in_use": self.in_use()}


def decide(job: Job, env: Mapping[str, str], runner: Runner = run_tool) -> Decision | None:
    """None for a vendor without a TunableOp directory; otherwise what to do, and why.

    env: the effective environment (the image's or host's, the tuning, the job's --env). A
    PYTORCH_TUNABLEOP_TUNING or _FILENAME in the job's own --env leaves TunableOp to the user.
    """
    if job.vendor not in names() or profile_for(job.vendor).tunableop_dir is None:
        return None
    if env.get(ENABLED) != "1":
        return Decision({"enabled": False})
    given = [name for name in (TUNING, FILENAME) if name in job.env]
    if given:
        reason = f"--env sets {' and '.join(given)}: TunableOp is left to it"
        return Decision({"enabled": True, "managed": False, "reason": reason})
    root = job.tunableop_dir or profile_for(job.vendor).tunableop_dir
    assert root is not None
    gpus = discover(job.vendor, runner)
    partition = topology_partition(gpu_topology(job.vendor, runner))
    directory = config_dir(root, gpus[0].name if gpus else "", job.run, partition)
    results = str(directory / RESULTS_NAME)
    files = ordinal_files(results, int((job.run.get("engine") or {}).get("tp") or 1))
    decision = Decision(
        {"enabled": True, "managed": True, "results": results, "files": [str(f) for f in files]},
        results,
        files,
    )
    if decision.in_use():
        decision.record["pass"] = {"ran": False, "reason": "results exist for this configuration"}
        why = f"TunableOp: reading the results tuned before for this configuration in {directory}"
    elif job.server is None:
        reason = f"no results in {directory} and no serving point to tune with: measured untuned"
        decision.record["pass"] = {"ran": False, "reason": reason}
        why = f"TunableOp: {reason}"
    else:
        decision.tune_first = True
        decision.record["pass"] = {"ran": None, "reason": "pending"}
        why = (
            f"TunableOp: no results in {directory} yet: tuned in a warm-up pass before the "
            "measured server, which runs with tuning off"
        )
    kept = (
        "TunableOp: results kept per GPU model (and partition mode), model, TP and dtype: "
        f"{results}"
    )
    decision.env = {FILENAME: (results, kept), TUNING: ("0", why)}
    return decision


def _with_values(argv: Sequence[str], values: Mapping[str, str]) -> list[str]:
    """argv with the value after each flag in `values` replaced."""
    out = list(argv)
    for index in range(len(out) - 1):
        if out[index] in values:
            out[index + 1] = values[out[index]]
    return out


def warmup_point(point: PointJob) -> PointJob:
    """The first serving point, smaller and at once, its result in a scratch file: not a point."""
    prompts = min(point.expected or WARMUP_PROMPTS, WARMUP_PROMPTS)
    values = {
        "--num-prompts": str(prompts),
        "--request-rate": "inf",
        "--result-dir": _SCRATCH,
        "--result-filename": f"{WARMUP_ID}.json",
    }
    return dataclasses.replace(
        point,
        id=WARMUP_ID,
        argv=tuple(_with_values(point.argv, values)),
        result=f"{_SCRATCH}/{WARMUP_ID}.json",
        expected=prompts,
    )


@dataclass
class WarmUp:
    """What the pass needs from the job runner."""

    server: ServerJob
    point: PointJob  # the first serving point
    work_dir: Path
    env: Mapping[str, str]  # the measured server's environment
    measure: Measure  # the points' own client (the load generator or `vllm bench serve`)
    events: Events
    output_len: int


def _tune(decision: Decision, ctx: WarmUp, info: dict[str, Any]) -> str | None:
    """Start the tuning server, send the warm-up load, stop it; why it failed, or None."""
    assert decision.results is not None
    env = {**ctx.env, FILENAME: decision.results, TUNING: "1"}
    server = Server(
        ctx.server.argv, cwd=ctx.work_dir, env=env, log=ctx.work_dir / TUNING_SERVER_LOG,
        health_url=ctx.server.health_url, stop_timeout_s=ctx.server.stop_timeout_s,
    )  # fmt: skip
    warm = warmup_point(ctx.point)
    try:
        if ctx.point.sonnet is not None:  # the first point's prompts, which the point rewrites
            sonnet.write_prompts(ctx.point.sonnet, ctx.output_len, ctx.work_dir, ctx.point.id)
        server.start()
        # Tuning slows the start (every GEMM shape of the profile run is tuned): twice the wait.
        ready = server.wait_ready(
            2 * ctx.server.ready_timeout_s,
            lambda s: ctx.events.emit("server_waiting", seconds=round(s, 1)),
        )
        info["ready_s"] = round(ready, 3)
        ctx.events.emit("note", text=f"TunableOp: sending {warm.expected} warm-up prompts")
        outcome = ctx.measure(warm, ctx.work_dir / WARMUP_LOG)
        seconds = round(outcome.seconds, 3)
        info["warmup"] = {"prompts": warm.expected, "returncode": outcome.returncode,
                          "seconds": seconds, "timed_out": outcome.timed_out}  # fmt: skip
    except ServerFailed as exc:
        if exc.rejected:  # the measured server would be refused alike: a bad configuration
            raise ConfigRejected(f"vLLM rejects the engine flags: {exc.cause}") from exc
        return f"the tuning server failed ({exc.reason})"
    except sonnet.SonnetError as exc:
        return f"no warm-up prompts ({exc})"
    finally:
        # The full stop grace once ready: TunableOp writes its results as the processes exit.
        info["exit_status"] = server.stop(None if "ready_s" in info else 5.0)
        shutil.rmtree(ctx.work_dir / _SCRATCH, ignore_errors=True)
    return None


def run_pass(decision: Decision, ctx: WarmUp) -> None:
    """The warm-up pass; its outcome goes in decision.record["pass"] (a warning when unsaved)."""
    assert decision.results is not None
    directory = Path(decision.results).parent
    started = time.monotonic()
    info: dict[str, Any] = {"ran": True, "started": now(), "log": TUNING_SERVER_LOG}
    decision.record["pass"] = info
    before = {f: _mtime(f) for f in decision.files}
    ctx.events.emit("note", text=f"TunableOp: warm-up pass: tuning server starting ({directory})")
    try:
        directory.mkdir(parents=True, exist_ok=True)
        failure = _tune(decision, ctx, info)
    except OSError as exc:
        failure = f"cannot create {directory}: {exc.strerror or exc}"
    info["seconds"] = round(time.monotonic() - started, 3)
    written = [f for f in decision.files if _mtime(f) not in (None, before[f])]
    info["written"] = [str(f) for f in written]
    if decision.in_use():
        ctx.events.emit(
            "note",
            text=f"TunableOp: warm-up pass done in {info['seconds']:g} s: "
            f"{len(written)} results file(s) written in {directory}",
        )
        return
    if failure is None:
        failure = (
            f"the warm-up pass wrote results for {len(written)} of {len(decision.files)} GPU(s) "
            f"in {directory} (PyTorch writes them as the server exits; some releases do not)"
        )
    info["warning"] = f"TunableOp: {failure}: the points are measured untuned"
    ctx.events.emit("warning", text=info["warning"])
