"""`bench-prep quantize`: check everything, run the worker under the tool's Python, publish DIR.

The project's venv cannot hold llm-compressor beside vLLM (their transformers and
compressed-tensors pins exclude each other: see the README's "Quantize" section), so the
quantizing itself happens in worker.py under another interpreter: the project's .venv-quantize
(`make venv` makes it), $BENCH_PREP_PYTHON, or --python. This side validates the input, hashes the
source model, writes the worker's spec, relays its progress, and publishes the checkpoint
atomically: the worker writes into a hidden sibling of DIR, which is renamed to DIR only after
bench-prep.json is in it. A failure or Ctrl-C removes the partial directory.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from runner import __version__
from runner.checkpoint import read_checkpoint
from runner.errors import BenchError, PlanError, PreflightError
from runner.prep.schemes import Scheme, recipe_for

Note = Callable[[str], None]
WORKER = Path(__file__).with_name("worker.py")
ROOT = Path(__file__).resolve().parents[2]  # the source tree (an editable install's checkout)
QUANTIZE_VENV = ".venv-quantize"
PYTHON_ENV = "BENCH_PREP_PYTHON"
# the sonnet text bench-run's sonnet workload ships: calibration that works with no hub
DEFAULT_CALIBRATION = ROOT / "runner" / "scenarios" / "data" / "sonnets.txt"
CALIBRATION_SUFFIXES = (".jsonl", ".txt")
TOOL_MODULE = {"llm-compressor": "llmcompressor", "quark": "quark"}
HEARTBEAT_S = 30.0
_SNAPSHOT = re.compile(r"/snapshots/([0-9a-f]{40})/?$")
_TRUE = ("1", "true", "yes", "on")


@dataclass(frozen=True)
class Calibration:
    kind: str  # file | hub
    source: str  # the path, or the dataset name
    split: str = "train"
    column: str = "text"
    default: bool = False  # bench-prep chose it

    def spec(self) -> dict[str, str]:
        key = "path" if self.kind == "file" else "name"
        return {"kind": self.kind, key: self.source, "split": self.split, "column": self.column}


@dataclass(frozen=True)
class QuantizeRequest:
    model: Path  # a local directory holding config.json (a hub id is resolved before)
    model_source: str  # what the user gave
    scheme: str
    out: Path
    tool: str = "llm-compressor"
    calibration: Calibration | None = None
    samples: int = 128
    max_seq_len: int = 2048
    python: str | None = None
    environ: Mapping[str, str] = field(default_factory=dict)


def _offline(environ: Mapping[str, str]) -> bool:
    return any(
        environ.get(name, "").strip().lower() in _TRUE
        for name in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")
    )


def parse_calibration(
    text: str | None, scheme: Scheme, environ: Mapping[str, str], split: str, column: str
) -> Calibration | None:
    """--calibration as a local file or a hub dataset name; None where the scheme needs none."""
    if not scheme.calibration:
        return None
    if text is None:
        return Calibration("file", str(DEFAULT_CALIBRATION), default=True)
    path = Path(text).expanduser()
    looks_local = path.suffix in CALIBRATION_SUFFIXES or text.startswith(("/", ".", "~"))
    if path.exists() or looks_local:
        if not path.is_file():
            raise PlanError(
                f"calibration file {path} does not exist: give a .jsonl (one object with a "
                f'"{column}" field per line) or .txt file, or a hub dataset name'
            )
        if path.suffix not in CALIBRATION_SUFFIXES:
            raise PlanError(
                f"calibration file {path} is neither .jsonl nor .txt: convert it, or give a hub "
                "dataset name"
            )
        return Calibration("file", str(path.resolve()), split, column)
    if _offline(environ):
        raise PlanError(
            f"--calibration {text} is a hub dataset, but HF_HUB_OFFLINE/HF_DATASETS_OFFLINE "
            "forbid the hub: give a local .jsonl or .txt file instead"
        )
    return Calibration("hub", text, split, column)


def check_model(model: Path) -> None:
    """Refuse a checkpoint that is already quantized (its config.json, or a side file, says so)."""
    found, plain = read_checkpoint(model)
    if found is not None:
        raise PlanError(
            f"{model} is already quantized ({found.method}, {found.label}): quantize the "
            "original BF16/FP16 model instead"
        )
    if not plain:
        raise PlanError(
            f"{model} has a quantization side file (quantize_config.json or the like): it looks "
            "quantized already; quantize the original BF16/FP16 model instead"
        )


def check_out(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise PlanError(f"--out {out} is a file: give a directory to create")
    if out.is_dir() and any(out.iterdir()):
        raise PlanError(f"--out {out} exists and is not empty: give a new directory, or remove it")
    if not out.parent.is_dir():
        raise PlanError(f"the parent of --out {out} does not exist: create it first")


def find_python(asked: str | None, tool: str, environ: Mapping[str, str]) -> str:
    """The interpreter that can import the tool: --python, $BENCH_PREP_PYTHON, .venv-quantize,
    else this one."""
    module = TOOL_MODULE[tool]
    beside = ROOT / QUANTIZE_VENV / "bin" / "python"
    chosen = asked or environ.get(PYTHON_ENV) or (str(beside) if beside.is_file() else None)
    candidates = [chosen] if chosen else [sys.executable]
    for python in candidates:
        probe = f"import importlib.util,sys; sys.exit(importlib.util.find_spec({module!r}) is None)"
        try:
            proc = subprocess.run(
                [python, "-c", probe], check=False, capture_output=True, timeout=60
            )
        except OSError as exc:
            raise PreflightError(f"cannot run the Python {python} ({exc.strerror})") from None
        if proc.returncode == 0:
            return python
    raise PreflightError(
        f"no Python that can import {module} ({tool}): tried {', '.join(candidates)}; run "
        f"`make venv` (it makes {QUANTIZE_VENV}), or point --python / ${PYTHON_ENV} at one"
    )


def model_identity(model: Path) -> dict[str, Any]:
    """The source model's revision (from an HF cache snapshot path) and a hash of its files.

    The hash covers config.json and every weight file (*.safetensors, else *.bin), names and
    bytes, in name order: the same checkpoint anywhere gives the same hash.
    """
    weights = sorted(model.glob("*.safetensors")) or sorted(model.glob("*.bin"))
    files = [model / "config.json", *weights]
    digest = hashlib.sha256()
    for path in files:
        digest.update(path.name.encode() + b"\0")
        with path.open("rb") as handle:
            while chunk := handle.read(1 << 20):
                digest.update(chunk)
    match = _SNAPSHOT.search(str(model))
    return {
        "revision": match.group(1) if match else None,
        "sha256": digest.hexdigest(),
        "hashed_files": [p.name for p in files],
        "bytes": sum(p.stat().st_size for p in files),
    }


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def _relay(stream: IO[str], log: IO[str], note: Note, last: list[float], tail: list[str]) -> None:
    """Copy the worker's stderr to the log; its own `bench-prep:` lines become progress."""
    for raw in stream:
        log.write(raw)
        line = raw.rstrip("\n")
        if line.startswith("bench-prep: "):
            note(line.removeprefix("bench-prep: "))
            last[0] = time.monotonic()
        if line.strip():
            tail[:] = [*tail[-19:], line.split("\r")[-1]]


