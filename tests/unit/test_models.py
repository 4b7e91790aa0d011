"""Hub models resolved on the host (runner/models.py): real huggingface_hub, a real cache layout,
and a local stand-in for the hub's HTTP API; never the network."""

from __future__ import annotations

import errno
import json
import os
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import huggingface_hub.constants
import pytest
from click.testing import CliRunner

from runner.cli import main
from runner.errors import PlanError, PreflightError
from runner.executors.container_paths import HF_CACHE_DIR, MODELS_DIR
from runner.executors.docker import DockerExecutor, DockerSettings
from runner.models import HubSettings, ModelFetch, _hub_error, resolve_model, resolve_plan
from runner.plan import EngineConfig, ModelRef, Plan, Run
from tests.unit.fake_hub import FakeHub, HubRepo, build_hub_cache, running_hub

REPO = "org/tiny-llama"
SHA = "89abcdef0123456789abcdef0123456789abcdef"
CONFIG = json.dumps({"max_position_embeddings": 2048}).encode()
FILES = {
    "config.json": CONFIG,
    "tokenizer.json": b'{"version": "1.0"}',
    "model.safetensors": b"\x00" * 4096,
    "original/consolidated.00.pth": b"\x01" * 2048,
}


@pytest.fixture
def cache(tmp_path: Path) -> Path:
    return tmp_path / "hf" / "hub"


@pytest.fixture
def online(monkeypatch: pytest.MonkeyPatch) -> None:
    """huggingface_hub read HF_HUB_OFFLINE when imported; these tests decide it themselves."""
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)


@pytest.fixture
def hub(online: None) -> Iterator[FakeHub]:
    repos = {
        REPO: HubRepo(FILES, sha=SHA),
        "org/gated-llama": HubRepo(FILES, gated=True),
    }
    with running_hub(repos) as fake:
        yield fake


def notes() -> tuple[list[str], Callable[[str], None]]:
    seen: list[str] = []
    return seen, seen.append


def one_line(exc: pytest.ExceptionInfo[Exception]) -> str:
    message = str(exc.value)
    assert "\n" not in message
    return message


# --- the cache alone (offline) ---


def test_offline_finds_the_snapshot_in_a_hub_cache(cache: Path) -> None:
    snapshot = build_hub_cache(cache, REPO, FILES, SHA)
    model = resolve_model(
        ModelRef.resolve(REPO), ModelFetch(), HubSettings(cache_dir=cache, offline=True)
    )
    assert model == ModelRef(source=REPO, local_path=str(snapshot))
    config = Path(model.path_or_id) / "config.json"
    assert config.is_symlink()  # the snapshot's files point into ../../blobs
    assert json.loads(config.read_text()) == {"max_position_embeddings": 2048}


def test_a_commit_hash_revision_is_found_without_a_ref(cache: Path) -> None:
    snapshot = build_hub_cache(cache, REPO, FILES, SHA, ref=None)
    model = resolve_model(
        ModelRef(REPO), ModelFetch(revision=SHA), HubSettings(cache_dir=cache, offline=True)
    )
    assert model.local_path == str(snapshot)


def test_offline_and_not_cached_is_one_clear_line(cache: Path) -> None:
    build_hub_cache(cache, "org/other", FILES, SHA)
    with pytest.raises(PreflightError) as exc:
        resolve_model(ModelRef(REPO), ModelFetch(), HubSettings(cache_dir=cache, offline=True))
    assert one_line(exc) == (
        f"{REPO} is not in the HF cache at {cache} and HF_HUB_OFFLINE=1 forbids downloading: "
        "unset HF_HUB_OFFLINE to download it first, or give a local directory to --model"
    )


def test_no_download_and_a_branch_not_cached(cache: Path) -> None:
    build_hub_cache(cache, REPO, FILES, SHA)  # main is cached, dev is not
    with pytest.raises(PreflightError) as exc:
        resolve_model(
            ModelRef(REPO),
            ModelFetch(revision="dev", download=False),
            HubSettings(cache_dir=cache, endpoint="http://127.0.0.1:9"),
        )
    assert "not in the HF cache" in one_line(exc)
    assert "--no-download forbids downloading: drop --no-download" in str(exc.value)


