"""`bench-images check`: a manifest HEAD against a stand-in registry, and one that never answers."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from click.testing import CliRunner

from runner.images import cli
from runner.images.catalog import load_catalog
from runner.images.registry import DOCKER_HUB, MISSING, NOT_CHECKED, OK, ImageName, RegistryChecker

DIGEST = "sha256:" + "ab" * 32
TOKEN = "anonymous-pull-token"


class StandIn(BaseHTTPRequestHandler):
    """The v2 manifest endpoint of a registry holding `vllm/vllm-openai:v0.31.0` only, behind a
    bearer-token challenge as Docker Hub's is."""

    def do_HEAD(self) -> None:
        if self.headers.get("Authorization") != f"Bearer {TOKEN}":
            realm = f"http://{self.headers['Host']}/token"
            self.send_response(401)
            self.send_header("WWW-Authenticate", f'Bearer realm="{realm}",service="stand-in"')
        elif self.path == "/v2/vllm/vllm-openai/manifests/v0.31.0":
            assert "manifest.list.v2+json" in self.headers["Accept"]
            self.send_response(200)
            self.send_header("Docker-Content-Digest", DIGEST)
        else:
            self.send_response(404)
        self.end_headers()

    def do_GET(self) -> None:
        body = f'{{"token": "{TOKEN}"}}'.encode()
        ok = (
            self.path.startswith("/token?") and "scope=repository%3Avllm%2Fvllm-openai" in self.path
        )
        self.send_response(200 if ok else 400)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_: object) -> None:
        return None


@pytest.fixture
def registry() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), StandIn)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def silent() -> str:
    """A registry address where nothing listens."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"127.0.0.1:{port}"


def test_references_split_as_the_engine_splits_them() -> None:
    assert ImageName.parse("python:3.11-slim-bookworm") == ImageName(
        DOCKER_HUB, "library/python", "3.11-slim-bookworm"
    )
    assert ImageName.parse("rocm/vllm-dev:nightly").repository == "rocm/vllm-dev"
    local = ImageName.parse("127.0.0.1:5000/a/b:v1")
    assert (local.registry, local.repository, local.reference) == ("127.0.0.1:5000", "a/b", "v1")
    assert local.manifest_url == "http://127.0.0.1:5000/v2/a/b/manifests/v1"
    assert ImageName.parse("ghcr.io/o/r@" + DIGEST).manifest_url.startswith("https://ghcr.io/")


def test_ok_with_its_digest_and_missing(registry: str) -> None:
    checker = RegistryChecker()
    found = checker.check(f"{registry}/vllm/vllm-openai:v0.31.0")
    assert (found.state, found.digest) == (OK, DIGEST)
    assert found.line() == f"ok {DIGEST}"
    absent = checker.check(f"{registry}/vllm/vllm-openai:v0.99.0")
    assert absent.state == MISSING
    assert absent.line().startswith("missing")


def test_a_registry_that_does_not_answer_is_not_checked(silent: str) -> None:
    checker = RegistryChecker(timeout=(2.0, 2.0))
    result = checker.check(f"{silent}/vllm/vllm-openai:v0.31.0")
    assert result.state == NOT_CHECKED
    assert result.line().startswith("not checked: no registry")
    assert checker.check(f"{silent}/other:1").state == NOT_CHECKED  # not asked twice


def _catalog_with(tmp_path: Path, images: dict[str, str]) -> Path:
    source = load_catalog()["cuda-vllm-openai"].path
    assert source is not None
    text = source.read_text()
    for name, image in images.items():
        version = image.rsplit(":v", 1)[1]
        body = text.replace("vllm/vllm-openai:v0.31.0", image).replace("0.31.0", version)
        (tmp_path / f"{name}.yaml").write_text(body)
    return tmp_path


def test_the_command_exits_non_zero_only_for_missing(
    registry: str, silent: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    directory = _catalog_with(tmp_path, {
        "here": f"{registry}/vllm/vllm-openai:v0.31.0",
        "gone": f"{registry}/vllm/vllm-openai:v0.30.0",
        "away": f"{silent}/vllm/vllm-openai:v0.31.0",
    })  # fmt: skip
    monkeypatch.setattr(cli, "_catalog", lambda: load_catalog(directory))
    runner = CliRunner()
    both = runner.invoke(cli.main, ["check"], catch_exceptions=False)
    assert both.exit_code == 1
    lines = dict(line.split("  ", 1) for line in both.stdout.strip().splitlines())
    assert lines["here"].endswith(f"ok {DIGEST}")
    assert "  missing" in lines["gone"]
    assert "  not checked: no registry" in lines["away"]
    assert runner.invoke(cli.main, ["check", "here"]).exit_code == 0
    assert runner.invoke(cli.main, ["check", "away"]).exit_code == 0
    unknown = runner.invoke(cli.main, ["check", "nope"])
    assert unknown.exit_code != 0 and "unknown image variant 'nope'" in unknown.output
