"""`bench-run manifests [run flags | --plan FILE] -o DIR`: the plan as Kubernetes objects."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import click

from runner.cli import sweep as sweeps
from runner.cli.run import run
from runner.errors import PlanError
from runner.executors.k8s_settings import manifests_for
from runner.executors.render.k8s import manifest_files
from runner.planfile import expand, read_plan
from runner.request import RunRequest
from runner.sweep import new_sweep, order, requests_for, run_name

# `run`'s options but these: what to run comes from the flags or --plan, never a resume.
_NOT_HERE = ("verbose", "resume_dir", "dry_run")


def check_output_dir(out_dir: Path) -> None:
    """Refuse a directory with files in it: kubectl apply -f DIR would apply those too."""
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise PlanError(f"-o {out_dir}: it exists and is not an empty directory; choose another")


def write_files(files: dict[str, str], out_dir: Path) -> None:
    """Write every file into a new directory, then move it into place: never half a set."""
    check_output_dir(out_dir)
    parent = out_dir.resolve().parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=parent))
    except OSError as exc:
        raise PlanError(f"-o {out_dir}: cannot write there: {exc.strerror or exc}") from None
    try:
        for name, text in files.items():
            (staging / name).write_text(text, encoding="utf-8")
        staging.chmod(0o755)
        os.replace(staging, out_dir)
    except OSError as exc:
        shutil.rmtree(staging, ignore_errors=True)
        raise PlanError(
            f"-o {out_dir}: cannot write the manifests: {exc.strerror or exc}"
        ) from None


def _requests(
    ctx: click.Context, plan_file: Path | None, options: dict[str, Any]
) -> tuple[list[RunRequest], list[str] | None, str | None]:
    """The requests, their run ids and the default sweep id: from --plan or from the flags."""
    if plan_file is None:
        return [RunRequest.from_options(options)], None, None
    given, under = sweeps.split_options(ctx, options)
    plan = read_plan(plan_file)
    configurations = list(enumerate(order(expand(plan, given, under)), 1))
    out_root = Path(configurations[0][1].options.get("out_dir") or "runs")
    requests = requests_for([c for _, c in configurations])
    run_ids = [run_name(i, c) for i, c in configurations]
    return requests, run_ids, new_sweep(plan, out_root).name  # the sweep directory's name


def manifests_command(output_dir: Path, plan_file: Path | None, **options: Any) -> None:
    """Write the Kubernetes objects that run these flags (or --plan FILE) into DIR.

    \b
    One Indexed Job per pod template (vendor, GPU product, partition, GPU count, image), one
    completion index per configuration, its jobs in ConfigMaps and the agent in another.
    Nothing is asked of a cluster, an engine or the hub. Apply them with the line it prints:
      bench-run manifests --vendor nvidia --model org/model --tp 2 --model-pvc models \\
        --hf-token-secret hf -o k8s/
      kubectl apply -f k8s/
    """
    sweeps.check_modes(plan_file, None, options["model"])
    check_output_dir(output_dir)
    ctx = click.get_current_context()
    requests, run_ids, sweep_id = _requests(ctx, plan_file, options)
    plan, settings, objects = manifests_for(
        requests, run_ids=run_ids, sweep_id=sweep_id, note=lambda t: click.echo(t, err=True)
    )
    write_files(manifest_files(objects), output_dir)
    jobs = sum(obj["kind"] == "Job" for obj in objects)
    click.echo(
        f"sweep {settings.sweep_id}: {len(plan.runs)} configurations in {jobs} Job(s), "
        f"{len(objects)} objects in {output_dir} (namespace {settings.namespace}, image "
        f"{settings.image})",
        err=True,
    )
    click.echo(f"kubectl apply -f {output_dir}")


manifests = click.Command(
    "manifests",
    callback=manifests_command,
    params=[
        click.Option(
            ["-o", "--output-dir", "output_dir"],
            type=click.Path(file_okay=False, path_type=Path),
            required=True,
            help="a new (or empty) directory for the YAML files, one per object",
        ),
        *(p for p in run.params if p.name not in _NOT_HERE),
    ],
    help=manifests_command.__doc__,
    short_help="write the plan as Kubernetes Jobs and ConfigMaps (kubectl apply -f DIR)",
    context_settings={"help_option_names": ["-h", "--help"]},
)
