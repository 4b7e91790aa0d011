"""The cluster side of a plan (K8sSettings) and the checks of what Kubernetes accepts.

Pure: each check raises one PlanError naming the flag and what to give instead.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from runner.agent.pod_contract import (
    DEFAULT_HOLD_S,
)
from runner.errors import PlanError
from runner.jobs import Deadlines

# A ConfigMap holds at most 1 MiB (keys and values). `kubectl apply -f` also copies each whole
# object, as JSON, into its kubectl.kubernetes.io/last-applied-configuration annotation, and an
# object's annotations hold at most 256 KiB: jobs and the agent's files are split so that each
# ConfigMap's data, as JSON, stays under CONFIGMAP_BUDGET.
CONFIGMAP_LIMIT = 1024 * 1024
CONFIGMAP_BUDGET = 200 * 1024
# The Kubernetes versions the manifests are validated for (tests/unit/test_k8s_manifests.py):
# podFailurePolicy's FailIndex and backoffLimitPerIndex are on by default (beta) from 1.29.
SUPPORTED_K8S = ("1.29", "1.37")

_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_LABEL_NAME = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
CONFIGMAP_KEY = re.compile(r"^[-._a-zA-Z0-9]+$")
_TAINT_EFFECTS = ("NoSchedule", "PreferNoSchedule", "NoExecute")
PULL_POLICIES = {"always": "Always", "missing": "IfNotPresent", "never": "Never"}


def check_dns_label(value: str, what: str, limit: int = 63) -> str:
    """A Kubernetes object name part (RFC 1123 label), or one PlanError saying what to change."""
    if len(value) > limit or not _DNS_LABEL.match(value):
        raise PlanError(
            f"{what} {value!r}: use at most {limit} lower-case letters, digits and '-', "
            "starting and ending with a letter or digit"
        )
    return value


def check_label_key(key: str, what: str) -> str:
    prefix, _, name = key.rpartition("/")
    bad_prefix = bool(prefix) and (len(prefix) > 253 or not _DNS_SUBDOMAIN.match(prefix))
    if not name or len(name) > 63 or not _LABEL_NAME.match(name) or bad_prefix:
        raise PlanError(
            f"{what} {key!r} is not a Kubernetes label key (such as nvidia.com/gpu.product)"
        )
    return key


def check_label_value(value: str, what: str) -> str:
    if len(value) > 63 or not _LABEL_NAME.match(value):
        raise PlanError(
            f"{what} {value!r} is not a Kubernetes label value: at most 63 letters, digits, "
            "'-', '_' and '.' (as the node's label spells it, e.g. NVIDIA-H100-80GB-HBM3)"
        )
    return value


def parse_selector(item: str) -> tuple[str, str]:
    """`--node-selector KEY=VALUE`."""
    key, sep, value = item.partition("=")
    if not sep:
        raise PlanError(f"--node-selector {item!r}: expected KEY=VALUE, such as disktype=ssd")
    return check_label_key(key, "--node-selector"), check_label_value(value, "--node-selector")


def parse_toleration(item: str) -> dict[str, str]:
    """`--toleration KEY[=VALUE][:EFFECT]`: Exists without a value, Equal with one."""
    rest, _, effect = item.rpartition(":") if ":" in item else (item, "", "")
    key, sep, value = rest.partition("=")
    check_label_key(key, "--toleration")
    if effect and effect not in _TAINT_EFFECTS:
        raise PlanError(
            f"--toleration {item!r}: the effect must be one of {', '.join(_TAINT_EFFECTS)}"
        )
    toleration = {"key": key, "operator": "Equal" if sep else "Exists"}
    if sep:
        toleration["value"] = check_label_value(value, "--toleration")
    if effect:
        toleration["effect"] = effect
    return toleration


_DOCKER_SIZE = re.compile(r"^([1-9][0-9]*)([bkmg]|[kmg]b)?$", re.I)
_QUANTITY = re.compile(r"^[1-9][0-9]*(Ki|Mi|Gi|Ti|k|M|G|T)?$")


def shm_quantity(size: str) -> str:
    """--shm-size as a Kubernetes quantity: docker's 16g is 16Gi; 16Gi passes as it is."""
    if _QUANTITY.match(size):
        return size
    match = _DOCKER_SIZE.match(size)
    if match is None:
        raise PlanError(f"--shm-size {size!r}: give a size such as 16g, 512m or 16Gi")
    unit = (match.group(2) or "").lower()[:1]
    return match.group(1) + {"": "", "b": "", "k": "Ki", "m": "Mi", "g": "Gi"}[unit]


