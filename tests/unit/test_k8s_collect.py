"""collect_run_dir: the tar stream a pod hands back, unpacked under its name, or one error."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path
from typing import Any

import pytest
import urllib3

from runner.executors.k8s_transport import CollectError, collect_run_dir
from runner.rundir import partial_dir


class ApiError(Exception):
    """Stands for the client's ApiException (the cluster names its own class)."""


class Proxy:
    """The pod proxy's two calls, answering GET with `body` or raising `error`."""

    ApiException = ApiError

    def __init__(self, body: bytes = b"", error: BaseException | None = None) -> None:
        self.body = io.BytesIO(body)
        self.error = error
        self.done: list[str] = []

    def proxy_get(self, pod_name: str, port: int, path: str) -> Any:
        if self.error is not None:
            raise self.error
        self.body.release_conn = lambda: None  # type: ignore[attr-defined]
        return self.body

    def proxy_post(self, pod_name: str, port: int, path: str) -> None:
        self.done.append(path)


def tar_of(source: Path) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w|") as tar:
        tar.add(source, arcname=source.name)
    return buffer.getvalue()


@pytest.mark.parametrize("partial", [False, True])
def test_a_finished_or_unfinished_run_dir_comes_home(tmp_path: Path, partial: bool) -> None:
    pod_root = tmp_path / "pod"
    run_dir = partial_dir(pod_root, "r1") if partial else pod_root / "r1"
    (run_dir / "raw").mkdir(parents=True)
    (run_dir / "status.json").write_text('{"status": "running"}')
    (run_dir / "raw" / "p.json").write_bytes(bytes(range(256)))  # binary-safe
    proxy = Proxy(tar_of(run_dir))
    out = tmp_path / "out"
    target = collect_run_dir(proxy, "pod-0", out, "r1")  # type: ignore[arg-type]
    assert target == out / run_dir.name
    assert (target / "raw" / "p.json").read_bytes() == bytes(range(256))
    assert proxy.done  # told the pod it may end
    assert [p.name for p in out.iterdir()] == [run_dir.name]  # no staging left


def test_another_runs_directory_is_refused(tmp_path: Path) -> None:
    other = tmp_path / "pod" / "r2"
    other.mkdir(parents=True)
    (other / "status.json").write_text("{}")
    with pytest.raises(CollectError, match="not run r1's directory"):
        collect_run_dir(Proxy(tar_of(other)), "pod-0", tmp_path / "out", "r1")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "error", [ApiError("(404) Not Found"), urllib3.exceptions.ProtocolError("connection cut")]
)
def test_a_refused_or_cut_proxy_is_one_collect_error(tmp_path: Path, error: Exception) -> None:
    proxy = Proxy(error=error)
    out = tmp_path / "out"
    with pytest.raises(CollectError, match="collecting run r1 from pod pod-0 failed"):
        collect_run_dir(proxy, "pod-0", out, "r1")  # type: ignore[arg-type]
    assert not list(out.iterdir())  # nothing half-written
    assert not proxy.done
