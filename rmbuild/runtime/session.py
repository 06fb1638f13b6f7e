"""BackendSession: what ``run`` and the Python API hold, and the shared generation loop.

Backends differ in how they run one forward step; greedy/sampled decoding with a KV cache,
tokenization and streaming are the same for all of them, so they live here once. A backend
implements :class:`DecoderStep` (prefill/decode over numpy arrays) and gets ``generate`` and
``stream`` for free.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from rmbuild.errors import InvalidPrompt, SessionClosed
from rmbuild.runtime.limits import ContextLimit, check_fits
from rmbuild.runtime.sampling import SamplingParams, sample, sampling_params
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
    """A loaded artifact that generates text. Use as a context manager or call ``close()``.

    ``generate``, ``stream`` and ``generate_ids`` take the same arguments: a
    :class:`SamplingParams` (``params``) and/or the keywords ``temperature``, ``top_p``,
    ``seed`` (and, for text, ``stop``), a keyword replacing the field of ``params``. Every
    request is checked before the backend runs: a session closed (SessionClosed, exit 2), a
    prompt that encodes to no tokens where the model has no BOS token (InvalidPrompt, exit 2),
    a prompt plus ``max_tokens`` past :attr:`max_model_len` (ContextTooLong, exit 6).
    """

    step_fn: DecoderStep
    tokenizer: Tokenizer
    eos_token_ids: set[int] = field(default_factory=set)
    info: dict[str, Any] = field(default_factory=dict)
    last_stats: GenerationStats = field(default_factory=GenerationStats)
    # Called on close() after the backend's step (e.g. the store `rmbuild.load` opened).
    closers: list[Any] = field(default_factory=list)
    # Where an empty prompt starts (HF generate does the same); None: it is refused.
    bos_token_id: int | None = None
    # The context limit; None (a session made by hand) checks no length.
    context_limit: ContextLimit | None = None
    closed: bool = field(default=False, init=False)

    @property
    def max_model_len(self) -> int | None:
        """The most tokens, prompt and generated together, a request may take (None: no
        limit is known): the model's declared maximum or the artifact's compiled one,
        whichever is smaller, or an explicit ``max_model_len`` given to ``load``."""
        return self.context_limit.value if self.context_limit is not None else None

    def admit(
        self, prompt_ids: Sequence[int], max_tokens: int, params: SamplingParams
    ) -> list[int]:
        """The ids generation starts from, once the request passed every up-front check."""
        self._check_open()
        if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 0:
            raise ValueError(f"max_tokens must be an int >= 0, not {max_tokens!r}")
        ids = [int(i) for i in prompt_ids]
        if not ids:
            if self.bos_token_id is None:
                raise InvalidPrompt(
                    "the prompt encodes to no tokens, and the model declares no BOS token "
                    "(bos_token_id) to start from",
                    hint="give a prompt of at least one token",
                )
            ids = [self.bos_token_id]
        if self.context_limit is not None:
            check_fits(self.context_limit, len(ids), max_tokens)
        return ids

    def generate_ids(
        self,
        prompt_ids: Sequence[int],
        max_tokens: int = 32,
        params: SamplingParams | None = None,
        *,
        temperature: float | None = None,
        top_p: float | None = None,
        seed: int | None = None,
    ) -> Iterator[int]:
        """Yield new token ids one by one (prefill once, then one token per step).

        The checks run when this is called, before the first id is asked for.
        """
        params = sampling_params(params, temperature=temperature, top_p=top_p, seed=seed)
        ids = self.admit(prompt_ids, max_tokens, params)
        return self._decode(ids, max_tokens, params)

    def _decode(
        self, prompt_ids: list[int], max_tokens: int, params: SamplingParams
    ) -> Iterator[int]:
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
                # A generator kept across close() must not reach a freed runtime.
                self._check_open()
                logits = self.step_fn.step(np.asarray([token], dtype=np.int64))
        else:
            stats.stopped = "max_tokens"
        stats.decode_s = time.perf_counter() - t1

    def stream(
        self,
        prompt: str,
        max_tokens: int = 32,
        params: SamplingParams | None = None,
        *,
        temperature: float | None = None,
        top_p: float | None = None,
        seed: int | None = None,
        stop: str | Sequence[str] | None = None,
    ) -> Iterator[str]:
        """Yield text pieces as they are decoded (the prompt itself is not repeated).

        The checks run when this is called, before the first piece is asked for.
        """
        params = sampling_params(params, temperature=temperature, top_p=top_p, seed=seed, stop=stop)
        self._check_open()
        tokens = self.generate_ids(self.tokenizer.encode(prompt), max_tokens, params)
        return self._pieces(tokens, params.stop)

    def _pieces(self, tokens: Iterator[int], stop: tuple[str, ...]) -> Iterator[str]:
        decoder = StreamDecoder(self.tokenizer)
        text, emitted = "", 0
        for token in tokens:
            text += decoder.push(token)
            if not stop:
                if len(text) > emitted:
                    yield text[emitted:]
                    emitted = len(text)
                continue
            # A stop string can only start in the part not yet yielded: what was yielded
            # ended before the longest tail that could still begin one.
            cut = _first_stop(text, stop, emitted)
            if cut is not None:
                if cut > emitted:
                    yield text[emitted:cut]
                tokens.close()  # type: ignore[attr-defined]
                self.last_stats.stopped = "stop"
                return
            safe = len(text) - _held_back(text, stop)
            if safe > emitted:
                yield text[emitted:safe]
                emitted = safe
        text += decoder.flush()
        if stop and (cut := _first_stop(text, stop, emitted)) is not None:
            text = text[:cut]
            self.last_stats.stopped = "stop"
        if len(text) > emitted:
            yield text[emitted:]

    def generate(
        self,
        prompt: str,
        max_tokens: int = 32,
        params: SamplingParams | None = None,
        *,
        temperature: float | None = None,
        top_p: float | None = None,
        seed: int | None = None,
        stop: str | Sequence[str] | None = None,
    ) -> str:
        """Generate up to ``max_tokens`` tokens after ``prompt`` and return the new text.

        ``params`` and the keywords are those of :meth:`stream`; greedy by default.
        """
        return "".join(
            self.stream(
                prompt,
                max_tokens,
                params,
                temperature=temperature,
                top_p=top_p,
                seed=seed,
                stop=stop,
            )
        )

    def _check_open(self) -> None:
        if self.closed:
            artifact = self.info.get("artifact")
            what = f" of artifact {str(artifact)[:12]}" if artifact else ""
            raise SessionClosed(
                f"the session{what} is closed",
                hint="load the artifact again (rmbuild.load), or use the session inside its "
                "`with` block",
            )

    def close(self) -> None:
        """Free the backend's runtime and what ``load`` opened for the session. Idempotent;
        any later use raises SessionClosed."""
        if self.closed:
            return
        self.closed = True
        close = getattr(self.step_fn, "close", None)
        if close is not None:
            close()
        while self.closers:
            self.closers.pop()()

    def __enter__(self) -> BackendSession:
        self._check_open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _first_stop(text: str, stop: tuple[str, ...], start: int) -> int | None:
    """Where the first stop string in ``text[start:]`` begins, or None."""
    found = [i for i in (text.find(s, start) for s in stop) if i >= 0]
    return min(found) if found else None


def _held_back(text: str, stop: tuple[str, ...]) -> int:
    """The length of the longest tail of ``text`` that a stop string begins with."""
    longest = 0
    for s in stop:
        for n in range(min(len(s) - 1, len(text)), longest, -1):
            if text.endswith(s[:n]):
                longest = n
                break
    return longest


def read_json(path: Path) -> dict[str, Any]:
    """A JSON file of the artifact (config.json, io.json...), or {} when it is absent."""
    import json

    return json.loads(path.read_text()) if path.is_file() else {}


def bos_id(artifact_dir: Path) -> int | None:
    """The BOS token id from generation_config.json / config.json, or None where neither
    declares one (HF generate starts an empty prompt from it too)."""
    for name in ("generation_config.json", "config.json"):
        value = read_json(artifact_dir / name).get("bos_token_id")
        if isinstance(value, list):
            value = value[0] if value else None
        if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
            return value
    return None


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
