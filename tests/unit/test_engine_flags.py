"""Engine flags current vLLM removed (runner/engine_flags.py): the table, translated or refused."""

from __future__ import annotations

import json
import re

import pytest

from runner.engine_flags import (
    LEGACY_FLAGS,
    draft_model,
    draft_revision,
    translate,
    with_draft_path,
)
from runner.errors import PlanError
from runner.plan import EngineConfig, parse_engine_args


def spec(args: tuple[tuple[str, str | None], ...]) -> dict[str, object]:
    values = [v for k, v in args if k == "speculative-config"]
    assert len(values) == 1 and values[0] is not None
    loaded = json.loads(values[0])
    assert isinstance(loaded, dict)
    return loaded


def test_every_entry_says_why_and_which_change_removed_it() -> None:
    for flag, entry in LEGACY_FLAGS.items():
        assert re.fullmatch(r"[a-z0-9-]+", flag)
        assert entry.reason and "\n" not in entry.reason
        assert re.search(r"PR #\d+", entry.removed_by), flag
        assert (entry.key is not None) == (entry.action == "speculative"), flag


def test_untouched_flags_pass_through_in_order() -> None:
    args = (("enforce-eager", None), ("block-size", "16"))
    assert translate(args) == (args, ())


def test_speculative_model_and_tokens_become_one_config_where_the_first_stood() -> None:
    args = parse_engine_args(
        [
            "enforce-eager",
            "speculative-model=org/draft",
            "block-size=16",
            "num-speculative-tokens=5",
        ]
    )
    out, done = translate(args)
    assert [k for k, _ in out] == ["enforce-eager", "speculative-config", "block-size"]
    assert spec(out) == {"model": "org/draft", "num_speculative_tokens": 5}
    (one,) = done
    assert one.asked == "--speculative-model org/draft --num-speculative-tokens 5"
    assert one.passed == '--speculative-config {"model": "org/draft", "num_speculative_tokens": 5}'
    assert "#15466" in one.reason


def test_the_other_speculative_flags_become_keys_too() -> None:
    args = parse_engine_args(
        [
            "speculative-model=org/draft",
            "num-speculative-tokens=3",
            "speculative-draft-tensor-parallel-size=1",
            "speculative-max-model-len=2048",
        ]
    )
    assert spec(translate(args)[0]) == {
        "model": "org/draft",
        "num_speculative_tokens": 3,
        "draft_tensor_parallel_size": 1,
        "max_model_len": 2048,
    }


def test_ngram_is_a_method_not_a_model() -> None:
    args = parse_engine_args(
        [
            "speculative-model=[ngram]",
            "num-speculative-tokens=4",
            "ngram-prompt-lookup-max=5",
            "ngram-prompt-lookup-min=2",
        ]
    )
    config = spec(translate(args)[0])
    assert config == {
        "method": "ngram",
        "num_speculative_tokens": 4,
        "prompt_lookup_max": 5,
        "prompt_lookup_min": 2,
    }
    assert draft_model(translate(args)[0]) is None


def test_disable_log_requests_is_dropped_with_its_reason() -> None:
    out, done = translate((("disable-log-requests", None), ("enforce-eager", None)))
    assert out == (("enforce-eager", None),)
    (one,) = done
    assert (one.asked, one.passed) == ("--disable-log-requests", "")
    assert "off by default" in one.reason and "#29402" in one.reason


def test_use_v2_block_manager_is_dropped() -> None:
    out, done = translate((("use-v2-block-manager", None),))
    assert out == () and done[0].asked == "--use-v2-block-manager"


@pytest.mark.parametrize(
    ("flag", "says"),
    [
        ("num-scheduler-steps=10", "--async-scheduling"),
        ("swap-space=16", "--kv-offloading-size"),
        ("max-seq-len-to-capture=131072", "--max-cudagraph-capture-size"),
        ("device=cuda", "--gpus"),
        ("speculative-disable-by-batch-size=4", "gone"),
    ],
)
def test_flags_without_a_replacement_are_refused(flag: str, says: str) -> None:
    key = flag.split("=", maxsplit=1)[0]
    with pytest.raises(PlanError) as exc:
        translate(parse_engine_args([flag]))
    message = str(exc.value)
    assert "\n" not in message
    assert message.startswith(f"--engine-arg {key}: current vLLM has no --{key} (")
    assert says in message and "PR #" in message


@pytest.mark.parametrize(
    ("items", "says"),
    [
        (["num-speculative-tokens=5"], "needs speculative-model"),
        (["speculative-model=org/draft"], "needs num-speculative-tokens"),
        (["speculative-model=org/draft", "num-speculative-tokens=x"], "positive integer"),
        (["speculative-model=org/draft", "num-speculative-tokens=0"], "positive integer"),
        (["speculative-model", "num-speculative-tokens=2"], "needs a value"),
        (
            ["speculative-model=a/b", "num-speculative-tokens=2", 'speculative-config={"x": 1}'],
            "both given",
        ),
    ],
)
def test_bad_speculative_flags_are_one_line(items: list[str], says: str) -> None:
    with pytest.raises(PlanError) as exc:
        translate(parse_engine_args(items))
    assert says in str(exc.value) and "\n" not in str(exc.value)


def test_engine_config_translates_and_records() -> None:
    engine = EngineConfig(
        extra_args=parse_engine_args(
            ["disable-log-requests", "speculative-model=org/d", "num-speculative-tokens=2"]
        )
    )
    assert engine.args(random_data=False)[-2:] == [
        "--speculative-config",
        '{"model": "org/d", "num_speculative_tokens": 2}',
    ]
    assert [t.asked for t in engine.translated] == [
        "--disable-log-requests",
        "--speculative-model org/d --num-speculative-tokens 2",
    ]


def test_draft_model_helpers() -> None:
    args = parse_engine_args(
        ['speculative-config={"model": "org/d", "revision": "v2", "num_speculative_tokens": 2}']
    )
    assert draft_model(args) == "org/d"
    assert draft_revision(args) == "v2"
    moved = with_draft_path(args, "/models/d")
    assert spec(moved)["model"] == "/models/d" and spec(moved)["revision"] == "v2"
    assert draft_model(parse_engine_args(['speculative-config={"method": "ngram"}'])) is None
    assert draft_model(()) is None and with_draft_path((), "/x") == ()


@pytest.mark.parametrize(
    ("value", "says"),
    [("{not json", "is not JSON"), ("[1]", "JSON object"), ('{"model": 3}', "repo id")],
)
def test_bad_speculative_config_is_one_line(value: str, says: str) -> None:
    with pytest.raises(PlanError) as exc:
        draft_model((("speculative-config", value),))
    assert says in str(exc.value)


def test_no_entry_is_a_flag_the_installed_vllm_still_has() -> None:
    """Against vLLM's own parser when the venv has vLLM: every flag in the table is gone."""
    argparse_utils = pytest.importorskip("vllm.utils.argparse_utils")
    cli_args = pytest.importorskip("vllm.entrypoints.launchers.cli_args")
    parser = cli_args.make_arg_parser(argparse_utils.FlexibleArgumentParser())
    known = {s for action in parser._actions for s in action.option_strings}
    assert not {f"--{flag}" for flag in LEGACY_FLAGS} & known
    for replacement in ("--speculative-config", "--enable-log-requests", "--async-scheduling"):
        assert replacement in known
