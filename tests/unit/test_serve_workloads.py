"""The source documents' workloads: sharegpt's own lengths, the chat endpoint, the sonnet recipe."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from results.model.records import records_from_run
from results.model.rundir import load_run
from runner.agent.sonnet import (
    CHARS_PER_TOKEN,
    INSTRUCTION,
    build_prompts,
    shared_prefix,
    write_prompts,
)
from runner.errors import PlanError
from runner.rundir import SonnetJob
from runner.scenarios.serve import BUNDLED_SONNETS, SERVE, ServeParams
from tests.unit.test_scenario_serve import FLAGS

ROOT = Path(__file__).resolve().parents[2]
OLD_RUN = next((ROOT / "tests" / "fixtures" / "runs").iterdir())


# -- the flags -----------------------------------------------------------------------------------


def test_params_from_sonnet_defaults_to_the_bundled_text_and_the_old_prefix() -> None:
    params = SERVE.params_from({**FLAGS, "dataset": "sonnet"})
    assert params.dataset_path == str(BUNDLED_SONNETS.resolve())
    assert len(BUNDLED_SONNETS.read_text().splitlines()) >= 300  # 24 sonnets of 14 lines
    assert params.prefix_len == 200
    # a prompt shorter than the documents' prefix shares half of itself
    assert SERVE.params_from({**FLAGS, "dataset": "sonnet", "input_len": 64}).prefix_len == 32
    given = SERVE.params_from({**FLAGS, "dataset": "sonnet", "prefix_len": 0})
    assert given.prefix_len == 0


@pytest.mark.parametrize("prefix", [1024, 2000])
def test_params_from_prefix_must_be_below_the_input(prefix: int) -> None:
    with pytest.raises(PlanError, match=f"--prefix-len {prefix} must be below --input-len 1024"):
        SERVE.params_from({**FLAGS, "dataset": "sonnet", "prefix_len": prefix})


def test_params_from_output_len_is_sharegpts_only_when_given(tmp_path: Path) -> None:
    data = tmp_path / "sharegpt.json"
    data.write_text("[]")
    flags = {**FLAGS, "dataset": "sharegpt", "dataset_path": str(data)}
    assert SERVE.params_from(flags).sharegpt_output_len is None
    assert SERVE.params_from({**flags, "output_len": 50}).sharegpt_output_len == 50
    # random and sonnet take --output-len from the run (default 128), as before
    assert SERVE.params_from({**FLAGS, "output_len": 50}).sharegpt_output_len is None


def test_lengths_say_where_the_lengths_come_from() -> None:
    sharegpt = {"dataset": "sharegpt", "dataset_path": "/d.json"}
    assert ServeParams().lengths.startswith("exact")
    assert ServeParams(**sharegpt).lengths.startswith("from the dataset")  # type: ignore[arg-type]
    capped = ServeParams(**sharegpt, sharegpt_output_len=50)  # type: ignore[arg-type]
    assert "output at most 50 tokens" in capped.lengths
    sonnet = ServeParams(dataset="sonnet", dataset_path="/s.txt", prefix_len=200)
    assert sonnet.lengths.startswith("input estimated at 4 characters per token")
    assert "first 200 shared" in sonnet.lengths and "chat template" in sonnet.lengths
    raw = ServeParams(dataset="sonnet", dataset_path="/s.txt", skip_chat_template=True)
    assert "chat template" not in raw.lengths


# -- the agent's sonnet prompts ------------------------------------------------------------------


LINES = [f"line {i} of the poem, long enough to count" for i in range(40)]


def test_prompts_share_the_prefix_then_differ() -> None:
    prompts = build_prompts(LINES, 6, input_len=120, seed="p", prefix_len=40)
    shared = shared_prefix(LINES, 40)
    # the poem's first lines, whole, until 40 tokens' worth (160 characters)
    assert shared == INSTRUCTION + "".join(f"{line}\n" for line in LINES[:3])
    assert 40 * CHARS_PER_TOKEN <= len(shared) < 40 * CHARS_PER_TOKEN + len(LINES[0]) + 1
    assert all(p.startswith(shared) for p in prompts)
    assert len({p[len(shared) :] for p in prompts}) > 1  # the rest is drawn at random
    assert all(120 * CHARS_PER_TOKEN <= len(p) < 120 * CHARS_PER_TOKEN + 50 for p in prompts)
    assert prompts == build_prompts(LINES, 6, input_len=120, seed="p", prefix_len=40)


def test_no_prefix_is_the_instruction_alone() -> None:
    prompts = build_prompts(LINES, 8, input_len=60, seed="q")
    assert all(p.startswith(INSTRUCTION) for p in prompts)
    assert len({p.split("\n")[1] for p in prompts}) > 1


def test_a_short_poem_comes_round_again_for_a_long_prefix() -> None:
    prompt = build_prompts(["a b c"], 1, input_len=100, seed="r", prefix_len=90)[0]
    assert prompt.count("a b c\n") >= (90 * CHARS_PER_TOKEN - len(INSTRUCTION)) // 6


def test_write_prompts_from_the_bundled_sonnets(tmp_path: Path) -> None:
    job = SonnetJob(str(BUNDLED_SONNETS), "data/p.sonnet.jsonl", 5, 550, 200)
    target = write_prompts(job, 150, tmp_path, "serve-qps1")
    rows = [json.loads(line) for line in target.read_text().splitlines()]
    assert len(rows) == 5 and all(row["output_tokens"] == 150 for row in rows)
    assert all(row["prompt"].startswith(INSTRUCTION + "From fairest creatures") for row in rows)
    # an old job (no prefix_len) reads back as no shared prefix
    old = {k: v for k, v in job.to_dict().items() if k != "prefix_len"}
    assert SonnetJob(**old).prefix_len == 0


# -- the records ---------------------------------------------------------------------------------


def _run_with(tmp_path: Path, serve: dict[str, object]) -> Path:
    """The fixture run, its serving sweep rewritten as if it had used `serve`'s settings."""
    run_dir = tmp_path / OLD_RUN.name
    shutil.copytree(OLD_RUN, run_dir)
    run_json = run_dir / "run.json"
    data = json.loads(run_json.read_text())
    data["serve"].update(serve)
    run_json.write_text(json.dumps(data))
    return run_dir