def test_hub_limits_are_checked_again_once_the_config_is_there(cache: Path) -> None:
    build_hub_cache(cache, REPO, FILES, SHA)
    run = Run("r1", "cpu", ModelRef(REPO), EngineConfig(), input_len=2000, output_len=100)
    with pytest.raises(PlanError, match="max_position_embeddings \\(2048\\)"):
        resolve_plan(Plan((run,)), ModelFetch(), HubSettings(cache_dir=cache, offline=True))


def test_a_local_directory_is_left_alone_but_takes_no_hub_options(tmp_path: Path) -> None:
    local = tmp_path / "tiny"
    local.mkdir()
    (local / "config.json").write_bytes(CONFIG)
    model = ModelRef.resolve(str(local))
    hub = HubSettings(cache_dir=tmp_path / "cache", offline=True)
    assert resolve_model(model, ModelFetch(), hub) is model
    for fetch in (ModelFetch(revision="main"), ModelFetch(include=("*.json",))):
        with pytest.raises(PlanError, match="is a local directory: drop them"):
            resolve_model(model, fetch, hub)


def test_bad_fetch_options_are_plan_errors() -> None:
    with pytest.raises(PlanError, match="--hf-include: a pattern is empty"):
        ModelFetch(include=("",))
    with pytest.raises(PlanError, match="--revision is empty"):
        ModelFetch(revision=" ")
    with pytest.raises(PlanError, match="HF_ENDPOINT"):
        HubSettings(cache_dir=Path("/c"), endpoint="huggingface.co")


# --- dry runs download nothing ---


def test_a_dry_run_keeps_the_repo_id_and_asks_the_hub_nothing(cache: Path, hub: FakeHub) -> None:
    seen, note = notes()
    model = resolve_model(
        ModelRef(REPO),
        ModelFetch(),
        HubSettings(cache_dir=cache, endpoint=hub.url),
        dry_run=True,
        note=note,
    )
    assert model == ModelRef(REPO)
    assert hub.requests == []
    assert not cache.exists()
    assert seen == [
        f"dry run: {REPO} is not in the HF cache at {cache} (or not all of it); a real run "
        "downloads it first (include everything; exclude original/*)"
    ]


def test_a_dry_run_uses_the_snapshot_the_cache_holds(cache: Path, hub: FakeHub) -> None:
    snapshot = build_hub_cache(cache, REPO, FILES, SHA)
    model = resolve_model(
        ModelRef(REPO), ModelFetch(), HubSettings(cache_dir=cache, endpoint=hub.url), dry_run=True
    )
    assert model.local_path == str(snapshot)
    assert hub.requests == []


# --- downloads from the stand-in hub ---


def test_download_skips_original_and_lands_in_the_cache_layout(cache: Path, hub: FakeHub) -> None:
    seen, note = notes()
    settings = HubSettings(cache_dir=cache, endpoint=hub.url)
    model = resolve_model(ModelRef(REPO), ModelFetch(), settings, note=note)
    snapshot = cache / "models--org--tiny-llama" / "snapshots" / SHA
    assert model == ModelRef(source=REPO, local_path=str(snapshot))
    assert sorted(p.name for p in snapshot.iterdir()) == [
        "config.json",
        "model.safetensors",
        "tokenizer.json",
    ]
    weights = snapshot / "model.safetensors"
    assert os.readlink(weights).startswith("../../blobs/")
    assert weights.read_bytes() == FILES["model.safetensors"]
    assert not any("original/" in request for request in hub.requests)
    assert seen == [
        f"downloading {REPO} (include everything; exclude original/*) from {hub.url} into "
        f"{cache}; files already there are kept"
    ]
    # and now the cache alone serves it
    offline = resolve_model(ModelRef(REPO), ModelFetch(), HubSettings(cache, offline=True))
    assert offline == model


def test_include_patterns_choose_the_files(cache: Path, hub: FakeHub) -> None:
    fetch = ModelFetch(include=("*.json",), exclude=())
    model = resolve_model(ModelRef(REPO), fetch, HubSettings(cache, endpoint=hub.url))
    assert model.local_path is not None
    assert sorted(p.name for p in Path(model.local_path).iterdir()) == [
        "config.json",
        "tokenizer.json",
    ]


