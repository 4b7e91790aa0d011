"""Many servers for one job (--replicas): started, pinned, behind vllm-router, counted.

Standard library only. A Fleet stands where core.py's Server stands (start, wait_ready,
check_alive, stop, proc): N `vllm serve` (server-<k>.log each) on disjoint GPU sets and CPU sets,
then, for --spread router, vLLM's router in front of them (router.log). --spread dp is one server
with --data-parallel-size N; --spread clients runs one client per replica at rate / N, side by
side, and merges their per-request results into the point's one result (merge.py).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ..rundir import LOGS_DIR, RAW_DIR, PointJob, atomic_write_json, server_log
from ..vendors import discover
from . import merge, pinning
from .client import serve_args
from .host import ConfigRejected
from .procs import CommandResult, Server, ServerFailed, kill_group, reap_group, spawn
from .remote import RemoteServer

ROUTER_LOG = "router.log"
CLIENTS_DIR = f"{RAW_DIR}/replicas"  # each client's own vLLM result, beside the merged one
_SUCCESS = re.compile(r"^vllm:request_success_total\{(?P<labels>[^}]*)\}\s+(?P<value>\S+)")
_ENGINE = re.compile(r'engine="(?P<engine>\d+)"')
Measure = Callable[[PointJob, Path], CommandResult]


def router_executable(vllm: str) -> str | None:
    """vllm-router on PATH, beside the vllm executable, or beside this Python; None if absent."""
    found = shutil.which("vllm-router")
    if found:
        return found
    for directory in (Path(vllm).parent, Path(sys.executable).parent):
        candidate = directory / "vllm-router"
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    return None


def has_data_parallel(python: str) -> bool | None:
    """Whether the vLLM that `python` imports knows --data-parallel-size (read from its engine
    arguments' source, nothing imported); None when it cannot be told."""
    code = "import importlib.util as u; s = u.find_spec('vllm'); print(s.origin if s else '')"
    try:
        found = subprocess.run(
            [python, "-c", code], capture_output=True, text=True, timeout=30, check=False
        ).stdout.strip()
        if not found:
            return None
        return "data_parallel_size" in (Path(found).parent / "engine/arg_utils.py").read_text()
    except (OSError, subprocess.TimeoutExpired):
        return None


def success_counts(text: str) -> dict[int, float]:
    """vllm:request_success_total summed per engine (label engine="k"; 0 when unlabelled)."""
    counts: dict[int, float] = {}
    for line in text.splitlines():
        found = _SUCCESS.match(line)
        if found is None:
            continue
        engine = _ENGINE.search(found["labels"])
        key = int(engine["engine"]) if engine else 0
        try:
            counts[key] = counts.get(key, 0.0) + float(found["value"])
        except ValueError:
            continue
    return counts


def scrape(url: str) -> dict[int, float] | None:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310 - our own server
            return success_counts(response.read().decode("utf-8", "replace"))
    except (OSError, ValueError):
        return None


def _flag(args: list[str], flag: str) -> str | None:
    return args[args.index(flag) + 1] if flag in args and args.index(flag) + 1 < len(args) else None


def _set(args: list[str], flag: str, value: str) -> None:
    if flag in args:
        args[args.index(flag) + 1] = value
    else:
        args += [flag, value]


def goodput_of(args: Sequence[str]) -> dict[str, float]:
    """`--goodput ttft:500 tpot:50` -> {"ttft": 500.0, "tpot": 50.0}."""
    out: dict[str, float] = {}
    if "--goodput" not in args:
        return out
    for item in args[list(args).index("--goodput") + 1 :]:
        if item.startswith("--"):
            break
        name, _, value = item.partition(":")
        out[name] = float(value)
    return out


def client_args(args: Sequence[str], k: int, count: int, base_url: str, point_id: str) -> list[str]:
    """Client k of `count`: its server, rate / count, its share of the prompts, its own file."""
    mine = list(args)
    _set(mine, "--base-url", base_url)
    rate = _flag(mine, "--request-rate")
    if rate is not None and rate != "inf":
        _set(mine, "--request-rate", repr(float(rate) / count))
    prompts = int(_flag(mine, "--num-prompts") or 0)
    _set(mine, "--num-prompts", str(prompts // count + (1 if k < prompts % count else 0)))
    concurrency = _flag(mine, "--max-concurrency")
    if concurrency is not None:
        _set(mine, "--max-concurrency", str(max(1, int(concurrency) // count)))
    _set(mine, "--seed", str(k))  # the clients' random prompts differ
    _set(mine, "--result-dir", CLIENTS_DIR)
    _set(mine, "--result-filename", f"{point_id}-{k}.json")
    return mine


@contextmanager
def _named(who: str) -> Iterator[None]:
    """A server's failure says which of the fleet's servers it was."""
    try:
        yield
    except ServerFailed as exc:
        raise ServerFailed(
            f"{who}: {exc.reason}", exc.log_tail, exc.cause, rejected=exc.rejected
        ) from exc


class Fleet:
    """The job's servers (and router), standing where one Server stands in core.py."""

    def __init__(
        self,
        spec: Mapping[str, Any],
        *,
        vendor: str,
        vllm: str,
        work_dir: Path,
        env: Mapping[str, str],
        stop_timeout_s: float,
    ) -> None:
        self.spec = spec
        self.spread = str(spec["spread"])
        self.count = int(spec["count"])
        self.work_dir = work_dir
        self.env = dict(env)
        self.vllm = vllm
        self.sets = [list(s) for s in spec.get("sets") or []]
        servers = list(spec["servers"])
        self.servers: list[Server | RemoteServer]
        if all(s.get("remote") for s in servers):  # each in its own container (docker)
            self.cpus = [s["remote"].get("cpus") for s in servers]
            self.servers = [
                RemoteServer(
                    list(s["argv"]),
                    log=Path(s["remote"]["log"]),
                    copy_to=work_dir / server_log(k),
                    health_url=str(s["health_url"]),
                    stop_timeout_s=stop_timeout_s,
                )
                for k, s in enumerate(servers)
            ]
        else:
            self.cpus = self._local_cpus(vendor, servers)
            self.servers = [
                Server(
                    list(s["argv"]),
                    cwd=work_dir,
                    env={**self.env, **self._pin_env(s, cpu)},
                    log=work_dir / server_log(k),
                    health_url=str(s["health_url"]),
                    stop_timeout_s=stop_timeout_s,
                    cpus=cpu,
                )
                for k, (s, cpu) in enumerate(zip(servers, self.cpus, strict=True))
            ]
        self.router: Server | None = None
        self.ready_s: list[float | None] = [None] * len(self.servers)
        self.point_counts: dict[str, list[int | None]] = {}

    def _local_cpus(self, vendor: str, servers: list[Any]) -> list[list[int] | None]:
        uses_gpus = bool(self.spec.get("uses_gpus"))
        bus = {gpu.index: gpu.bus_id for gpu in discover(vendor)} if uses_gpus else {}
        return pinning.replica_cpus(
            [[bus.get(i) for i in s["gpus"]] for s in servers],
            pinning.allowed_cpus(),
            uses_gpus=uses_gpus,
        )

    def _pin_env(self, server: Mapping[str, Any], cpus: list[int] | None) -> dict[str, str]:
        env = {str(k): str(v) for k, v in (server.get("env") or {}).items()}
        if cpus and not self.spec.get("uses_gpus"):
            # vLLM's CPU backend binds its OpenMP threads itself: to this replica's share; with
            # --data-parallel-size N, engine k takes the k-th of N lists joined by "|"
            shares = pinning.split_evenly(cpus, self.count) if self.spread == "dp" else [cpus]
            env["VLLM_CPU_OMP_THREADS_BIND"] = "|".join(map(pinning.format_cpulist, shares))
        return env

    @property
    def proc(self) -> subprocess.Popen[bytes] | None:
        return self.servers[0].proc

    def start(self) -> None:
        router = self.spec.get("router")
        if router and router_executable(self.vllm) is None:
            raise ConfigRejected(
                "--spread router needs vllm-router where the agent runs, and it is not installed "
                "there: pip install vllm-router (the [replicas] extra), or use --spread clients"
            )
        for server in self.servers:
            server.start()

    def wait_ready(
        self, deadline_s: float, on_wait: Callable[[float], None] | None = None
    ) -> float:
        """Every server ready, then the router started in front of them and ready."""
        started = time.monotonic()
        for k, server in enumerate(self.servers):
            left = max(deadline_s - (time.monotonic() - started), 1.0)
            with _named(f"replica {k} ({server_log(k)})"):
                server.wait_ready(left, on_wait)
            self.ready_s[k] = round(time.monotonic() - started, 3)  # since the fleet started
        router = self.spec.get("router")
        if router:
            exe = router_executable(self.vllm)
            assert exe is not None  # checked in start()
            self.router = Server(
                [exe, *router["argv"][1:]],
                cwd=self.work_dir,
                env=self.env,
                log=self.work_dir / ROUTER_LOG,
                health_url=str(router["health_url"]),
                stop_timeout_s=10.0,
            )
            self.router.start()
            with _named(f"vllm-router ({ROUTER_LOG})"):
                self.router.wait_ready(120.0)
        return time.monotonic() - started

    def check_alive(self) -> None:
        for k, server in enumerate(self.servers):
            with _named(f"replica {k} ({server_log(k)})"):
                server.check_alive()
        if self.router is not None:
            with _named(f"vllm-router ({ROUTER_LOG})"):
                self.router.check_alive()

    def stop(self, grace_s: float | None = None) -> int | None:
        """Stop the router, then every server; the first non-zero exit status (else 0)."""
        if self.router is not None:
            self.router.stop(5.0)
        statuses = [server.stop(grace_s) for server in self.servers]
        return next((s for s in statuses if s), statuses[0] if statuses else None)

    # -- what each replica served ------------------------------------------------------------
    def _counts(self) -> list[float | None]:
        if self.spread == "dp":  # one server, one engine per replica (label engine="k")
            found = scrape(str(self.spec["servers"][0]["metrics_url"]))
            return [None if found is None else found.get(k, 0.0) for k in range(self.count)]
        out: list[float | None] = []
        for server in self.spec["servers"]:
            found = scrape(str(server["metrics_url"]))
            out.append(None if found is None else sum(found.values()))
        return out

    def measure(self, point: PointJob, log: Path, one: Measure) -> CommandResult:
        """Run the point (spread as asked); record each replica's successful requests for it."""
        before = self._counts()
        args = serve_args(point.argv)
        if self.spread == "clients" and args is not None:
            result = self._clients(point, args, log)
        else:
            result = one(point, log)
        after = self._counts()
        self.point_counts[point.id] = [
            None if a is None or b is None else round(a - b)
            for a, b in zip(after, before, strict=True)
        ]
        return result

    def _clients(self, point: PointJob, args: list[str], log: Path) -> CommandResult:
        """One `vllm bench serve` per replica, side by side; their results merged."""
        started = time.monotonic()
        (self.work_dir / CLIENTS_DIR).mkdir(parents=True, exist_ok=True)
        procs = []
        for k, server in enumerate(self.spec["servers"]):
            mine = client_args(args, k, len(self.servers), str(server["base_url"]), point.id)
            if int(_flag(mine, "--num-prompts") or 0) == 0:
                continue
            client_log = self.work_dir / LOGS_DIR / f"{point.id}-client-{k}.log"
            procs.append(
                spawn(point.argv[:3] + tuple(mine), cwd=self.work_dir, env=self.env, log=client_log)
            )
        codes: list[int | None] = []
        timed_out = False
        try:
            for proc in procs:
                left = point.timeout_s - (time.monotonic() - started)
                try:
                    codes.append(proc.wait(timeout=max(left, 0.1)))
                    reap_group(proc.pid)
                except subprocess.TimeoutExpired:
                    timed_out = True
                    codes.append(kill_group(proc, 15.0))
        except BaseException:  # interrupted: no client outlives the point
            for proc in procs:
                kill_group(proc, 5.0)
            raise
        code = None if timed_out else next((c for c in codes if c), 0)
        self._merge(point, args, log)
        return CommandResult(code, time.monotonic() - started, timed_out)

    def _merge(self, point: PointJob, args: list[str], log: Path) -> None:
        raws = []
        with log.open("a") as out:
            for k in range(len(self.servers)):
                path = self.work_dir / CLIENTS_DIR / f"{point.id}-{k}.json"
                if not path.is_file():
                    out.write(f"client {k} wrote no result ({path.name})\n")
                    continue
                raws.append(json.loads(path.read_text()))
                out.write(f"client result {path.relative_to(self.work_dir)}\n")
            try:
                merged = merge.merge(raws, goodput_of(args))
            except (merge.MergeError, KeyError, TypeError, ValueError) as exc:
                out.write(f"merge failed: {exc}\n")
                return
            atomic_write_json(self.work_dir / point.result, merged)
            out.write(f"merged {len(raws)} client results into {point.result}\n")

    def describe(self) -> list[dict[str, Any]]:
        """status.json's replicas: each one's GPUs, CPUs, log, ready time and exit."""
        if self.spread == "dp":  # one server: its engines are the replicas
            server = self.servers[0]
            code = server.exit_status
            every = self.cpus[0]
            shares: list[list[int] | None] = [every] * self.count
            if every and not self.spec.get("uses_gpus"):  # the CPU: engine k on share k
                shares = list(pinning.split_evenly(every, self.count))
            return [
                {"index": k, "gpus": gpus, "cpus": shares[k], "log": server_log(0),
                 "ready_s": self.ready_s[0], "exit_status": code}
                for k, gpus in enumerate(self.sets)
            ]  # fmt: skip
        out = []
        for k, (spec, server) in enumerate(zip(self.spec["servers"], self.servers, strict=True)):
            out.append(
                {
                    "index": k,
                    "gpus": list(spec.get("gpus") or []),
                    "cpus": self.cpus[k],
                    "url": spec.get("base_url"),
                    "log": server_log(k),
                    "ready_s": self.ready_s[k],
                    "exit_status": server.exit_status,
                }
            )
        return out
