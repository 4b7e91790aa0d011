"""`bench-run`: `bench-run [run] FLAGS` benchmarks vLLM; `bench-run cleanup` reaps containers."""

from __future__ import annotations

import os

import click

from results.cli.common import OneLineGroup
from results.errors import UserError
from runner import __version__
from runner.cli.k8s import k8s
from runner.cli.manifests import manifests
from runner.cli.run import run
from runner.errors import BenchError
from runner.executors.docker import connect as docker_connect
from runner.executors.docker import reap_containers
from runner.executors.docker_replicas import reap_networks


class RunGroup(OneLineGroup):
    """`bench-run FLAGS` is `bench-run run FLAGS`; other commands are named first."""

    user_errors = (UserError, BenchError)

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if not args or (
            args[0] not in self.commands and args[0] not in ("-h", "--help", "--version")
        ):
            args = ["run", *args]
        return super().parse_args(ctx, args)


@click.group(cls=RunGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="bench-run")
def main() -> None:
    """Benchmark vLLM on NVIDIA, AMD or CPU: `bench-run [run] FLAGS`; `bench-run cleanup`."""


@main.command("cleanup")
@click.option("--dry-run", is_flag=True, help="list the containers and networks, remove nothing")
def cleanup(dry_run: bool) -> None:
    """Remove the containers earlier runs left behind (found by their vllm-bench label).

    Every container the docker executor made is removed, running or not: a run still in
    progress elsewhere on this engine is stopped too.
    """
    client = docker_connect(dict(os.environ))
    found = reap_containers(client, dry_run=dry_run)
    networks = reap_networks(client, dry_run=dry_run)  # --replicas' networks, once emptied
    verb = "would remove" if dry_run else "removed"
    for line in found:
        click.echo(f"{verb} {line}")
    for line in networks:
        click.echo(f"{verb} network {line}")
    tail = f" and {len(networks)} network(s)" if networks else ""
    click.echo(f"{verb} {len(found)} container(s){tail}", err=True)


main.add_command(run)
main.add_command(manifests)
main.add_command(k8s)
