"""The vendor's tuned environment at run time: which catalog values, for which image, in the job."""

from __future__ import annotations

from pathlib import Path

import pytest

from runner.images.catalog import CatalogError, load_catalog, load_variant
from runner.images.tuning import run_tuning, tuning_line
from runner.jobs import Deadlines, build_job
from runner.plan import EngineConfig, ModelRef, Run
from runner.vendors import profile_for

CATALOG = load_catalog()


def test_image_scoped_values_stay_in_their_image() -> None:
    variant = CATALOG["rocm-vllm-openai"]
    scoped = {var.name for var in variant.env if var.scope == "image"}
    assert scoped == {"PYTORCH_TUNABLEOP_ENABLED", "PYTORCH_TUNABLEOP_FILENAME"}
    assert variant.run_env == {var.name: var.value for var in variant.env if var.name not in scoped}
    assert variant.run_env["VLLM_ROCM_USE_AITER"] == "1"


@pytest.mark.parametrize("vendor", ["nvidia", "amd", "cpu"])
def test_an_outside_image_or_this_host_gets_the_vendor_default_s_tuning(vendor: str) -> None:
    default = CATALOG[profile_for(vendor).default_image]
    for image in (None, "thirdparty/vllm:1.0", profile_for(vendor).default_image):
        tuning = run_tuning(vendor, image, CATALOG)
        assert (tuning.variant, tuning.env) == (default.name, default.run_env)


def test_a_catalog_variant_gets_its_own_tuning() -> None:
    tuning = run_tuning("amd", "rocm-pip", CATALOG)
    assert tuning.variant == "rocm-pip"
    assert tuning.env["HIP_FORCE_DEV_KERNARG"] == "1"
    assert "PYTORCH_TUNABLEOP_FILENAME" not in tuning.env
    line = tuning_line(tuning)
    assert line.startswith("# vendor tuning (catalog rocm-pip, under --env): ")
    assert "HIP_FORCE_DEV_KERNARG=1" in line


def test_the_job_carries_the_tuning_apart_from_the_user_s_env() -> None:
    run = Run(run_id="r1", vendor="cpu", model=ModelRef(source="org/model"),
              engine=EngineConfig(), env=(("VLLM_CPU_KVCACHE_SPACE", "2"),))  # fmt: skip
    tuned = run_tuning("cpu", None, CATALOG).env
    job = build_job(run, vllm="vllm", host="127.0.0.1", port=8000, deadlines=Deadlines(),
                    executor={"name": "local"}, commit=None, tuned_env=tuned)  # fmt: skip
    assert job.tuned_env == tuned and tuned["VLLM_CPU_KVCACHE_SPACE"] == "4"
    assert job.env["VLLM_CPU_KVCACHE_SPACE"] == "2"  # the agent layers --env over the tuning
    assert job.to_dict()["tuned_env"] == tuned


def test_a_bad_scope_names_the_file_and_the_variable(tmp_path: Path) -> None:
    source = CATALOG["cpu-pip"].path
    assert source is not None
    broken = tmp_path / "cpu-pip.yaml"
    broken.write_text(source.read_text().replace('value: "4"\n', 'value: "4"\n    scope: host\n'))
    with pytest.raises(
        CatalogError, match="VLLM_CPU_KVCACHE_SPACE: scope 'host': choose run or image"
    ):
        load_variant(broken)
