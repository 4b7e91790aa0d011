"""bench-run on bad input: one `error: ` line, the right exit status, nothing written."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from runner.cli import main
from runner.entry import choose_executor
from runner.request import RunRequest

PLAN_ERROR = 2
PREFLIGHT_ERROR = 1


def cli_runner() -> CliRunner:
    """click < 8.2 mixes stderr into stdout unless told not to; 8.2+ always keeps it apart."""
    try:
        return CliRunner(mix_stderr=False)  # type: ignore[call-arg]
    except TypeError:
        return CliRunner()


@pytest.fixture
def out_dir(tmp_path: Path) -> Path:
    return tmp_path / "runs"


@pytest.fixture
def fake_vllm(tmp_path: Path) -> Path:
    """An executable named vllm that fails if anything ever runs it."""
    script = tmp_path / "bin" / "vllm"
    script.parent.mkdir()
    script.write_text("#!/bin/sh\necho 'fake vllm must not run' >&2\nexit 1\n")
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return script


@pytest.fixture(autouse=True)
def no_gpu_tools(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No nvidia-smi / amd-smi / rocm-smi / vllm on PATH, whatever host runs the tests."""
    empty = tmp_path / "empty-path"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))


def invoke(args: list[str], out: Path) -> Result:
    # auto picks docker from --image without asking an engine; otherwise it would ask one,
    # so tests without --image name the host's vllm
    executor = "auto" if "--image" in args else "local"
    return cli_runner().invoke(
        main, [*args, "--out", str(out)], catch_exceptions=False, env={"BENCH_EXECUTOR": executor}
    )


def assert_one_error_line(result: Result, code: int, *fragments: str) -> str:
    assert result.exit_code == code, (result.exit_code, result.stdout, result.stderr)
    stderr = result.stderr
    assert "Traceback" not in stderr
    lines = [line for line in stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error: ")]
    assert len(errors) == 1, stderr
    assert lines[-1] == errors[0], stderr
    if code == PLAN_ERROR:  # nothing else has happened yet: the error is all there is
        assert lines == errors, stderr
    assert result.stdout == ""
    for fragment in fragments:
        assert fragment in errors[0], errors[0]
    return errors[0]


# -- plan errors: exit 2 -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (["--vendor", "foo"], ["error: unknown vendor 'foo'", "nvidia, amd, cpu"]),
        (["--qps", "0"], ["error: --qps: '0' must be a positive"]),
        (["--qps", "abc"], ["error: --qps: 'abc' is not a number"]),
        (["--qps", "1,3,1"], ["names a rate twice"]),
        (["--qps", "inf"], ["--qps inf", "--num-prompts"]),
        (
            ["--input-len", "2000", "--output-len", "100", "--max-model-len", "2048"],
            ["2100", "2048", "--max-model-len"],
        ),
        (["--input-len", "2000", "--output-len", "100"], ["2100", "max_position_embeddings"]),
        (["--executor", "kubernetes"], ["error: unknown executor 'kubernetes'", "k8s"]),
        (["--executor", "k8s"], ["--model", "no pod sees", "--model-pvc NAME --model-pvc-root"]),
        (["--scenario", "bogus"], ["error: unknown scenario 'bogus'"]),
        (["--engine-arg", "bad key"], ["error: --engine-arg 'bad key'"]),
        (["--engine-arg", "max_model_len=4096"], ["--engine-arg max-model-len", "--help"]),
        (["--env", "NOVALUE"], ["error: --env 'NOVALUE'"]),
        (["--percentiles", "100"], ["error: --percentiles: 100"]),
        (["--tp", "0"], ["error: --tp 0"]),
        (["--tp", "abc"], ["error: ", "'abc' is not a valid integer"]),
        (["--port", "70000"], ["error: --port 70000"]),
        (["--dataset", "sharegpt"], ["needs --dataset-path"]),
        (["--dataset-path", "/nonexistent/data.json"], ["--dataset-path", "no such file"]),
        (["--num-prompts", "0"], ["--num-prompts 0"]),
        (["--endpoint", "responses"], ["error: --endpoint 'responses'", "completions, chat"]),
        (["--dataset", "sonnet", "--prefix-len", "1024"], ["--prefix-len 1024 must be below"]),
        (["--dataset", "sonnet", "--prefix-len", "-1"], ["--prefix-len -1"]),
        (["--prefix-len", "16"], ["--prefix-len is for --dataset sonnet", "random"]),
        (["--skip-chat-template"], ["--skip-chat-template is for --dataset sonnet"]),
        (
            ["--dataset", "sonnet", "--endpoint", "chat", "--skip-chat-template"],
            ["the chat endpoint applies the model's chat template"],
        ),
        (["--output-len", "0"], ["--output-len must be at least 1"]),
        (["--no-such-flag"], ["error: ", "--no-such-flag"]),
        (["--slo", "ttft_p99=500"], ["error: --slo: 'ttft_p99=500' is not METRIC=MS"]),
        (["--slo", "ttft_std_ms=5"], ["error: --slo:", "mean, median, pNN"]),
        (["--slo", "tpot_p99_ms=-1"], ["error: --slo: tpot_p99_ms=-1", "positive"]),
        (["--find-max-qps"], ["error: --find-max-qps", "give --slo"]),
        (
            ["--find-max-qps", "--slo", "ttft_p99_ms=5", "--qps", "4"],
            ["error: --find-max-qps", "two finite rates"],
        ),
        (
            ["--find-max-qps", "--slo", "ttft_p99_ms=5", "--qps-tolerance", "x"],
            ["error: --qps-tolerance 'x'"],
        ),
    ],
)
def test_plan_errors(model_dir: Path, out_dir: Path, args: list[str], fragments: list[str]) -> None:
    base = ["--model", str(model_dir)]
    if "--vendor" not in args:
        base += ["--vendor", "cpu"]
    result = invoke([*base, *args], out_dir)
    assert_one_error_line(result, PLAN_ERROR, *fragments)
    assert not out_dir.exists()


