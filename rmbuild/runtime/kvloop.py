"""The KV-cache decode step every runtime shares (ONNX Runtime, OpenVINO, IREE, TensorRT).

A runtime supplies one inference (:meth:`KVLoop._run`: feeds in, last logits and the present
tensors out); the loop builds the feeds from the graph's :class:`KVLayout`, keeps the cache
between steps and turns an input the artifact cannot take into
:class:`~rmbuild.errors.ArtifactInputMismatch` (exit 6, expected and given shapes), whichever
vendor refused it. Backends import this module; it imports no backend.

The per-step work is kept to what a hand-written loop on a vendor API does anyway (one dict of
feeds, one mask), so a session runs at the vendor API's speed (bench/bench_backends.py).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from rmbuild.errors import ArtifactInputMismatch, SessionClosed
from rmbuild.runtime.kvlayout import KVLayout
from rmbuild.runtime.limits import Bound


class KVLoop:
    """Feeds and keeps the KV cache; a subclass runs one inference in :meth:`_run`.

    ``pad`` cache slots of zeros precede the real ones, masked out by the attention mask (IREE
    on CUDA cannot take a zero-length tensor; see ``rmbuild/backends/iree/runtime.py``).
    """

    # Set by a subclass's close(): a later step raises SessionClosed before building feeds.
    closed = False

    def __init__(self, layout: KVLayout, *, pad: int = 0, what: str = "the artifact") -> None:
        self.layout = layout
        self.pad = int(pad)
        self.what = what
        self.input_names = layout.input_names
        past = layout.past
        self.past_names = [spec.name for spec in past]
        self.present_names = layout.present_names
        self._has_position_ids = layout.spec("position_ids") is not None
        self._empty = [
            np.zeros((1, spec.shape[1], self.pad, spec.shape[3]), dtype=spec.dtype) for spec in past
        ]
        self._mask_pad = np.zeros((1, self.pad), dtype=np.int64)
        self.reset()

    def reset(self) -> None:
        """Forget the KV cache (start a new sequence)."""
        self.past: list[Any] = list(self._empty)
        self.length = 0
        self._checked = False

    def feeds(self, token_ids: np.ndarray) -> dict[str, Any]:
        """The inputs of the next step for ``token_ids`` (int64, shape [n])."""
        n = int(token_ids.shape[0])
        total = self.length + n
        mask = np.ones((1, total), dtype=np.int64)
        if self.pad:
            mask = np.concatenate([self._mask_pad, mask], axis=1)
        feeds: dict[str, Any] = {
            "input_ids": np.ascontiguousarray(token_ids, dtype=np.int64).reshape(1, n),
            "attention_mask": mask,
        }
        if self._has_position_ids:
            feeds["position_ids"] = np.arange(self.length, total, dtype=np.int64).reshape(1, n)
        feeds.update(zip(self.past_names, self.past, strict=True))
        return feeds

    def compiled_limit(self) -> Bound | None:
        """The longest sequence the graph takes, where its shapes fix one: a static
        ``attention_mask`` length (a static-shape NPU IR); None where the length is dynamic.
        Backends that know better (a TensorRT shape profile) override it."""
        spec = self.layout.spec("attention_mask")
        if spec is None or len(spec.shape) != 2 or spec.shape[1] is None:
            return None
        return Bound(
            int(spec.shape[1]) - self.pad,
            f"attention_mask is {spec.describe()} in {self.layout.source}",
            "convert the graph with a longer (or dynamic) sequence dim",
        )

    def step(self, token_ids: np.ndarray) -> np.ndarray:
        """Feed ``token_ids`` after the cached ones; return the last position's logits."""
        if self.closed:
            raise self.closed_error()
        feeds = self.feeds(token_ids)
        if not self._checked:
            # Once per sequence: heads, head dim and dtypes do not change between steps.
            self.check_feeds(feeds)
            self._checked = True
        try:
            logits, presents = self._run(feeds)
        except (ArtifactInputMismatch, SessionClosed):
            raise
        except Exception as exc:
            # A bounded dim (a static-shape NPU IR) can still refuse a later step: say which
            # input, instead of the vendor's "general error".
            self.check_feeds(feeds, cause=exc)
            refusal = self._refusal(exc, feeds)
            if refusal is not None:
                raise refusal from exc
            raise
        self.past = presents
        self.length += int(token_ids.shape[0])
        return logits

    def _run(self, feeds: dict[str, Any]) -> tuple[np.ndarray, list[Any]]:
        """One inference: the last position's logits and the presents in ``past`` order."""
        logits, presents = self._run_batch(feeds)
        return logits[0], presents

    def _run_batch(
        self, feeds: dict[str, Any], all_positions: bool = False
    ) -> tuple[np.ndarray, list[Any]]:
        """One inference over a batch: each row's last-position logits ``[batch, vocab]`` and
        the presents in ``past`` order. A runtime implements this or :meth:`_run`. One that
        sets :attr:`gives_all_positions` returns every fed position's logits ``[batch, tokens,
        vocab]`` when ``all_positions`` is true."""
        raise NotImplementedError

    # True where _run_batch(feeds, all_positions=True) gives every fed position's logits (the
    # graph computes them anyway); the others give the last position's only.
    gives_all_positions = False

    def run_positions(self, feeds: dict[str, Any]) -> tuple[np.ndarray, list[Any]]:
        """One inference on feeds the caller built, with its own cache, batch and mask (the
        loop's cache is not touched): the logits of every fed position ``[batch, tokens,
        vocab]`` where the runtime gives them (:attr:`gives_all_positions`), else the last
        position's as ``[batch, 1, vocab]``; and the presents in ``past`` order. A graph
        without a dynamic batch dimension runs the rows one at a time. An input the graph does
        not take is ArtifactInputMismatch (exit 6), as in :meth:`step`."""
        if self.closed:
            raise self.closed_error()
        rows = int(feeds["input_ids"].shape[0])
        if rows > 1 and not self.batchable:
            parts = [
                self.run_positions({name: value[i : i + 1] for name, value in feeds.items()})
                for i in range(rows)
            ]
            logits = np.concatenate([part[0] for part in parts], axis=0)
            presents = [
                np.concatenate([np.asarray(part[1][j]) for part in parts], axis=0)
                for j in range(len(self.past_names))
            ]
            return logits, presents
        self.check_feeds(feeds)
        try:
            if self.gives_all_positions:
                logits, presents = self._run_batch(feeds, all_positions=True)
            elif type(self)._run_batch is not KVLoop._run_batch:
                logits, presents = self._run_batch(feeds)
                logits = np.asarray(logits)[:, None, :]
            else:
                logits, presents = self._run(feeds)
                logits = np.asarray(logits)[None, None, :]
        except (ArtifactInputMismatch, SessionClosed):
            raise
        except Exception as exc:
            refusal = self._refusal(exc, feeds)
            if refusal is not None:
                raise refusal from exc
            raise
        return np.asarray(logits), list(presents)

    @property
    def batchable(self) -> bool:
        """Whether several sequences can step together: the runtime runs batches and the
        graph's batch dimension is dynamic (a static-shape IR takes one sequence)."""
        if type(self)._run_batch is KVLoop._run_batch:
            return False
        spec = self.layout.spec("input_ids")
        return spec is not None and bool(spec.shape) and spec.shape[0] is None

    def snapshot(self) -> tuple[Any, ...]:
        """This sequence's whole state (cache tensors, length, checked), for :meth:`restore`:
        a server swaps sequences in and out of one loop between steps."""
        return (self.past, self.length, self._checked)

    def restore(self, state: tuple[Any, ...]) -> None:
        """Make ``state`` (from :meth:`snapshot`) the current sequence."""
        self.past, self.length, self._checked = state

    def closed_error(self) -> SessionClosed:
        """What a step after ``close()`` raises, the same on every runtime (a caller holding
        the step, like a server's engine, gets this rather than the freed handle's error)."""
        return SessionClosed(
            f"the session of {self.what} is closed",
            hint="load the artifact again (rmbuild.load)",
        )

    def _refusal(self, exc: Exception, feeds: dict[str, Any]) -> ArtifactInputMismatch | None:
        """The runtime's own "this input does not fit" error as ArtifactInputMismatch, for
        layouts that were guessed (old artifacts); None for any other failure."""
        return None

    def mismatch(
        self, name: str, expected: str, given: str, context: list[str] | None = None
    ) -> ArtifactInputMismatch:
        """The error for input ``name`` of this artifact, with what it expects and was given."""
        return ArtifactInputMismatch(
            f"{self.what} cannot take input {name!r}: it expects {expected}, rmbuild gave {given}",
            input=name,
            expected=expected,
            given=given,
            context=[f"layout read from: {self.layout.source}", *(context or [])],
            hint="rebuild the artifact with `rmbuild compile` so that its KV layout is "
            "recorded from the graph (kv_layout.json)",
        )

    def check_feeds(self, feeds: dict[str, Any], cause: BaseException | None = None) -> None:
        """Raise ArtifactInputMismatch for the first input the graph does not declare as given."""
        for name in self.input_names:
            spec = self.layout.spec(name)
            value = feeds.get(name)
            if spec is None or value is None:
                continue
            shape = tuple(int(d) for d in value.shape)
            dtype = str(value.dtype)
            fits = (
                len(shape) == len(spec.shape)
                and all(
                    want is None or want == got
                    for want, got in zip(spec.shape, shape, strict=False)
                )
                and dtype == spec.dtype
            )
            if not fits:
                context = []
                if cause is not None:
                    context.append(f"the runtime said: {str(cause).strip()[:400]}")
                given = f"[{', '.join(map(str, shape))}] {dtype}"
                raise self.mismatch(name, spec.describe(), given, context) from cause
