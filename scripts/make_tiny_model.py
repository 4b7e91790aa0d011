"""Make a tiny Llama with random weights and a locally trained tokenizer, fully offline.

It exists so the whole tool can be exercised on a CPU with no model hub: `vllm serve` loads it in
about a minute on 2 cores. Its outputs are noise; only the timing path matters.

Constraints that vLLM's CPU backend and benchmarks put on it (seen on vLLM 0.32):
- head_dim 64 (the CPU attention kernels reject 16);
- a vocabulary above 10000 (`vllm bench latency` feeds random token ids below 10000);
- bfloat16 weights, and a chat template in the tokenizer config.

Usage: python scripts/make_tiny_model.py OUT_DIR [--force]
Needs torch, transformers and tokenizers (all come with vLLM).
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import sys
import tempfile
from pathlib import Path

VOCAB_SIZE = 12_288
MARKER = "tiny-model.json"
SPEC = {
    "hidden_size": 128,
    "intermediate_size": 256,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "num_key_value_heads": 2,
    "max_position_embeddings": 2048,
    "vocab_size": VOCAB_SIZE,
    "seed": 0,
}
CHAT_TEMPLATE = (
    "{% for message in messages %}{{ message['role'] }}: {{ message['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}assistant: {% endif %}"
)


def _corpus(seed: int, words: int = 200_000) -> list[str]:
    """Seeded pseudo-text with enough distinct pieces for BPE to learn VOCAB_SIZE tokens."""
    rng = random.Random(seed)
    letters = "abcdefghijklmnopqrstuvwxyz"
    lexicon = ["".join(rng.choices(letters, k=rng.randint(2, 9))) for _ in range(30_000)]
    lines, line = [], []
    for _ in range(words):
        line.append(rng.choice(lexicon))
        if len(line) >= 12:
            lines.append(" ".join(line))
            line = []
    return lines


def make_tokenizer(out: Path) -> None:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    special = ["<unk>", "<s>", "</s>"]
    tokenizer = Tokenizer(models.BPE(unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        special_tokens=special,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(_corpus(SPEC["seed"]), trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        unk_token="<unk>",
        bos_token="<s>",
        eos_token="</s>",
        pad_token="</s>",
        model_max_length=SPEC["max_position_embeddings"],
    )
    fast.chat_template = CHAT_TEMPLATE
    fast.save_pretrained(out)
    size = len(fast)
    if size <= 10_000:
        raise SystemExit(
            f"the trained vocabulary has {size} tokens; vLLM's benchmarks need > 10000"
        )


def make_model(out: Path) -> None:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(SPEC["seed"])
    config = LlamaConfig(
        hidden_size=SPEC["hidden_size"],
        intermediate_size=SPEC["intermediate_size"],
        num_hidden_layers=SPEC["num_hidden_layers"],
        num_attention_heads=SPEC["num_attention_heads"],
        num_key_value_heads=SPEC["num_key_value_heads"],
        max_position_embeddings=SPEC["max_position_embeddings"],
        vocab_size=SPEC["vocab_size"],
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=2,
        tie_word_embeddings=True,
        torch_dtype="bfloat16",
    )
    model = LlamaForCausalLM(config).to(torch.bfloat16)
    model.save_pretrained(out, safe_serialization=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="directory to write the model into")
    parser.add_argument("--force", action="store_true", help="remake it even if it is there")
    args = parser.parse_args(argv)
    out: Path = args.out.resolve()
    marker = out / MARKER
    if marker.is_file() and not args.force:
        try:
            if json.loads(marker.read_text()) == SPEC:
                print(f"tiny model already at {out}")
                return 0
        except json.JSONDecodeError:
            pass
    out.parent.mkdir(parents=True, exist_ok=True)
    # Build beside the target and rename, so an interrupted build never looks finished.
    work = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        make_tokenizer(work)
        make_model(work)
        (work / MARKER).write_text(json.dumps(SPEC, indent=2) + "\n")
        work.chmod(0o755)  # mkdtemp makes it private; containers read it as another user
        if out.exists():
            shutil.rmtree(out)
        work.rename(out)
    finally:
        if work.exists():
            shutil.rmtree(work)
    print(f"tiny model written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
