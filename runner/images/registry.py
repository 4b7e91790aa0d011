"""Whether an image's tag exists in its registry: a manifest HEAD of the Registry HTTP API v2."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import requests

DOCKER_HUB = "registry-1.docker.io"
_HUB_ALIASES = ("docker.io", "index.docker.io", DOCKER_HUB)
_LOCAL_HOSTS = ("localhost", "127.0.0.1", "[::1]")  # spoken to in plain HTTP, as the engine does
# Every manifest kind a tag may point to: a multi-arch index or list, or one image's manifest.
ACCEPT = ", ".join(
    (
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.v2+json",
    )
)
TIMEOUT_S = (5.0, 15.0)  # connect, read
OK, MISSING, NOT_CHECKED = "ok", "missing", "not checked"


@dataclass(frozen=True)
class ImageName:
    """An image reference split the way the engine splits it."""

    registry: str  # host[:port]
    repository: str
    reference: str  # the tag, or the digest when the reference pins one

    @classmethod
    def parse(cls, ref: str) -> ImageName:
        name, _, digest = ref.partition("@")
        tag = None
        if name.rfind(":") > name.rfind("/"):
            name, tag = name.rsplit(":", 1)
        first, _, rest = name.partition("/")
        # The first part names a registry only when it looks like a host (the engine's rule).
        if rest and ("." in first or ":" in first or first == "localhost"):
            registry, repository = first, rest
        else:
            registry, repository = DOCKER_HUB, name
        if registry in _HUB_ALIASES:
            registry = DOCKER_HUB
            if "/" not in repository:
                repository = f"library/{repository}"  # official images live under library/
        return cls(registry, repository, digest or tag or "latest")

    @property
    def manifest_url(self) -> str:
        host = self.registry.split("]")[0] + "]" if "]" in self.registry else self.registry
        host = host.split(":")[0] if "]" not in host else host
        scheme = "http" if host in _LOCAL_HOSTS else "https"
        return f"{scheme}://{self.registry}/v2/{self.repository}/manifests/{self.reference}"


@dataclass(frozen=True)
class Check:
    """What the registry said of one image: ok (with its digest), missing, or not checked."""

    state: str
    digest: str | None = None
    detail: str = ""

    def line(self) -> str:
        if self.state == OK:
            return f"ok {self.digest or '(no digest header)'}"
        return f"{self.state}: {self.detail}" if self.detail else self.state


def _challenge(header: str) -> dict[str, str]:
    """The parameters of a `WWW-Authenticate: Bearer realm=...,service=...,scope=...` header."""
    if not header.lower().startswith("bearer "):
        return {}
    return dict(re.findall(r'(\w+)="([^"]*)"', header))


@dataclass
class RegistryChecker:
    """Checks image tags; a registry that did not answer once is not asked again."""

    session: requests.Session = field(default_factory=requests.Session)
    timeout: tuple[float, float] = TIMEOUT_S
    silent: dict[str, str] = field(default_factory=dict)  # registry -> why it did not answer

    def check(self, ref: str) -> Check:
        name = ImageName.parse(ref)
        if name.registry in self.silent:
            return Check(NOT_CHECKED, detail=f"no registry ({self.silent[name.registry]})")
        try:
            response = self._head(name)
        except requests.RequestException as exc:
            why = f"{name.registry} does not answer: {type(exc).__name__}"
            self.silent[name.registry] = why
            return Check(NOT_CHECKED, detail=f"no registry ({why})")
        status = response.status_code
        if status == 200:
            return Check(OK, response.headers.get("Docker-Content-Digest"))
        if status == 404:
            return Check(
                MISSING, detail=f"{name.registry} has no {name.repository}:{name.reference}"
            )
        if status in (401, 403):  # Docker Hub answers so for a repository that does not exist
            return Check(
                MISSING, detail=f"{name.registry} refused it (HTTP {status}): absent or private"
            )
        return Check(NOT_CHECKED, detail=f"{name.registry} answered HTTP {status}")

    def _head(self, name: ImageName) -> requests.Response:
        headers = {"Accept": ACCEPT}
        url = name.manifest_url
        response = self.session.head(url, headers=headers, timeout=self.timeout)
        if response.status_code == 401:
            token = self._token(response.headers.get("WWW-Authenticate", ""), name)
            if token:
                headers["Authorization"] = f"Bearer {token}"
                response = self.session.head(url, headers=headers, timeout=self.timeout)
        return response

    def _token(self, header: str, name: ImageName) -> str | None:
        """An anonymous pull token from the registry's token service (Docker Hub's auth)."""
        challenge = _challenge(header)
        realm = challenge.get("realm")
        if not realm:
            return None
        scope = challenge.get("scope", f"repository:{name.repository}:pull")
        params = {"service": challenge.get("service", ""), "scope": scope}
        response = self.session.get(realm, params=params, timeout=self.timeout)
        if response.status_code != 200:
            return None
        try:
            data = response.json()
        except ValueError:
            return None
        token = data.get("token") or data.get("access_token") if isinstance(data, dict) else None
        return str(token) if token else None