def test_an_old_run_reads_as_completions_with_its_lengths() -> None:
    records = records_from_run(load_run(OLD_RUN))
    serve = [r for r in records if r.scenario == "serve"]
    assert serve and all(r.endpoint == "completions" and r.lengths is None for r in serve)
    assert all(r.prefix_len is None and r.input_len is not None for r in serve)
    assert all(r.endpoint is None for r in records if r.scenario != "serve")


def test_sharegpt_with_its_own_lengths_has_no_made_up_length(tmp_path: Path) -> None:
    params = ServeParams(dataset="sharegpt", dataset_path="/d.json", endpoint="chat")
    run_dir = _run_with(
        tmp_path,
        {"dataset": "sharegpt", "dataset_path": "/d.json", "endpoint": "chat",
         "sharegpt_output_len": None, "lengths": params.lengths},
    )  # fmt: skip
    records = records_from_run(load_run(run_dir))
    serve = [r for r in records if r.scenario == "serve"]
    assert serve and all(r.input_len is None and r.output_len is None for r in serve)
    assert all(r.endpoint == "chat" and r.lengths == params.lengths for r in serve)
    assert all(r.to_dict()["lengths"].startswith("from the dataset") for r in serve)
    # the offline points keep the run's lengths
    assert all(r.input_len == 128 for r in records if r.scenario == "latency")


def test_sharegpt_of_old_kept_the_output_len_it_was_given(tmp_path: Path) -> None:
    run_dir = _run_with(tmp_path, {"dataset": "sharegpt", "dataset_path": "/d.json"})
    records = records_from_run(load_run(run_dir))
    serve = [r for r in records if r.scenario == "serve"]
    assert serve and all(r.input_len is None and r.output_len == 32 for r in serve)


def test_sonnet_records_its_shared_prefix(tmp_path: Path) -> None:
    run_dir = _run_with(tmp_path, {"dataset": "sonnet", "dataset_path": "/s.txt", "prefix_len": 16})
    serve = [r for r in records_from_run(load_run(run_dir)) if r.scenario == "serve"]
    assert serve and all(r.prefix_len == 16 and r.input_len == 128 for r in serve)
    assert serve[0].point_key != records_from_run(load_run(OLD_RUN))[0].point_key