def test_patterns_that_leave_out_config_json_are_refused(cache: Path, hub: FakeHub) -> None:
    fetch = ModelFetch(include=("*.safetensors",))
    with pytest.raises(PreflightError, match=r"has no config\.json: vLLM needs one"):
        resolve_model(ModelRef(REPO), fetch, HubSettings(cache, endpoint=hub.url))


@pytest.mark.parametrize(
    ("repo", "revision", "token", "expected"),
    [
        (
            "org/gated-llama",
            None,
            None,
            "model org/gated-llama is gated: accept its licence on {url}/org/gated-llama and "
            "set HF_TOKEN",
        ),
        (
            "org/gated-llama",
            None,
            "hf_NotGrantedYet000",
            "model org/gated-llama is gated: accept its licence on {url}/org/gated-llama and "
            "set HF_TOKEN (the HF_TOKEN given has not been granted access yet)",
        ),
        (
            "org/no-such-model",
            None,
            None,
            "model org/no-such-model is not on {url}, or is private: check --model, or set "
            "HF_TOKEN to a token that can",
        ),
        (
            REPO,
            "v9",
            None,
            f"model {REPO} has no revision v9: check --revision (a branch, a tag or a commit hash)",
        ),
    ],
)
def test_hub_refusals_are_one_line(
    cache: Path, hub: FakeHub, repo: str, revision: str | None, token: str | None, expected: str
) -> None:
    settings = HubSettings(cache_dir=cache, endpoint=hub.url, token=token)
    with pytest.raises(PreflightError) as exc:
        resolve_model(ModelRef(repo), ModelFetch(revision=revision), settings)
    assert one_line(exc) == expected.format(url=hub.url)


def test_an_unreachable_hub_is_one_line(cache: Path, online: None) -> None:
    with socket.socket() as sock:  # a port nothing listens on once closed
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    endpoint = f"http://127.0.0.1:{port}"
    with pytest.raises(PreflightError) as exc:
        resolve_model(ModelRef(REPO), ModelFetch(), HubSettings(cache, endpoint=endpoint))
    message = one_line(exc)
    assert message.startswith(f"cannot reach {endpoint} to download {REPO} (")
    assert message.endswith(
        f"and the HF cache at {cache} does not hold it: check the network and HF_ENDPOINT, or "
        "give a local directory to --model"
    )


def test_a_full_disk_is_one_line(cache: Path) -> None:
    # No portable way to fill a disk in a unit test: the error a blob write raises, mapped.
    full = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    error = _hub_error(full, REPO, ModelFetch(), HubSettings(cache))
    assert str(error) == (
        f"no space left in the HF cache at {cache} while downloading {REPO}: free some, or "
        "point HF_HOME at a larger disk"
    )


# --- the CLI: resolution comes before any server or container ---


def bench_run(args: list[str], hf_home: Path, endpoint: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    env.update({"HF_HOME": str(hf_home), "HF_ENDPOINT": endpoint})
    code = "import sys; from runner.cli import main; sys.argv[0] = 'bench-run'; main()"
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )


RUN_ARGS = ["--executor", "local", "--vendor", "cpu", "--qps", "1", "--num-prompts", "2"]


@pytest.mark.parametrize(
    ("model", "extra", "expected"),
    [
        ("org/gated-llama", [], "error: model org/gated-llama is gated: accept its licence"),
        ("org/no-such-model", [], "error: model org/no-such-model is not on http://"),
        (REPO, ["--revision", "v9"], f"error: model {REPO} has no revision v9"),
    ],
)
def test_cli_fails_on_the_hub_before_anything_starts(
    tmp_path: Path, hub: FakeHub, model: str, extra: list[str], expected: str
) -> None:
    out = tmp_path / "runs"
    proc = bench_run(
        [*RUN_ARGS, "--model", model, *extra, "--out", str(out), "--vllm", "/nonexistent/vllm"],
        tmp_path / "hf",
        hub.url,
    )
    assert proc.returncode == 1, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, proc.stderr
    assert errors[0].startswith(expected)
    assert "Traceback" not in proc.stderr
    assert not out.exists()