def test_missing_model_dir(out_dir: Path) -> None:
    result = invoke(["--vendor", "cpu", "--model", "/nonexistent/dir"], out_dir)
    assert_one_error_line(result, PLAN_ERROR, "/nonexistent/dir", "does not exist")
    assert not out_dir.exists()


def test_model_dir_without_config(tmp_path: Path, out_dir: Path) -> None:
    empty = tmp_path / "empty-model"
    empty.mkdir()
    result = invoke(["--vendor", "cpu", "--model", str(empty)], out_dir)
    assert_one_error_line(result, PLAN_ERROR, str(empty), "has no config.json")
    assert not out_dir.exists()


def test_missing_model_option(out_dir: Path) -> None:
    result = invoke(["--vendor", "cpu"], out_dir)
    assert_one_error_line(result, PLAN_ERROR, "--model")
    assert not out_dir.exists()


# -- preflight errors: exit 1 --------------------------------------------------------------------


def test_too_few_gpus(model_dir: Path, out_dir: Path, fake_vllm: Path) -> None:
    result = invoke(
        ["--vendor", "nvidia", "--tp", "2", "--model", str(model_dir), "--vllm", str(fake_vllm)],
        out_dir,
    )
    assert_one_error_line(
        result, PREFLIGHT_ERROR, "error: --tp 2 needs 2 nvidia GPUs but nvidia-smi found 0"
    )
    assert not out_dir.exists()


def test_vllm_not_there(model_dir: Path, out_dir: Path) -> None:
    result = invoke(
        ["--vendor", "cpu", "--model", str(model_dir), "--vllm", "/nonexistent/vllm"], out_dir
    )
    assert_one_error_line(
        result, PREFLIGHT_ERROR, "error: --vllm /nonexistent/vllm", "install", "pip install vllm"
    )
    assert not out_dir.exists()