@dataclass(frozen=True)
class K8sSettings:
    """The cluster side of a plan: where its pods run and what they mount (the same for all)."""

    sweep_id: str
    image: str  # what the pods run: an image the cluster can pull
    namespace: str = "default"
    agent_files: Mapping[str, str] = field(default_factory=dict)  # path -> text (resources.py)
    tuned_env: Mapping[str, str] = field(default_factory=dict)  # the catalog's run scope
    # a run's own tuning where it differs (a partition mode's, runner/images/modes.py), by run id
    run_tuned_env: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    pull: str = "missing"
    node_selector: tuple[tuple[str, str], ...] = ()
    gpu_product: str | None = None
    gpu_products: Mapping[str, str] = field(default_factory=dict)  # by run id (a plan matrix)
    tolerations: tuple[str, ...] = ()
    model_pvc: str | None = None
    model_pvc_root: str | None = None  # where this machine sees the model PVC's root
    hf_token_secret: str | None = None  # NAME or NAME:KEY (default key: token)
    parallel: int = 1
    shm_size: str | None = None
    privileged: bool = False
    supplemental_groups: tuple[int, ...] | None = None  # None: k8s_pod.WELL_KNOWN_GIDS
    active_deadline_s: int | None = None
    ttl_s: int = 86400
    backoff_per_index: int = 1
    max_failed_indexes: int | None = None  # None: every index runs, whatever the others do
    hold_s: int = DEFAULT_HOLD_S
    deadlines: Deadlines = field(default_factory=Deadlines)
    commit: str | None = None
    configmap_budget: int = CONFIGMAP_BUDGET

    def __post_init__(self) -> None:
        self._check_names()
        self._check_numbers()
        for key, value in self.node_selector:
            check_label_key(key, "--node-selector")
            check_label_value(value, "--node-selector")
        for product in (self.gpu_product, *self.gpu_products.values()):
            if product is not None:
                check_label_value(product, "--gpu-product")
        for item in self.tolerations:
            parse_toleration(item)
        shm_quantity(self.shm_size or "1g")

    def _check_names(self) -> None:
        check_dns_label(self.sweep_id, "--sweep-id", 40)
        check_dns_label(self.namespace, "--namespace")
        if self.model_pvc is not None:
            check_dns_label(self.model_pvc, "--model-pvc", 253)
        if self.model_pvc_root is not None and self.model_pvc is None:
            raise PlanError("--model-pvc-root says where the model PVC is here: give --model-pvc")
        if self.hf_token_secret is not None:
            name, _, key = self.hf_token_secret.partition(":")
            check_dns_label(name, "--hf-token-secret", 253)
            if key and not CONFIGMAP_KEY.match(key):
                raise PlanError(f"--hf-token-secret {self.hf_token_secret!r}: bad key {key!r}")
        if self.pull not in PULL_POLICIES:
            raise PlanError(f"--pull {self.pull!r}: choose one of {', '.join(PULL_POLICIES)}")

    def _check_numbers(self) -> None:
        for name, low in (("parallel", 1), ("ttl_s", 0), ("backoff_per_index", 0), ("hold_s", 0)):
            if getattr(self, name) < low:
                flag = {"ttl_s": "ttl_after_finished"}.get(name, name).replace("_", "-")
                raise PlanError(f"--{flag}: must be at least {low}")
        if self.active_deadline_s is not None and self.active_deadline_s < 1:
            raise PlanError("--active-deadline: must be a positive number of seconds")
        if self.max_failed_indexes is not None and self.max_failed_indexes < 0:
            raise PlanError("--max-failed-indexes: must be at least 0")
        for gid in self.supplemental_groups or ():
            if not 0 <= gid < 2**31:
                raise PlanError(f"--supplemental-group {gid}: not a group id")

    def tuning(self, run_id: str) -> Mapping[str, str]:
        return self.run_tuned_env.get(run_id, self.tuned_env)

    def product(self, run_id: str) -> str | None:
        return self.gpu_products.get(run_id, self.gpu_product)

    @property
    def secret(self) -> tuple[str, str] | None:
        if self.hf_token_secret is None:
            return None
        name, _, key = self.hf_token_secret.partition(":")
        return name, key or "token"
