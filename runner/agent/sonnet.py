"""Sonnet prompts (the source documents' dataset) written as a custom set for `vllm bench serve`.

vLLM dropped its sonnet loader; this rebuilds the old recipe: an instruction and the poem's first
lines up to the shared prefix length (the same in every prompt, so a prefix cache can serve it),
then randomly chosen lines up to the asked input length. Lengths are estimated at 4 characters per
token (no tokenizer here); vLLM's client applies the chat template and its result records the true
prompt token counts.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from ..rundir import SonnetJob, atomic_write_text

CHARS_PER_TOKEN = 4
INSTRUCTION = "Pick as many lines as you can from these poem lines:\n"


class SonnetError(Exception):
    """The sonnet source cannot give prompts."""


def shared_prefix(lines: list[str], prefix_len: int) -> str:
    """The instruction and the poem's first lines, about prefix_len tokens (at least the former)."""
    text = INSTRUCTION
    budget = prefix_len * CHARS_PER_TOKEN
    index = 0
    while len(text) < budget:
        text += lines[index % len(lines)] + "\n"  # a short poem comes round again
        index += 1
    return text


def build_prompts(
    lines: list[str], num_prompts: int, input_len: int, seed: str, prefix_len: int = 0
) -> list[str]:
    """num_prompts prompts of about input_len tokens each, reproducible for a given seed."""
    rng = random.Random(seed)  # noqa: S311 - sampling prompts, not secrets
    budget = input_len * CHARS_PER_TOKEN
    prefix = shared_prefix(lines, prefix_len)
    prompts = []
    for _ in range(num_prompts):
        text = prefix
        while len(text) < budget:
            text += rng.choice(lines) + "\n"
        prompts.append(text)
    return prompts


def write_prompts(spec: SonnetJob, output_len: int, work_dir: Path, seed: str) -> Path:
    """Write the JSONL file a point's `--dataset-name custom` reads."""
    source = Path(spec.source)
    try:
        text = source.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise SonnetError(f"cannot read the sonnet file {source}: {exc.strerror}") from None
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines:
        raise SonnetError(f"the sonnet file {source} has no lines")
    prompts = build_prompts(lines, spec.num_prompts, spec.input_len, seed, spec.prefix_len)
    target = work_dir / spec.file
    body = "".join(json.dumps({"prompt": p, "output_tokens": output_len}) + "\n" for p in prompts)
    atomic_write_text(target, body)
    return target