def test_cli_downloads_then_checks_the_host(tmp_path: Path, hub: FakeHub) -> None:
    proc = bench_run(
        [*RUN_ARGS, "--model", REPO, "--out", str(tmp_path / "runs"), "--vllm", "/no/vllm"],
        tmp_path / "hf",
        hub.url,
    )
    lines = proc.stderr.splitlines()
    assert lines[0].startswith(f"downloading {REPO} (include everything; exclude original/*)")
    assert lines[-1] == (
        "error: --vllm /no/vllm: no executable file there; " + lines[-1].split("there; ", 1)[1]
    )
    assert proc.returncode == 1
    assert (tmp_path / "hf" / "hub" / "models--org--tiny-llama" / "snapshots" / SHA).is_dir()


def test_cli_no_download_and_offline(tmp_path: Path, hub: FakeHub) -> None:
    proc = bench_run([*RUN_ARGS, "--model", REPO, "--no-download"], tmp_path / "hf", hub.url)
    assert proc.returncode == 1
    assert (
        proc.stderr.strip()
        .splitlines()[-1]
        .startswith(
            f"error: {REPO} is not in the HF cache at {tmp_path / 'hf' / 'hub'} and --no-download"
        )
    )
    assert hub.requests == []


def test_cli_dry_run_names_the_repo_and_downloads_nothing(
    tmp_path: Path, hub: FakeHub, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_ENDPOINT", hub.url)
    result = CliRunner().invoke(
        main, [*RUN_ARGS, "--model", REPO, "--dry-run"], catch_exceptions=False
    )
    assert result.exit_code == 0, result.output
    assert f"vllm serve {REPO} " in result.stdout
    assert "a real run downloads it first" in result.stderr
    assert hub.requests == []


def test_cli_dry_run_uses_the_cached_snapshot(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    snapshot = build_hub_cache(tmp_path / "hf" / "hub", REPO, FILES, SHA)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    result = CliRunner().invoke(
        main, [*RUN_ARGS, "--model", REPO, "--dry-run"], catch_exceptions=False
    )
    assert result.exit_code == 0, result.output
    assert f"vllm serve {snapshot} " in result.stdout
    assert "HF_HUB_OFFLINE=1" in result.stdout  # the snapshot needs nothing from the hub


# --- docker: a snapshot is reached through the HF cache mount ---


def test_docker_job_reaches_the_snapshot_through_the_cache_mount(tmp_path: Path) -> None:
    hf_home = tmp_path / "hf"
    snapshot = build_hub_cache(hf_home / "hub", REPO, FILES, SHA)
    model = resolve_model(ModelRef(REPO), ModelFetch(), HubSettings(hf_home / "hub", offline=True))
    run = Run("20261122-031500-tiny-llama-cpu-1a2b3c", "cpu", model, EngineConfig())
    executor = DockerExecutor(
        DockerSettings(out_root=tmp_path / "runs", image="some/image:1", hf_cache=hf_home)
    )
    prepared = executor.prepare(run, None)
    mounts = {m.target: m for m in prepared.spec.mounts}
    assert mounts[HF_CACHE_DIR].source == str(hf_home.resolve())
    assert not any(target.startswith(MODELS_DIR) for target in mounts)
    inside = f"{HF_CACHE_DIR}/hub/models--org--tiny-llama/snapshots/{SHA}"
    job = prepared.job.to_dict()
    text = json.dumps(job)
    assert str(snapshot) not in text  # no host path reaches the container
    assert job["server"]["argv"][2] == inside
    assert job["env"]["HF_HUB_OFFLINE"] == "1"


def test_docker_still_mounts_a_model_outside_the_cache(tmp_path: Path) -> None:
    local = tmp_path / "tiny"
    local.mkdir()
    (local / "config.json").write_bytes(CONFIG)
    run = Run("r1", "cpu", ModelRef.resolve(str(local)), EngineConfig())
    (tmp_path / "hf").mkdir()
    executor = DockerExecutor(
        DockerSettings(out_root=tmp_path / "runs", image="some/image:1", hf_cache=tmp_path / "hf")
    )
    prepared = executor.prepare(run, None)
    assert {m.target for m in prepared.spec.mounts} >= {f"{MODELS_DIR}/tiny", HF_CACHE_DIR}
    assert prepared.job.to_dict()["server"]["argv"][2] == f"{MODELS_DIR}/tiny"
