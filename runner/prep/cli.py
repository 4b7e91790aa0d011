"""`bench-prep`: make the checkpoints a benchmark compares (`bench-prep quantize ...`)."""

from __future__ import annotations

import os
from pathlib import Path

import click

from results.cli.common import OneLineGroup
from results.errors import UserError
from runner import __version__
from runner.entry import HostSettings
from runner.errors import BenchError, PlanError
from runner.models import ModelFetch, resolve_model
from runner.plan import ModelRef
from runner.prep.quantize import QuantizeRequest, parse_calibration, quantize
from runner.prep.schemes import DEFAULT_TOOL, SCHEMES, TOOLS, recipe_for


class PrepGroup(OneLineGroup):
    user_errors = (UserError, BenchError)


def _note(message: str) -> None:
    click.echo(f"bench-prep: {message}", err=True)


@click.group(cls=PrepGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="bench-prep")
def main() -> None:
    """Prepare what a benchmark runs: `bench-prep quantize --model M --scheme S --out DIR`."""


@main.command("quantize")
@click.option("--model", "model_text", required=True, help="local model directory or hub repo id")
@click.option("--revision", default=None, help="the hub repo's revision (a hub --model only)")
@click.option(
    "--scheme",
    required=True,
    type=click.Choice(list(SCHEMES)),
    help="fp8-dynamic, fp8 (static scales), w8a8-int8 (SmoothQuant+GPTQ), w4a16 (GPTQ)",
)
@click.option("--out", required=True, type=click.Path(path_type=Path), help="new directory")
@click.option("--tool", type=click.Choice(TOOLS), default=DEFAULT_TOOL, show_default=True)
@click.option(
    "--calibration",
    default=None,
    help="a .jsonl/.txt file or a hub dataset name (default: the shipped sonnet text)",
)
@click.option("--calibration-split", default="train", show_default=True, help="hub dataset split")
@click.option("--text-column", default="text", show_default=True, help="jsonl/dataset field")
@click.option("--samples", type=click.IntRange(min=1), default=128, show_default=True)
@click.option("--max-seq-len", type=click.IntRange(min=16), default=2048, show_default=True)
@click.option("--python", default=None, help="the interpreter with the tool (else .venv-quantize)")
def quantize_cmd(
    model_text: str,
    revision: str | None,
    scheme: str,
    out: Path,
    tool: str,
    calibration: str | None,
    calibration_split: str,
    text_column: str,
    samples: int,
    max_seq_len: int,
    python: str | None,
) -> None:
    """Quantize a BF16/FP16 model into DIR (compressed-tensors, or Quark's HF format).

    DIR appears only when complete, with bench-prep.json (recipe, tool versions, the source
    model's revision and hash, calibration, timestamps) and bench-prep.log.
    """
    environ = dict(os.environ)
    found, _ = recipe_for(scheme, tool)  # before any download: a scheme the tool cannot make
    cal = parse_calibration(calibration, found, environ, calibration_split, text_column)
    if calibration is not None and cal is None:
        _note(f"{scheme} needs no calibration (dynamic activation scales): --calibration unused")
    host = HostSettings.from_environ(environ)
    fetch = ModelFetch(revision=revision)
    ref = resolve_model(ModelRef.resolve(model_text), fetch, host.hub, note=_note)
    if ref.local_path is None:  # resolve_model raises rather than leave it unset
        raise PlanError(f"--model {model_text} could not be resolved to a directory")
    request = QuantizeRequest(
        model=Path(ref.local_path),
        model_source=model_text,
        scheme=scheme,
        out=out.expanduser().resolve(),
        tool=tool,
        calibration=cal,
        samples=samples,
        max_seq_len=max_seq_len,
        python=python,
        environ=environ,
    )
    record = quantize(request, _note)
    click.echo(str(record.parent))
    _note(f"done: {record.parent} (record: {record.name})")
