"""BackendSession: what ``run`` and the Python API hold, and the shared generation loop.

Backends differ in how they run one forward step; greedy/sampled decoding with a KV cache,
tokenization and streaming are the same for all of them, so they live here once. A backend
implements :class:`DecoderStep` (prefill/decode over numpy arrays) and gets ``generate`` and
``stream`` for free.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from rmbuild.runtime.sampling import SamplingParams, sample
from rmbuild.runtime.tokenizer import StreamDecoder, Tokenizer


class DecoderStep(Protocol):
    """One forward pass of a causal LM with a KV cache held by the implementation."""

    def reset(self) -> None:
        """Forget the KV cache (start a new sequence)."""

    def step(self, token_ids: np.ndarray) -> np.ndarray:
        """Feed ``token_ids`` (int64, shape [n]) after the cached ones; return the last logits."""


@dataclass
class GenerationStats:
    prompt_tokens: int = 0
    new_tokens: int = 0
    prefill_s: float = 0.0
    decode_s: float = 0.0
    stopped: str = ""

    @property
    def tokens_per_s(self) -> float:
        return self.new_tokens / self.decode_s if self.decode_s > 0 else 0.0


@dataclass
class BackendSession:
    """A loaded artifact that generates text. Use as a context manager or call ``close()``."""

    step_fn: DecoderStep
    tokenizer: Tokenizer
    eos_token_ids: set[int] = field(default_factory=set)
    info: dict[str, Any] = field(default_factory=dict)
    last_stats: GenerationStats = field(default_factory=GenerationStats)
    # Called on close() after the backend's step (e.g. the store `rmbuild.load` opened).
    closers: list[Any] = field(default_factory=list)

    def generate_ids(
        self, prompt_ids: list[int], max_tokens: int, params: SamplingParams | None = None
    ) -> Iterator[int]:
        """Yield new token ids one by one (prefill once, then one token per step)."""
        params = params or SamplingParams()
        rng = np.random.default_rng(params.seed)
        stats = self.last_stats = GenerationStats(prompt_tokens=len(prompt_ids))
        self.step_fn.reset()
        if max_tokens <= 0:
            stats.stopped = "max_tokens"
            return
        t0 = time.perf_counter()
        logits = self.step_fn.step(np.asarray(prompt_ids, dtype=np.int64))
        stats.prefill_s = time.perf_counter() - t0
        t1 = time.perf_counter()
        for i in range(max_tokens):
            token = sample(logits, params, rng)
            if token in self.eos_token_ids:
                stats.stopped = "eos"
                break
            stats.new_tokens += 1
            stats.decode_s = time.perf_counter() - t1
            yield token
            if i + 1 < max_tokens:
                logits = self.step_fn.step(np.asarray([token], dtype=np.int64))
        else:
            stats.stopped = "max_tokens"
        stats.decode_s = time.perf_counter() - t1

    def stream(
        self, prompt: str, max_tokens: int = 32, params: SamplingParams | None = None
    ) -> Iterator[str]:
        """Yield text pieces as they are decoded."""
        decoder = StreamDecoder(self.tokenizer)
        for token in self.generate_ids(self.tokenizer.encode(prompt), max_tokens, params):
            piece = decoder.push(token)
            if piece:
                yield piece
        if tail := decoder.flush():
            yield tail

    def generate(
        self,
        prompt: str,
        max_tokens: int = 32,
        *,
        temperature: float = 0.0,
        top_p: float = 1.0,
        seed: int | None = None,
    ) -> str:
        """Generate up to ``max_tokens`` tokens after ``prompt`` and return the new text."""
        params = SamplingParams(temperature=temperature, top_p=top_p, seed=seed)
        return "".join(self.stream(prompt, max_tokens, params))

    def close(self) -> None:
        close = getattr(self.step_fn, "close", None)
        if close is not None:
            close()
        while self.closers:
            self.closers.pop()()

    def __enter__(self) -> BackendSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_json(path: Path) -> dict[str, Any]:
    """A JSON file of the artifact (config.json, io.json...), or {} when it is absent."""
    import json

    return json.loads(path.read_text()) if path.is_file() else {}


def eos_ids(artifact_dir: Path) -> set[int]:
    """EOS token ids from generation_config.json / config.json of an HF-style artifact."""
    ids: set[int] = set()
    for name in ("generation_config.json", "config.json"):
        value = read_json(artifact_dir / name).get("eos_token_id")
        if isinstance(value, int):
            ids.add(value)
        elif isinstance(value, list):
            ids.update(v for v in value if isinstance(v, int))
    return ids
