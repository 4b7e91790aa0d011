"""The source documents' workloads on a real CPU server: chat endpoint, sharegpt's own lengths."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from click.testing import CliRunner

from results.model.records import records_from_run
from results.model.rundir import load_run
from runner.agent.sonnet import INSTRUCTION, write_prompts
from runner.cli import main as run_main
from runner.rundir import SonnetJob
from runner.scenarios.serve import BUNDLED_SONNETS
from tests.e2e.test_cpu_sweep import COMMON

# answers of known, different lengths: a fixed --output-len would flatten them
ANSWER_WORDS = (5, 9, 14, 20, 27, 33, 41, 50)


def _tokenizer(model: Path) -> Any:
    from transformers import AutoTokenizer  # seconds to import: this file's tests only

    return AutoTokenizer.from_pretrained(str(model))


def _sharegpt(path: Path, tokenizer: Any) -> tuple[list[int], list[int]]:
    """A ShareGPT-format file; its prompts' and answers' token counts as vLLM counts them."""
    entries: list[dict[str, Any]] = [
        {
            "id": f"c{i}",
            "conversations": [
                {"from": "human", "value": f"Question {i}: " + "tell me more " * (i + 2)},
                {"from": "gpt", "value": " ".join(["answer"] * words)},
            ],
        }
        for i, words in enumerate(ANSWER_WORDS)
    ]
    path.write_text(json.dumps(entries), encoding="utf-8")
    count = [
        [len(tokenizer(turn["value"]).input_ids) for turn in e["conversations"]] for e in entries
    ]
    return [c[0] for c in count], [c[1] for c in count]


def test_chat_endpoint_keeps_the_sharegpt_lengths(tmp_path: Path, tiny_model: Path) -> None:
    data = tmp_path / "sharegpt.json"
    prompt_lens, answer_lens = _sharegpt(data, _tokenizer(tiny_model))
    out = tmp_path / "runs"
    common = list(COMMON)
    del common[common.index("--output-len") : common.index("--output-len") + 2]
    args = [
        "--model", str(tiny_model), *common, "--endpoint", "chat",
        "--dataset", "sharegpt", "--dataset-path", str(data),
        "--qps", "8,inf", "--num-prompts", str(len(ANSWER_WORDS)), "--out", str(out),
    ]  # fmt: skip
    started = time.monotonic()
    result = CliRunner().invoke(run_main, args, catch_exceptions=False)
    print(f"bench-run: {time.monotonic() - started:.0f} s")  # CI time matters: -s shows it
    assert result.exit_code == 0, result.output
    (run_dir,) = [p for p in out.iterdir() if p.is_dir()]
    status = json.loads((run_dir / "status.json").read_text())
    assert [p["verdict"] for p in status["points"]] == ["ok", "ok"], status["points"]
    serve = json.loads((run_dir / "run.json").read_text())["serve"]
    assert serve["endpoint"] == "chat" and serve["sharegpt_output_len"] is None
    assert serve["lengths"].startswith("from the dataset")
    for point in ("serve-qps8", "serve-qpsinf"):
        raw = json.loads((run_dir / "raw" / f"{point}.json").read_text())
        assert raw["completed"] == len(ANSWER_WORDS) and raw["failed"] == 0, point
        assert raw["backend"] == "openai-chat", raw["backend"]
        # the dataset's prompts, each with the chat template's few tokens the server adds
        added = {i - p for i, p in zip(sorted(raw["input_lens"]), sorted(prompt_lens), strict=True)}
        assert len(added) == 1 and 0 <= min(added) < 32, (point, raw["input_lens"], prompt_lens)
        # each request asks for its answer's length; random weights rarely stop before it
        outputs = sorted(raw["output_lens"])
        ok = all(o <= a for o, a in zip(outputs, sorted(answer_lens), strict=True))
        assert ok and sum(outputs) >= 0.75 * sum(answer_lens), (outputs, answer_lens)
        assert len(set(outputs)) > 4, outputs  # not one fixed length
    records = [r for r in records_from_run(load_run(run_dir)) if r.scenario == "serve"]
    assert [(r.endpoint, r.input_len, r.output_len) for r in records] == [("chat", None, None)] * 2


def test_sonnet_prompts_through_vllms_client(tmp_path: Path, tiny_model: Path) -> None:
    """No server: the agent's prompt file, sampled by vLLM's own custom dataset as a point does."""
    from vllm.benchmarks.datasets.datasets import BenchmarkDataset, CustomDataset

    job = SonnetJob(str(BUNDLED_SONNETS), "data/p.sonnet.jsonl", 4, 300, 100)
    path = write_prompts(job, 32, tmp_path, "serve-qps1")
    tokenizer = _tokenizer(tiny_model)
    # vLLM reads the JSONL with pandas (its `bench` extra, which this venv lacks): the rows are
    # read here, everything after (chat template, token counts) is vLLM's own code
    dataset = CustomDataset.__new__(CustomDataset)
    BenchmarkDataset.__init__(dataset, dataset_path=str(path), random_seed=0)
    dataset.data = [json.loads(line) for line in path.read_text().splitlines()]
    samples = dataset.sample(tokenizer=tokenizer, num_requests=4, output_len=32)
    prompts = [str(s.prompt) for s in samples]
    # the model's chat template, applied on the client as the documents' runs did
    assert all(p.startswith(f"user: {INSTRUCTION}From fairest") for p in prompts)
    ids = [tokenizer(p).input_ids for p in prompts]
    assert [s.prompt_len for s in samples] == [len(i) for i in ids]
    shared = 0
    while all(len(i) > shared and i[shared] == ids[0][shared] for i in ids):
        shared += 1
    assert shared >= 100, shared  # at least the prefix asked for, in this tokenizer's tokens
    assert shared < min(len(i) for i in ids)  # and the rest differs
