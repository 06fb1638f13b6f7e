#!/usr/bin/env python3
"""Build the tiny example language models used by rmbuild's examples and tests.

The script trains, from scratch and deterministically:

* a byte-level BPE tokenizer (``tokenizers``) on ``corpus.txt`` next to this file,
  whose ``tokenizer.json`` itself prepends ``<s>`` (BOS) through a
  ``TemplateProcessing`` post-processor, so a runtime that only uses
  ``tokenizers.Tokenizer.from_file("tokenizer.json").encode(prompt).ids`` gets
  exactly the ids used in training and generation;
* a small ``LlamaForCausalLM`` (default) or ``GPT2LMHeadModel`` trained for a few
  hundred AdamW steps until greedy decoding of "The future of AI is" yields
  readable English.

Everything is saved with ``save_pretrained`` (safetensors, fp32).

Usage::

    python make_model.py                      # llama -> examples/tiny-llama/model
    python make_model.py --arch gpt2 --steps 150 --out /tmp/tiny-gpt2

Tests can import :func:`make_model` to build other tiny models the same way.
"""

from __future__ import annotations

import argparse
import math
import os
import random
import time
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import (
    GenerationConfig,
    GPT2Config,
    GPT2LMHeadModel,
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedModel,
    PreTrainedTokenizerFast,
)

HERE = Path(__file__).resolve().parent
CORPUS = HERE / "corpus.txt"
DEFAULT_OUT = HERE / "model"
PROMPT = "The future of AI is"

VOCAB_SIZE = 1000
MAX_POSITIONS = 256
LLAMA3_PLAIN_ROPE = {
    "rope_type": "llama3",
    "factor": 1.0,
    "low_freq_factor": 1.0,
    "high_freq_factor": 4.0,
    "original_max_position_embeddings": MAX_POSITIONS,
}
# Special tokens; their order fixes their ids (pad=0, bos=1, eos=2, unk=3).
PAD, BOS, EOS, UNK = "<pad>", "<s>", "</s>", "<unk>"
SPECIAL_TOKENS = [PAD, BOS, EOS, UNK]

ARCHS = ("llama", "gpt2")
DEFAULT_STEPS = {"llama": 400, "gpt2": 200}
SEQ_LEN = 64
BATCH_SIZE = 16
LR = 3e-3
WARMUP_STEPS = 20


def seed_everything(seed: int) -> None:
    """Make tokenizer and model training bit-reproducible on CPU.

    Float reductions depend on the thread count, so we pin one thread (the
    models are tiny, so this costs little) and keep the BPE trainer sequential.
    """
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    random.seed(seed)
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)


def corpus_lines(corpus: Path = CORPUS) -> list[str]:
    """Return the non-empty lines of the corpus; each line is one training document."""
    text = corpus.read_text(encoding="utf-8")
    return [line.strip() for line in text.splitlines() if line.strip()]


def train_tokenizer(lines: list[str], vocab_size: int = VOCAB_SIZE) -> Tokenizer:
    """Train a GPT-2 style byte-level BPE tokenizer that prepends BOS on encode."""
    tok = Tokenizer(models.BPE(unk_token=UNK))
    # No prefix space: the prompt is encoded exactly as typed, like GPT-2/Llama-3.
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        # Seed all 256 byte symbols so any input text is encodable (no <unk> in practice).
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(lines, trainer=trainer)
    bos_id = tok.token_to_id(BOS)
    # Put BOS insertion into tokenizer.json itself so runtimes using the bare
    # `tokenizers` library reproduce the training/generation ids exactly.
    tok.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A",
        pair=f"{BOS} $A {BOS} $B",
        special_tokens=[(BOS, bos_id)],
    )
    return tok


def wrap_tokenizer(tok: Tokenizer) -> PreTrainedTokenizerFast:
    """Wrap the raw tokenizer for transformers (save_pretrained, generate)."""
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=BOS,
        eos_token=EOS,
        pad_token=PAD,
        unk_token=UNK,
        model_max_length=MAX_POSITIONS,
        # Decoder-only models take no token_type_ids; generate() rejects them.
        model_input_names=["input_ids", "attention_mask"],
        clean_up_tokenization_spaces=False,
    )


def build_model(arch: str, tok: Tokenizer) -> PreTrainedModel:
    """Instantiate a randomly initialised tiny causal LM of the given architecture."""
    ids = {
        "vocab_size": tok.get_vocab_size(),
        "bos_token_id": tok.token_to_id(BOS),
        "eos_token_id": tok.token_to_id(EOS),
        "pad_token_id": tok.token_to_id(PAD),
    }
    if arch == "llama":
        config = LlamaConfig(
            hidden_size=128,
            intermediate_size=256,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,  # GQA, so runtimes exercise kv-head broadcasting
            max_position_embeddings=MAX_POSITIONS,
            rope_theta=10000.0,
            # FuriosaAI's llama 3.1 kernels take rope_scaling only as a dict. llama3
            # scaling with factor 1.0 leaves every frequency as it is: plain RoPE.
            rope_scaling=LLAMA3_PLAIN_ROPE,
            tie_word_embeddings=True,  # halves the file size at this vocab/hidden ratio
            dtype="float32",
            **ids,
        )
        return LlamaForCausalLM(config)
    if arch == "gpt2":
        config = GPT2Config(
            n_embd=128,
            n_inner=256,
            n_layer=2,
            n_head=4,
            n_positions=MAX_POSITIONS,
            # Dropout off: the corpus is tiny and we want to memorise it quickly.
            resid_pdrop=0.0,
            embd_pdrop=0.0,
            attn_pdrop=0.0,
            tie_word_embeddings=True,
            dtype="float32",
            **ids,
        )
        return GPT2LMHeadModel(config)
    raise ValueError(f"unknown arch {arch!r}; expected one of {ARCHS}")