def run_worker(spec: dict[str, Any], python: str, work: Path, note: Note) -> dict[str, Any]:
    """Run worker.py under `python`; its result, or a one-line BenchError with the log kept."""
    spec_path = work / "spec.json"
    spec_path.write_text(json.dumps(spec, indent=2), encoding="utf-8")
    log_path = work / "worker.log"
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "TOKENIZERS_PARALLELISM": "false"}
    started = time.monotonic()
    last, tail = [started], list[str]()
    with log_path.open("w", encoding="utf-8") as log:
        proc = subprocess.Popen(
            [python, str(WORKER), str(spec_path)],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        assert proc.stderr is not None
        relay = threading.Thread(target=_relay, args=(proc.stderr, log, note, last, tail))
        relay.start()
        try:
            while proc.poll() is None:
                time.sleep(0.5)
                if time.monotonic() - last[0] >= HEARTBEAT_S:
                    note(f"still quantizing ({time.monotonic() - started:.0f} s)")
                    last[0] = time.monotonic()
        finally:
            if proc.poll() is None:  # Ctrl-C: stop the worker before the partial dir goes
                proc.terminate()
                proc.wait(timeout=30)
            relay.join()
    if proc.returncode != 0:
        errors = [line for line in tail if line.startswith("error: ")]
        kept = Path(tempfile.mkdtemp(prefix="bench-prep-failed-")) / "worker.log"
        shutil.copyfile(log_path, kept)
        if errors:
            raise PlanError(f"{errors[-1].removeprefix('error: ')} (log: {kept})")
        last_line = tail[-1] if tail else "no output"
        raise BenchError(
            f"the {spec['tool']} worker failed (exit {proc.returncode}): {last_line[:300]} "
            f"(full log: {kept})"
        )
    result: dict[str, Any] = json.loads((work / "result.json").read_text(encoding="utf-8"))
    return result


def quantize(req: QuantizeRequest, note: Note) -> Path:
    """Make the checkpoint at req.out; the path of its bench-prep.json."""
    scheme, recipe = recipe_for(req.scheme, req.tool)
    check_out(req.out)
    check_model(req.model)
    python = find_python(req.python, req.tool, req.environ)
    started = _now()
    note(f"hashing the source model {req.model}")
    source = {"model": req.model_source, "path": str(req.model), **model_identity(req.model)}
    cal = req.calibration
    if cal is not None and cal.default:
        note(f"calibration: the shipped sonnet text {cal.source} (--calibration for your own)")
    staging = req.out.parent / f".{req.out.name}.partial-{os.getpid()}"
    spec = {
        "tool": req.tool,
        "model": str(req.model),
        "out": str(staging),
        "recipe": recipe,
        "calibration": cal.spec() if cal else None,
        "samples": req.samples,
        "max_seq_len": req.max_seq_len,
    }
    try:
        with tempfile.TemporaryDirectory(prefix="bench-prep-") as tmp:
            spec["result"] = str(Path(tmp) / "result.json")
            note(f"{req.tool} {req.scheme} ({scheme.what}) under {python}")
            done = run_worker(spec, python, Path(tmp), note)
            shutil.copyfile(Path(tmp) / "worker.log", staging / "bench-prep.log")
        record = _record(req, scheme, recipe, source, done, python, started, staging)
        target = staging / "bench-prep.json"
        target.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
        if req.out.is_dir():
            req.out.rmdir()  # empty, checked above
        staging.rename(req.out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return req.out / "bench-prep.json"


def _record(
    req: QuantizeRequest,
    scheme: Scheme,
    recipe: list[dict[str, Any]],
    source: dict[str, Any],
    done: dict[str, Any],
    python: str,
    started: str,
    staging: Path,
) -> dict[str, Any]:
    found, _ = read_checkpoint(staging)
    if found is None:
        raise BenchError(
            f"the {req.tool} worker wrote no quantization_config into {staging}/config.json: "
            "the checkpoint is not usable; see bench-prep.log there"
        )
    recipe_file = staging / "recipe.yaml"
    cal = req.calibration
    return {
        "bench_prep_version": __version__,
        "tool": req.tool,
        "scheme": req.scheme,
        "scheme_description": scheme.what,
        "recipe": recipe,
        "recipe_yaml": recipe_file.read_text(encoding="utf-8") if recipe_file.is_file() else None,
        "source_model": source,
        "calibration": None
        if cal is None
        else {
            **cal.spec(),
            "samples_requested": req.samples,
            "samples_used": done.get("calibration_samples"),
            "max_seq_len": req.max_seq_len,
        },
        "quantization": {
            "method": found.method,
            "label": found.label,
            "weight_bits": found.weight_bits,
            "activation_bits": found.activation_bits,
            "scheme": found.scheme,
        },
        "versions": done.get("versions", {}),
        "python": python,
        "started": started,
        "finished": _now(),
        "worker_seconds": done.get("seconds"),
    }
