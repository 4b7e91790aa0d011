"""From bench-run's flags to what the Kubernetes manifests need (runner/executors/render/k8s.py).

The names other modules use:

- `settings_from_requests(requests, plan, image_choice, sweep_id=None) -> K8sSettings`: the
  cluster side of a plan built by `runner.entry.cluster_plan` (the image the pods pull, the
  agent's files, the vendor tuning, the flags); reads this checkout and the image catalog only.
- `manifests_for(requests, run_ids=None, sweep_id=None, note=None) -> (Plan, K8sSettings,
  list[dict])`: the whole way from requests to the objects, as `bench-run manifests` takes it.
- `default_sweep_id(text)`: sweep-<UTC time>-<hash of text>.
- `pod_image(choice)`: the image a pod pulls for an --image choice.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from runner.entry import cluster_plan
from runner.errors import PlanError
from runner.executors.render.k8s import K8sSettings, render_plan
from runner.executors.render.k8s_input import parse_selector
from runner.images.catalog import Catalog, load_catalog
from runner.images.modes import mode_for_run
from runner.images.resources import agent_sources
from runner.images.tuning import run_tuning
from runner.jobs import Deadlines, git_commit
from runner.plan import Plan
from runner.request import RunRequest


def default_sweep_id(text: str, now: datetime | None = None) -> str:
    """sweep-<UTC time>-<6 hex of `text>` (the plan's text, or the flags): a DNS label."""
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%d-%H%M%S")
    return f"sweep-{stamp}-{hashlib.sha256(text.encode()).hexdigest()[:6]}"


def pod_image(choice: str, catalog: Catalog | None = None) -> str:
    """What a pod pulls for --image: a prebuilt catalog variant's own image (the agent and the
    tuning travel in the manifests), or the reference given."""
    catalog = catalog if catalog is not None else load_catalog()
    variant = catalog.get(choice)
    if variant is None:
        return choice
    if variant.source != "prebuilt":
        raise PlanError(
            f"--image {choice} is built on this machine (source {variant.source}); a cluster "
            "pulls its images: build and push it (bench-images build, docker push) and give "
            "--image REGISTRY/REPOSITORY:TAG"
        )
    return variant.image


def _groups(items: Sequence[str]) -> tuple[int, ...] | None:
    if not items:
        return None
    try:
        return tuple(int(item) for item in items)
    except ValueError:
        raise PlanError(
            f"--supplemental-group {', '.join(items)}: give numeric group ids (getent group "
            "render on a node)"
        ) from None


def settings_from_requests(
    requests: Sequence[RunRequest], plan: Plan, image_choice: str, sweep_id: str | None = None
) -> K8sSettings:
    """The K8sSettings of a plan (one request per run, in the plan's order)."""
    first = requests[0]
    vendor = plan.runs[0].vendor
    products = {
        run.run_id: request.gpu_product
        for run, request in zip(plan.runs, requests, strict=True)
        if request.gpu_product
    }
    root = first.model_pvc_root
    catalog = load_catalog()
    modes: dict[str | None, dict[str, str]] = {}  # as docker: a partition mode's own tuning
    for run in plan.runs:
        mode = mode_for_run(run.expect_partition, run.engine.tp)
        if mode not in modes:
            modes[mode] = run_tuning(vendor, image_choice, catalog, mode=mode).env
    by_run = {
        run.run_id: modes[mode]
        for run in plan.runs
        if (mode := mode_for_run(run.expect_partition, run.engine.tp)) is not None
    }
    return K8sSettings(
        sweep_id=first.sweep_id or sweep_id or default_sweep_id(repr(requests)),
        image=pod_image(image_choice, catalog),
        namespace=first.namespace,
        agent_files={path: source.read_text("utf-8") for path, source in agent_sources().items()},
        tuned_env=modes[None] if None in modes else run_tuning(vendor, image_choice, catalog).env,
        run_tuned_env=by_run,
        pull=first.pull,
        node_selector=tuple(parse_selector(item) for item in first.node_selector),
        gpu_products=products,
        tolerations=tuple(first.toleration),
        model_pvc=first.model_pvc,
        model_pvc_root=str(root.expanduser().resolve()) if root is not None else None,
        hf_token_secret=first.hf_token_secret,
        parallel=first.parallel,
        shm_size=first.shm_size,
        privileged=first.privileged,
        supplemental_groups=_groups(first.supplemental_group),
        active_deadline_s=first.active_deadline,
        ttl_s=first.ttl_after_finished,
        backoff_per_index=first.backoff_per_index,
        max_failed_indexes=first.max_failed_indexes,
        hold_s=first.hold_s,
        deadlines=Deadlines(server_ready_s=first.server_timeout, point_s=first.point_timeout),
        commit=git_commit(),
    )


def manifests_for(
    requests: Sequence[RunRequest],
    *,
    run_ids: Sequence[str] | None = None,
    sweep_id: str | None = None,
    note: Callable[[str], None] | None = None,
) -> tuple[Plan, K8sSettings, list[dict[str, Any]]]:
    """Requests -> the validated plan, its settings and its Kubernetes objects; starts nothing.

    Notes (the image chosen, engine flags renamed) reach `note` once everything rendered: a
    refusal is then the only line."""
    said: list[str] = []
    plan, image_choice = cluster_plan(requests, run_ids=run_ids, note=said.append)
    settings = settings_from_requests(requests, plan, image_choice, sweep_id)
    objects = render_plan(plan, settings)
    if note is not None:
        for line in said:
            note(line)
    return plan, settings, objects
