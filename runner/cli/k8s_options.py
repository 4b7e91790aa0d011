"""The Kubernetes flags (RunRequest fields of the same names), shared by `run` and `manifests`."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from runner.agent.pod_contract import DEFAULT_HOLD_S

F = TypeVar("F", bound=Callable[..., Any])

_OPTIONS = (
    click.option("--namespace", default="default", show_default=True,
                 help="k8s: the namespace of the Jobs and ConfigMaps"),
    click.option("--sweep-id", help="k8s: the sweep's label and name prefix (a DNS label of up "
                 "to 40 characters; default: sweep-<time>-<hash>)"),
    click.option("--node-selector", multiple=True, metavar="KEY=VALUE",
                 help="k8s: schedule on nodes labelled so; repeatable"),
    click.option("--gpu-product", metavar="LABEL",
                 help="k8s: the GPU model's node label value (nvidia.com/gpu.product, "
                 "amd.com/gpu.product-name), e.g. NVIDIA-H100-80GB-HBM3; a plan may vary it"),
    click.option("--toleration", multiple=True, metavar="KEY[=VALUE][:EFFECT]",
                 help="k8s: tolerate another taint (the GPU's own taint is tolerated); "
                 "repeatable"),
    click.option("--model-pvc", metavar="NAME",
                 help="k8s: the PVC holding models and the HF cache (HF_HOME=/models/huggingface"
                 "): a hub model is downloaded there by the pod"),
    click.option("--model-pvc-root", type=click.Path(file_okay=False, path_type=Path),
                 help="k8s: where this machine sees the --model-pvc's root (an NFS mount): a "
                 "local --model or --dataset-path must lie under it"),
    click.option("--hf-token-secret", metavar="NAME[:KEY]",
                 help="k8s: the Secret holding the Hugging Face token (key: token), mounted as "
                 "a file; the manifests never hold its value"),
    click.option("--parallel", type=int, default=1, show_default=True,
                 help="k8s: configurations (pods) running at once per Job"),
    click.option("--supplemental-group", multiple=True, metavar="GID",
                 help="k8s, AMD: the node's video/render group ids (default 44, 109); "
                 "repeatable"),
    click.option("--active-deadline", type=int, metavar="SECONDS",
                 help="k8s: a Job's time limit, all its configurations together (default: none)"),
    click.option("--ttl-after-finished", type=int, default=86400, show_default=True,
                 metavar="SECONDS", help="k8s: delete a finished Job and its pods after this"),
    click.option("--backoff-per-index", type=int, default=1, show_default=True,
                 help="k8s: retries of a configuration whose pod failed"),
    click.option("--max-failed-indexes", type=int,
                 help="k8s: stop a Job after this many failed configurations (default: run all)"),
    click.option("--hold-s", type=int, default=DEFAULT_HOLD_S, show_default=True,
                 help="k8s: how long a finished pod waits for its run directory to be collected"),
)  # fmt: skip


def k8s_options(command: F) -> F:
    """Decorate a click command with the Kubernetes flags."""
    for option in reversed(_OPTIONS):
        command = option(command)
    return command
