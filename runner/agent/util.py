"""Small helpers of the agent: secret redaction, the telling line of a log, JSON-line events."""

from __future__ import annotations

import json
import re
import sys
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import IO, Any

from ..rundir import tail_lines

REDACTED = "***"
# Whole underscore-separated words: HF_TOKEN and AWS_SECRET_ACCESS_KEY, not TOKENIZERS_PARALLELISM.
_SECRET_NAME = re.compile(
    r"(^|_)(TOKEN|SECRET|PASSWORD|PASSWD|API_?KEY|CREDENTIALS?|PRIVATE_KEY|ACCESS_KEY|AUTH)(_|$)",
    re.I,
)
_SECRET_FLAGS = frozenset({"--api-key", "--hf-token", "--token"})
# Variables that change what vLLM does; recorded in provenance when inherited from the host.
RELEVANT_ENV_PREFIXES = (
    "VLLM_", "HF_", "HUGGING", "TRANSFORMERS_", "TOKENIZERS_", "CUDA_", "NVIDIA_", "NCCL_",
    "HIP_", "ROCR_", "ROCM_", "HSA_", "RCCL_", "GPU_", "AITER", "PYTORCH_", "TORCH_", "OMP_",
    "KMP_", "MKL_", "RAY_", "LD_PRELOAD",
)  # fmt: skip


def is_secret_name(name: str) -> bool:
    """True for variable names that hold credentials (HF_TOKEN, *_API_KEY, ...)."""
    return bool(_SECRET_NAME.search(name))


def secret_values(env: Mapping[str, str]) -> list[str]:
    """The values of secret variables, longest first, so they can be scrubbed from any text."""
    values = {v for k, v in env.items() if is_secret_name(k) and len(v) >= 4}
    return sorted(values, key=len, reverse=True)


def scrub(text: str, secrets: Iterable[str]) -> str:
    """Replace every occurrence of a secret value in text."""
    for value in secrets:
        text = text.replace(value, REDACTED)
    return text


def redact_env(env: Mapping[str, str], secrets: Iterable[str] = ()) -> dict[str, str]:
    """A copy of env with secret variables' values replaced."""
    values = list(secrets)
    return {k: REDACTED if is_secret_name(k) else scrub(v, values) for k, v in sorted(env.items())}


def redact_argv(argv: Iterable[str], secrets: Iterable[str] = ()) -> list[str]:
    """A copy of argv with the values of secret flags and known secret values replaced."""
    values = list(secrets)
    out: list[str] = []
    hide_next = False
    for arg in argv:
        if hide_next:
            out.append(REDACTED)
            hide_next = False
            continue
        flag, eq, _ = arg.partition("=")
        if flag in _SECRET_FLAGS:
            if eq:
                out.append(f"{flag}={REDACTED}")
            else:
                out.append(arg)
                hide_next = True
            continue
        out.append(scrub(arg, values))
    return out


def relevant_env(env: Mapping[str, str]) -> dict[str, str]:
    """The inherited variables that change vLLM's behaviour."""
    return {k: v for k, v in env.items() if k.startswith(RELEVANT_ENV_PREFIXES)}


_ERROR_LINE = re.compile(
    r"(error:|Error:|Error\b|ERROR|Exception|Traceback|Illegal instruction|Killed|out of memory)"
)


def error_line(lines: list[str]) -> str | None:
    """The most telling line of a log tail: the last one that names an error."""
    for index in range(len(lines) - 1, -1, -1):
        line = lines[index]
        if _ERROR_LINE.search(line) and not line.lstrip().startswith("Traceback"):
            text = line.strip()
            # Some exceptions (pydantic's) put the message on the indented line that follows.
            for follow in lines[index + 1 : index + 4]:
                detail = follow.strip()
                if follow[:1].isspace() and detail and not detail.startswith("For further"):
                    return f"{text} {detail}"
            return text
    return None


# vLLM's wrappers that only point elsewhere: the exception they wrap is the news.
_WRAPPER = re.compile(
    r"See root cause above|See stack trace for root cause|initialization failed due to an "
    r"exception in a background process"
)
# vLLM's log prefixes: "(EngineCore pid=12) ERROR 12-02 04:30:27 [core.py:1510] "
_LOG_PREFIX = re.compile(
    r"^(\([^()]* pid=\d+\)\s*)?((DEBUG|INFO|WARNING|ERROR|CRITICAL) \d\d-\d\d "
    r"\d\d:\d\d:\d\d(\.\d+)? \[[^\]]*\]\s*)?"
)
_EXCEPTION = re.compile(r"^([A-Za-z_][\w.]*\.)?[A-Z]\w*(Error|Exception|Interrupt|Exit)\b:? ")


def _message(line: str) -> str:
    return _LOG_PREFIX.sub("", line.strip(), count=1).strip()


KEPT_TAIL = 25  # log lines kept with a failure


def read_failure(log: Path) -> tuple[list[str], str | None]:
    """A failed process's log, read once: its last lines (up to 1000) and its root cause.

    The root cause may be a few hundred lines above the end (a worker's traceback), so a wider
    window is read than the KEPT_TAIL lines a failure keeps.
    """
    lines = tail_lines(log, count=1000, max_bytes=256_000)
    return lines, root_cause(lines)


def root_cause(lines: list[str]) -> str | None:
    """The line that says why a process died: vLLM's root cause, not its wrapper around it.

    vLLM's engine dies with "Engine core initialization failed. See root cause above"; the
    exception that caused it (a ValueError about memory, a kernel's RuntimeError) is logged
    earlier by the engine or a worker. The first exception line that is not such a wrapper is
    that cause; without a wrapper the last error line is.
    """
    last = error_line(lines)
    if last is None or not _WRAPPER.search(last):
        return last
    for line in lines:
        message = _message(line)
        if _EXCEPTION.match(message) and not _WRAPPER.search(message):
            return message
    return last


class Events:
    """JSON-line progress events: to a stream (the executor reads it) and to events.jsonl."""

    def __init__(self, stream: IO[str] | None = None) -> None:
        self._stream = stream if stream is not None else sys.stdout
        self._file: IO[str] | None = None
        self._backlog: list[str] = []

    def attach(self, path: Path) -> None:
        """Start mirroring to a file, including what was emitted before."""
        self._file = path.open("a", encoding="utf-8")
        for line in self._backlog:
            self._file.write(line)
        self._file.flush()
        self._backlog.clear()

    def detach(self) -> None:
        # Detached even when the last flush fails (a full disk): later events reach the stream.
        file, self._file = self._file, None
        if file is not None:
            file.close()

    def emit(self, event: str, **fields: Any) -> None:
        line = (
            json.dumps({"ts": round(time.time(), 3), "event": event, **fields}, default=str) + "\n"
        )
        try:
            self._stream.write(line)
            self._stream.flush()
        except (BrokenPipeError, ValueError):
            pass  # the reader went away; the file copy is still the record
        if self._file is not None:
            try:
                self._file.write(line)
                self._file.flush()
            except OSError as exc:
                exc.filename = self._file.name  # a failed flush names no file; say which one
                raise
        else:
            self._backlog.append(line)