def test_vllm_not_on_path(
    model_dir: Path, out_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # an interpreter with no vllm beside it, and an empty PATH
    monkeypatch.setattr("sys.executable", str(tmp_path / "nowhere" / "python"))
    result = invoke(["--vendor", "cpu", "--model", str(model_dir)], out_dir)
    assert_one_error_line(result, PREFLIGHT_ERROR, "no vllm executable on PATH", "install")
    assert not out_dir.exists()


def test_port_in_use(model_dir: Path, out_dir: Path, fake_vllm: Path) -> None:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        result = invoke(
            [
                "--vendor", "cpu", "--model", str(model_dir), "--vllm", str(fake_vllm),
                "--port", str(port),
            ],
            out_dir,
        )  # fmt: skip
    assert_one_error_line(result, PREFLIGHT_ERROR, f"error: port {port} on 127.0.0.1 is in use")
    assert not out_dir.exists()


# -- dry run -------------------------------------------------------------------------------------


def test_dry_run_prints_commands_and_writes_nothing(model_dir: Path, out_dir: Path) -> None:
    result = invoke(
        ["--vendor", "cpu", "--model", str(model_dir), "--input-len", "64", "--output-len", "32",
         "--dry-run"],
        out_dir,
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    out = result.stdout
    assert "vllm serve" in out
    assert "vllm bench serve" in out
    assert "--request-rate 1 " in out
    assert "--no-enable-prefix-caching" in out
    assert "export HF_HUB_OFFLINE=1" in out
    assert f"--model {model_dir} --tokenizer {model_dir}" in out
    points = [line for line in out.splitlines() if line.startswith("# point ")]
    assert points == [f"# point serve-qps{q}:" for q in (1, 3, 5, 7, 9)]
    assert "--num-prompts 120 --request-rate 1 " in out  # 120 s x 1 QPS
    assert "--num-prompts 1080 --request-rate 9 " in out
    assert not out_dir.exists()


def test_dry_run_hides_tokens(model_dir: Path, out_dir: Path) -> None:
    result = invoke(
        [
            "--vendor", "cpu", "--model", str(model_dir), "--input-len", "64",
            "--output-len", "32", "--qps", "inf", "--num-prompts", "10",
            "--scenario", "serve", "--scenario", "latency",
            "--env", "HF_TOKEN=hf_abcdef123",
            "--engine-arg", "api-key=hf_abcdef123",
            "--dry-run",
        ],
        out_dir,
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    assert "hf_abcdef123" not in result.stdout
    assert "hf_abcdef123" not in result.stderr
    assert "HF_TOKEN='***'" in result.stdout or "HF_TOKEN=***" in result.stdout
    assert "--api-key '***'" in result.stdout or "--api-key ***" in result.stdout
    assert "--request-rate inf " in result.stdout
    assert "# point latency:" in result.stdout
    assert "vllm bench latency" in result.stdout
    assert not out_dir.exists()


def test_seconds_per_point_inf_is_a_plan_error(model_dir: Path, out_dir: Path) -> None:
    result = invoke(
        ["--vendor", "cpu", "--model", str(model_dir), "--input-len", "64", "--output-len", "32",
         "--seconds-per-point", "inf", "--dry-run"],
        out_dir,
    )  # fmt: skip
    assert_one_error_line(result, PLAN_ERROR, "--seconds-per-point")
    assert not out_dir.exists()


def test_image_unknown_variant_lists_the_catalog(model_dir: Path, out_dir: Path) -> None:
    result = invoke(["--vendor", "cpu", "--model", str(model_dir), "--input-len", "64",
                     "--image", "no-such-variant", "--dry-run"], out_dir)  # fmt: skip
    assert_one_error_line(result, 1, "unknown image variant 'no-such-variant'", "cpu-wheelhouse")
    assert not out_dir.exists()


def test_image_reference_that_is_not_one(model_dir: Path, out_dir: Path) -> None:
    result = invoke(["--vendor", "cpu", "--model", str(model_dir), "--input-len", "64",
                     "--image", "Bad Image:tag", "--dry-run"], out_dir)  # fmt: skip
    assert_one_error_line(result, 1, "not an image reference")


@pytest.mark.parametrize("image", ["cpu-wheelhouse", "vllm/vllm-openai-cpu:v0.32.0-x86_64"])
def test_image_is_for_container_executors(model_dir: Path, out_dir: Path, image: str) -> None:
    result = invoke(["--vendor", "cpu", "--model", str(model_dir), "--input-len", "64",
                     "--executor", "local", "--image", image, "--dry-run"], out_dir)  # fmt: skip
    assert_one_error_line(result, PLAN_ERROR, f"--image {image} is for container executors")
    assert not out_dir.exists()


def test_cleanup_without_an_engine_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-engine.sock")
    result = cli_runner().invoke(main, ["cleanup"], catch_exceptions=False)
    assert_one_error_line(result, 1, "no Docker engine answers", "start")


def test_flags_without_a_command_run_a_benchmark(model_dir: Path, out_dir: Path) -> None:
    plain = invoke(["--vendor", "cpu", "--model", str(model_dir), "--input-len", "64",
                    "--dry-run"], out_dir)  # fmt: skip
    named = cli_runner().invoke(
        main, ["run", "--vendor", "cpu", "--model", str(model_dir), "--input-len", "64",
               "--dry-run", "--out", str(out_dir)], catch_exceptions=False,
        env={"BENCH_EXECUTOR": "local"},
    )  # fmt: skip
    assert plain.exit_code == named.exit_code == 0
    assert "vllm serve" in plain.stdout and "vllm serve" in named.stdout


def _auto_opts(**given: object) -> RunRequest:
    return RunRequest.from_options({"model": "org/model", **given})


def test_auto_executor_is_local_without_an_engine(tmp_path: Path) -> None:
    environ = {"DOCKER_HOST": f"unix://{tmp_path}/no-engine.sock"}
    name, why = choose_executor(_auto_opts(), environ)
    assert name == "local"
    assert "no Docker engine answers" in why


@pytest.mark.parametrize(
    ("given", "expected", "fragment"),
    [
        ({"image": "cpu-wheelhouse"}, "docker", "--image given"),
        ({"gpus": "0,1", "keep": True}, "docker", "--gpus, --keep given"),
        ({"vllm_path": "/opt/vllm/bin/vllm"}, "local", "--vllm/--port"),
        ({"executor": "local"}, "local", ""),
        ({"executor": "docker"}, "docker", ""),
    ],
)
def test_choose_executor(given: dict[str, object], expected: str, fragment: str) -> None:
    # none of these asks an engine: the flags decide
    name, why = choose_executor(_auto_opts(**given), {"DOCKER_HOST": "tcp://192.0.2.1:9"})
    assert name == expected
    assert fragment in why


def test_dry_run_docker_uses_the_vendor_default_image(model_dir: Path, out_dir: Path) -> None:
    result = cli_runner().invoke(
        main,
        ["--vendor", "cpu", "--model", str(model_dir), "--input-len", "64", "--dry-run",
         "--executor", "docker", "--out", str(out_dir)],
        catch_exceptions=False,
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    assert "executor: docker" in result.stderr
    assert "image cpu-vllm-openai (the cpu default" in result.stderr
    assert '"image": "cpu-vllm-openai"' in result.stdout or "cpu-vllm-openai" in result.stdout


@pytest.mark.parametrize(
    ("vendor", "image", "its_vendor"),
    [
        ("nvidia", "rocm-amd", "amd"),
        ("amd", "cuda-vllm-openai", "nvidia"),
        ("cpu", "rocm-pip", "amd"),
    ],
)
def test_a_variant_of_another_vendor_is_refused(
    model_dir: Path, out_dir: Path, vendor: str, image: str, its_vendor: str
) -> None:
    # an NVIDIA GPU request on a ROCm image would start and fail on the GPU; refuse it first
    result = invoke(
        ["--vendor", vendor, "--model", str(model_dir), "--image", image, "--dry-run"], out_dir
    )
    assert_one_error_line(result, 2, f"--image {image} is a {its_vendor} image", vendor)
    assert not out_dir.exists()


def test_the_vendor_default_image_matches_the_vendor(model_dir: Path, out_dir: Path) -> None:
    for vendor in ("nvidia", "amd", "cpu"):
        result = cli_runner().invoke(
            main,
            ["--vendor", vendor, "--model", str(model_dir), "--input-len", "64", "--dry-run",
             "--executor", "docker", "--out", str(out_dir)],
            catch_exceptions=False,
        )  # fmt: skip
        assert result.exit_code == 0, result.stderr


def test_request_fields_are_the_run_command_options() -> None:
    # one name per flag: the click options and the typed request cannot drift apart
    from dataclasses import fields

    from runner.cli.run import run

    cli_only = ("verbose", "plan_file", "resume_dir")  # what to run, not how: no request field
    options = {p.name for p in run.params if p.name not in cli_only}
    assert options == {f.name for f in fields(RunRequest)}


def test_an_unknown_request_key_is_named() -> None:
    from runner.errors import PlanError

    with pytest.raises(PlanError, match="--no-such-option"):
        RunRequest.from_options({"model": "org/m", "no_such_option": 1})