def token_stream(tok: Tokenizer, lines: list[str]) -> tuple[torch.Tensor, list[int]]:
    """Encode documents as ``<s> text </s>`` back to back.

    Returns the flat id stream and the offsets of each document's BOS, so that
    training windows can start at position 0 with BOS, exactly like a prompt at
    inference time (this matters for GPT-2's absolute position embeddings).
    """
    eos_id = tok.token_to_id(EOS)
    stream: list[int] = []
    starts: list[int] = []
    for enc in tok.encode_batch(lines):  # post-processor adds the leading <s>
        starts.append(len(stream))
        stream.extend(enc.ids + [eos_id])
    # Wrap around once so every window starting at any BOS is full length.
    stream = stream + stream[: SEQ_LEN + 1]
    return torch.tensor(stream, dtype=torch.long), starts


def train(
    model: PreTrainedModel, stream: torch.Tensor, starts: list[int], steps: int, seed: int
) -> float:
    """Train with AdamW on random BOS-aligned windows; return the final loss."""
    gen = torch.Generator().manual_seed(seed)
    starts_t = torch.tensor(starts)
    offsets = torch.arange(SEQ_LEN + 1)
    opt = torch.optim.AdamW(model.parameters(), lr=LR, weight_decay=0.01, betas=(0.9, 0.95))

    # Linear warmup then cosine decay: a short high-LR phase memorises fast, the
    # decay settles the weights so greedy decoding is stable.
    def lr_factor(step: int) -> float:
        warmup = min(1.0, (step + 1) / WARMUP_STEPS)
        return warmup * 0.5 * (1.0 + math.cos(math.pi * step / max(1, steps)))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_factor)
    model.train()
    loss = torch.tensor(float("nan"))
    for _ in range(steps):
        pick = starts_t[torch.randint(len(starts), (BATCH_SIZE,), generator=gen)]
        batch = stream[pick[:, None] + offsets]
        loss = model(input_ids=batch, labels=batch).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
    model.eval()
    return loss.item()


def greedy(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerFast,
    prompt: str = PROMPT,
    new_tokens: int = 32,
) -> str:
    """Return the greedy continuation of ``prompt`` (new tokens only)."""
    inputs = tokenizer(prompt, return_tensors="pt", return_token_type_ids=False)
    with torch.no_grad():
        out = model.generate(**inputs, max_new_tokens=new_tokens, do_sample=False)
    return tokenizer.decode(out[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True)


def make_model(out_dir: Path, arch: str = "llama", steps: int | None = None, seed: int = 0) -> Path:
    """Train a tiny ``arch`` model plus tokenizer on the corpus and save it to ``out_dir``.

    ``steps`` defaults to :data:`DEFAULT_STEPS` for the arch; tests may pass fewer
    for speed (the output is then less fluent but the artefacts are identical in
    shape and format). Returns ``out_dir``.
    """
    if arch not in ARCHS:
        raise ValueError(f"unknown arch {arch!r}; expected one of {ARCHS}")
    steps = DEFAULT_STEPS[arch] if steps is None else steps
    out_dir = Path(out_dir)
    seed_everything(seed)

    lines = corpus_lines()
    tok = train_tokenizer(lines)
    model = build_model(arch, tok)
    stream, starts = token_stream(tok, lines)
    train(model, stream, starts, steps, seed)

    tokenizer = wrap_tokenizer(tok)
    model.generation_config = GenerationConfig(
        bos_token_id=model.config.bos_token_id,
        eos_token_id=model.config.eos_token_id,
        pad_token_id=model.config.pad_token_id,
        do_sample=False,
        max_new_tokens=32,
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir, safe_serialization=True)
    tokenizer.save_pretrained(out_dir)
    if arch == "llama":
        _drop_head_dim(out_dir / "config.json")
    return out_dir


def _drop_head_dim(config_path: Path) -> None:
    # The RNGD build copies config.json over the llama 3.1 reference config, whose kernels
    # reject an explicit head_dim key; hidden_size / num_attention_heads gives the
    # same value to every other reader.
    import json

    config = json.loads(config_path.read_text())
    config.pop("head_dim", None)
    config_path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")


def main(argv: list[str] | None = None) -> None:
    """CLI entry point: build a model and print its greedy continuation of the prompt."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", choices=ARCHS, default="llama")
    parser.add_argument("--steps", type=int, default=None, help="training steps (per-arch default)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--out", type=Path, default=None, help=f"output dir (llama default: {DEFAULT_OUT})"
    )
    args = parser.parse_args(argv)
    out = args.out or (DEFAULT_OUT if args.arch == "llama" else HERE / f"model-{args.arch}")

    t0 = time.perf_counter()
    make_model(out, arch=args.arch, steps=args.steps, seed=args.seed)
    elapsed = time.perf_counter() - t0

    # Reload from disk so the printed text is what consumers of the folder get.
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(out)
    tokenizer = AutoTokenizer.from_pretrained(out)
    print(f"saved {args.arch} model to {out} in {elapsed:.1f}s")
    print(f"{PROMPT!r} -> {greedy(model, tokenizer)!r}")


if __name__ == "__main__":
    main()
