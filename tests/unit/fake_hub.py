"""A local stand-in for the Hugging Face Hub's HTTP API, answering (and failing) as the hub does."""

from __future__ import annotations

import hashlib
import json
import os
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlparse

_REPO = r"(?P<repo>[^/]+/[^/]+)"
_INFO = re.compile(rf"^/api/models/{_REPO}/revision/(?P<rev>[^/]+)$")
_TREE = re.compile(rf"^/api/models/{_REPO}/tree/(?P<rev>[^/]+)(/.*)?$")
_FILE = re.compile(rf"^/{_REPO}/resolve/(?P<rev>[^/]+)/(?P<path>.+)$")


def git_oid(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data, usedforsecurity=False).hexdigest()


@dataclass
class HubRepo:
    """A model repo at one commit; a gated one lists its files but serves none without access."""

    files: dict[str, bytes]
    sha: str = "0123456789abcdef0123456789abcdef01234567"
    gated: bool = False


@dataclass
class FakeHub:
    repos: dict[str, HubRepo]
    url: str = ""
    requests: list[str] = field(default_factory=list)


def _handler(hub: FakeHub) -> type[BaseHTTPRequestHandler]:  # noqa: C901 (one handler class, its routes read together)
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:  # quiet test output
            pass

        def _answer(self, code: int, body: bytes, headers: dict[str, str] | None = None) -> None:
            self.send_response(code)
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def _error(self, code: int, error_code: str, message: str) -> None:
            # The hub's own shape: X-Error-Code / X-Error-Message headers and a JSON body.
            body = json.dumps({"error": message}).encode()
            headers = {
                "Content-Type": "application/json",
                "X-Error-Code": error_code,
                "X-Error-Message": message,
            }
            self._answer(code, body, headers)

        def _repo(self, repo_id: str, rev: str) -> HubRepo | None:
            repo = hub.repos.get(repo_id)
            if repo is None:
                # the hub says 401 to anonymous callers, so as not to tell private from missing
                self._error(401, "RepoNotFound", "Invalid username or password.")
                return None
            if rev not in ("main", repo.sha):
                self._error(404, "RevisionNotFound", f"Invalid rev id: {rev}")
                return None
            return repo

        def _json(self, value: object) -> None:
            self._answer(200, json.dumps(value).encode(), {"Content-Type": "application/json"})

        def _route(self) -> None:
            path = unquote(urlparse(self.path).path)
            hub.requests.append(f"{self.command} {path}")
            if match := _INFO.match(path):
                if repo := self._repo(match["repo"], match["rev"]):
                    self._json(
                        {
                            "id": match["repo"],
                            "sha": repo.sha,
                            "private": False,
                            "gated": "manual" if repo.gated else False,
                            "siblings": [{"rfilename": name} for name in repo.files],
                        }
                    )
            elif match := _TREE.match(path):
                if repo := self._repo(match["repo"], match["rev"]):
                    self._json(
                        [
                            {"type": "file", "oid": git_oid(data), "size": len(data), "path": name}
                            for name, data in repo.files.items()
                        ]
                    )
            elif match := _FILE.match(path):
                repo = self._repo(match["repo"], match["rev"])
                if repo is None:
                    return
                if repo.gated:
                    self._error(
                        401,
                        "GatedRepo",
                        f"Access to model {match['repo']} is restricted. You must have access to "
                        "it and be authenticated to access it. Please log in.",
                    )
                elif (data := repo.files.get(match["path"])) is None:
                    self._error(404, "EntryNotFound", f"{match['path']} does not exist")
                else:
                    headers = {"X-Repo-Commit": repo.sha, "ETag": f'"{git_oid(data)}"'}
                    self._answer(200, data, headers)
            else:
                self._error(404, "NotFound", "no such route")

        do_GET = _route
        do_HEAD = _route

    return Handler


@contextmanager
def running_hub(repos: dict[str, HubRepo]) -> Iterator[FakeHub]:
    """The hub on 127.0.0.1 on a free port, stopped afterwards."""
    hub = FakeHub(repos)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(hub))
    hub.url = f"http://127.0.0.1:{server.server_port}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield hub
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def build_hub_cache(
    cache: Path, repo: str, files: dict[str, bytes], sha: str, ref: str | None = "main"
) -> Path:
    """A repo in the hub cache's own layout: blobs, snapshot symlinks into them, a ref."""
    root = cache / ("models--" + repo.replace("/", "--"))
    snapshot = root / "snapshots" / sha
    for name, data in files.items():
        blob = root / "blobs" / hashlib.sha256(data).hexdigest()
        blob.parent.mkdir(parents=True, exist_ok=True)
        blob.write_bytes(data)
        link = snapshot / name
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))
    if ref is not None:
        (root / "refs").mkdir(parents=True, exist_ok=True)
        (root / "refs" / ref).write_text(sha)
    return snapshot
