"""Several sequences decoding together in one forward pass (continuous batching).

Each sequence arrives with its own KV cache (from its prefill, which runs alone) and joins the
batch between steps; it leaves the same way. Caches of different lengths share one tensor by
left padding: the padded slots are masked out by the attention mask, and each row's
``position_ids`` are its own, so every row computes what it would alone. The batch keeps its
tensors between steps while its rows do not change; a row joining or leaving re-packs them
once. The runtime must take a dynamic batch dimension (:attr:`KVLoop.batchable`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from rmbuild.runtime.kvloop import KVLoop


class Row:
    """One sequence in the batch: its real length and where its data starts in the tensors."""

    def __init__(self, length: int, start: int) -> None:
        self.length = length  # real tokens (positions) so far
        self.start = start  # first unpadded slot on the cache's sequence axis
        self.owner: Any = None  # what the caller runs in this row (a served request)


class Batch:
    """The running batch over ``loop``'s runtime."""

    def __init__(self, loop: KVLoop) -> None:
        if not loop.batchable:
            raise ValueError(f"{loop.what} does not take a batch dimension")
        self.loop = loop
        self.rows: list[Row] = []
        self.past: list[np.ndarray] = []  # per cache tensor: [batch, heads, slots, head_dim]

    @property
    def slots(self) -> int:
        return int(self.past[0].shape[2]) if self.past else 0

    def add(self, state: tuple[Any, ...]) -> Row:
        """Join a sequence from its :meth:`KVLoop.snapshot` (after its prefill)."""
        past, length = [np.asarray(p) for p in state[0]], int(state[1])
        own = int(past[0].shape[2])
        # The loop's own leading pad slots (masked) stay part of the row's padding.
        start = own - length
        if not self.rows:
            self.past = past
            row = Row(length, start)
            self.rows.append(row)
            return row
        grow = own - self.slots
        if grow > 0:  # the newcomer is longer: pad every row already here
            self.past = [_left_pad(p, grow) for p in self.past]
            for r in self.rows:
                r.start += grow
        elif grow < 0:
            past = [_left_pad(p, -grow) for p in past]
            start += -grow
        self.past = [np.concatenate([a, b], axis=0) for a, b in zip(self.past, past, strict=True)]
        row = Row(length, start)
        self.rows.append(row)
        return row

    def remove(self, row: Row) -> None:
        """Leave the batch; padding no remaining row needs is dropped."""
        i = next(i for i, r in enumerate(self.rows) if r is row)
        del self.rows[i]
        if not self.rows:
            self.past = []
            return
        self.past = [np.delete(p, i, axis=0) for p in self.past]
        trim = min(r.start for r in self.rows) - self.loop.pad
        if trim > 0:
            self.past = [np.ascontiguousarray(p[:, :, trim:, :]) for p in self.past]
            for r in self.rows:
                r.start -= trim

    def state(self, row: Row) -> tuple[Any, ...]:
        """``row``'s cache as a single sequence's :meth:`KVLoop.snapshot` (to run it alone)."""
        i = next(i for i, r in enumerate(self.rows) if r is row)
        keep = row.start - self.loop.pad
        past = [np.ascontiguousarray(p[i : i + 1, :, keep:, :]) for p in self.past]
        return (past, row.length, True)

    def prefill(self, prompts: list[list[int]]) -> tuple[np.ndarray, list[tuple[Any, ...]]]:
        """Several prompts' prefills in one forward pass: each one's last-position logits
        ``[rows, vocab]`` and its cache as a :meth:`KVLoop.snapshot` (to :meth:`add`, or to run
        alone). Prompts of different lengths are left-padded to the longest, the padding
        masked out and each row's positions its own, so every row computes what it would
        alone. The batch's rows and the loop's own sequence are not touched."""
        loop = self.loop
        rows, longest = len(prompts), max(len(p) for p in prompts)
        if not loop._has_position_ids and any(len(p) != longest for p in prompts):
            # Without position ids the graph counts positions from the first slot, padding
            # included: only prompts of one length can share a pass.
            raise ValueError(f"{loop.what} takes no position_ids: prompts must be one length")
        ids = np.zeros((rows, longest), dtype=np.int64)
        mask = np.zeros((rows, loop.pad + longest), dtype=np.int64)
        positions = np.zeros((rows, longest), dtype=np.int64)
        for i, prompt in enumerate(prompts):
            lead = longest - len(prompt)
            ids[i, lead:] = prompt
            mask[i, loop.pad + lead :] = 1
            positions[i, lead:] = np.arange(len(prompt))
        feeds: dict[str, Any] = {"input_ids": ids, "attention_mask": mask}
        if loop._has_position_ids:
            feeds["position_ids"] = positions
        feeds.update(
            (name, np.repeat(empty, rows, axis=0))
            for name, empty in zip(loop.past_names, loop._empty, strict=True)
        )
        logits, presents = loop.run_positions(feeds)
        states = []
        for i, prompt in enumerate(prompts):
            # The row alone: the loop's pad slots, then its own tokens (the padding dropped).
            # The pad slots hold zeros, as after a prefill alone.
            past = []
            for tensor in presents:
                own = np.array(np.asarray(tensor)[i : i + 1, :, longest - len(prompt) :, :])
                own[:, :, : loop.pad] = 0
                past.append(own)
            states.append((past, len(prompt), True))
        return np.asarray(logits)[:, -1], states

    def step(self, tokens: list[int]) -> np.ndarray:
        """Feed one token per row (in row order); each row's next-token logits ``[rows, vocab]``."""
        n = len(self.rows)
        slots = self.slots
        mask = np.zeros((n, slots + 1), dtype=np.int64)
        for i, r in enumerate(self.rows):
            mask[i, r.start :] = 1
        feeds: dict[str, Any] = {
            "input_ids": np.asarray(tokens, dtype=np.int64).reshape(n, 1),
            "attention_mask": mask,
        }
        if self.loop._has_position_ids:
            feeds["position_ids"] = np.asarray(
                [r.length for r in self.rows], dtype=np.int64
            ).reshape(n, 1)
        feeds.update(zip(self.loop.past_names, self.past, strict=True))
        if self.loop.closed:
            raise self.loop.closed_error()
        logits, presents = self.loop._run_batch(feeds)
        self.past = [np.asarray(p) for p in presents]
        for r in self.rows:
            r.length += 1
        return np.asarray(logits)


def _left_pad(tensor: np.ndarray, n: int) -> np.ndarray:
    pad = np.zeros((*tensor.shape[:2], n, tensor.shape[3]), dtype=tensor.dtype)
    return np.concatenate([pad, tensor], axis=2)
