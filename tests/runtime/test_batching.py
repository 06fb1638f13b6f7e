"""Continuous batching over a fake graph that is sensitive to every input the batch builds:
each row must get what it would get alone, whatever joins or leaves around it."""

from __future__ import annotations

from typing import Any

import pytest

np = pytest.importorskip("numpy")

from rmbuild.runtime.batching import Batch  # noqa: E402
from rmbuild.runtime.kvlayout import from_ports  # noqa: E402
from rmbuild.runtime.kvloop import KVLoop  # noqa: E402

VOCAB = 997


def _layout(batch: int | None = None) -> Any:
    ports = [
        (("input_ids",), [batch, None], "int64"),
        (("attention_mask",), [batch, None], "int64"),
        (("position_ids",), [batch, None], "int64"),
        (("past_key_values.0.key",), [batch, 1, None, 1], "float32"),
        (("past_key_values.0.value",), [batch, 1, None, 1], "float32"),
    ]
    outputs = [("logits",), ("present.0.key",), ("present.0.value",)]
    return from_ports(ports, outputs, source="the fake graph")


class FakeGraph(KVLoop):
    """A "model" whose cache holds the tokens seen; the next token mixes the attended tokens,
    how many there are and the position: attending a pad slot or a wrong position shows."""

    def __init__(self, batch: int | None = None, pad: int = 0) -> None:
        super().__init__(_layout(batch), pad=pad, what="the fake graph")

    def _run_batch(self, feeds: dict[str, Any]) -> tuple[Any, list[Any]]:
        ids = feeds["input_ids"].astype(np.float32)  # [B, n]
        mask = feeds["attention_mask"]  # [B, past + n]
        pos = feeds["position_ids"]  # [B, n]
        past = feeds["past_key_values.0.key"]  # [B, 1, past, 1]
        b, n = ids.shape
        present = np.concatenate([past, ids.reshape(b, 1, n, 1)], axis=2)
        values = present[:, 0, :, 0]  # [B, past + n]
        attended = (values * mask).sum(axis=1) + 7 * mask.sum(axis=1) + 13 * pos[:, -1]
        logits = np.zeros((b, VOCAB), dtype=np.float32)
        logits[np.arange(b), attended.astype(np.int64) % VOCAB] = 1.0
        return logits, [present, present.copy()]


def _alone(prompt: list[int], steps: int, pad: int = 0) -> list[int]:
    loop = FakeGraph(pad=pad)
    logits = loop.step(np.asarray(prompt, dtype=np.int64))
    out = []
    for _ in range(steps):
        token = int(np.argmax(logits))
        out.append(token)
        logits = loop.step(np.asarray([token], dtype=np.int64))
    return out


@pytest.mark.parametrize("pad", [0, 1])
def test_rows_joining_and_leaving_get_what_they_would_alone(pad: int) -> None:
    prompts = {"a": [5, 9, 2], "b": [400], "c": [1, 2, 3, 4, 5, 6, 7], "d": [33, 44]}
    joins = {"a": 0, "b": 0, "c": 2, "d": 5}  # the step each one joins at
    lengths = {"a": 4, "b": 9, "c": 6, "d": 3}  # how many tokens each one generates
    expected = {k: _alone(p, lengths[k], pad) for k, p in prompts.items()}

    loop = FakeGraph(pad=pad)
    batch = Batch(loop)
    rows: dict[str, Any] = {}
    last: dict[str, int] = {}
    out: dict[str, list[int]] = {k: [] for k in prompts}
    for t in range(20):
        for k, at in joins.items():
            if at == t:  # prefill alone, first token from it, then join the batch
                loop.reset()
                token = int(np.argmax(loop.step(np.asarray(prompts[k], dtype=np.int64))))
                out[k].append(token)
                last[k] = token
                rows[k] = batch.add(loop.snapshot())
        members = [k for row in batch.rows for k, r in rows.items() if r is row]
        if members:
            logits = batch.step([last[k] for k in members])
            for i, k in enumerate(members):
                if len(out[k]) >= lengths[k]:
                    continue
                token = int(np.argmax(logits[i]))
                out[k].append(token)
                last[k] = token
        for k in list(rows):
            if len(out[k]) >= lengths[k]:
                batch.remove(rows.pop(k))
    assert out == expected
    assert batch.rows == [] and batch.past == []


def test_a_row_taken_out_continues_alone() -> None:
    loop = FakeGraph()
    batch = Batch(loop)
    loop.reset()
    first = int(np.argmax(loop.step(np.asarray([3, 4], dtype=np.int64))))
    short = batch.add(loop.snapshot())
    loop.reset()
    other_first = int(np.argmax(loop.step(np.asarray([8, 8, 8, 8, 8], dtype=np.int64))))
    batch.add(loop.snapshot())
    second = int(np.argmax(batch.step([first, other_first])[0]))
    loop.restore(batch.state(short))
    third = int(np.argmax(loop.step(np.asarray([second], dtype=np.int64))))
    assert [first, second, third] == _alone([3, 4], 3)


def test_a_static_batch_dimension_is_not_batchable() -> None:
    assert FakeGraph().batchable
    assert not FakeGraph(batch=1).batchable
    with pytest.raises(ValueError, match="batch"):
        Batch(FakeGraph(batch=1))


@pytest.mark.parametrize("pad", [0, 1])
def test_prompts_prefilled_together_get_what_they_would_alone(pad: int) -> None:
    prompts = [[5, 9, 2], [400], [1, 2, 3, 4, 5, 6, 7], [33, 44]]
    expected = [_alone(p, 6, pad) for p in prompts]
    loop = FakeGraph(pad=pad)
    batch = Batch(loop)
    logits, states = batch.prefill(prompts)
    assert logits.shape == (len(prompts), VOCAB)
    out = [[int(np.argmax(row))] for row in logits]
    # Each state is a sequence's own, as after a prefill alone: it runs alone too.
    loop.restore(states[2])
    alone = int(np.argmax(loop.step(np.asarray([out[2][0]], dtype=np.int64))))
    assert alone == expected[2][1]
    for state in states:
        batch.add(state)
    for _ in range(5):
        step = batch.step([o[-1] for o in out])
        for i, o in enumerate(out):
            o.append(int(np.argmax(step[i])))
    assert out == expected


def test_prompts_of_several_lengths_need_position_ids_to_share_a_prefill() -> None:
    loop = FakeGraph()
    loop._has_position_ids = False
    with pytest.raises(ValueError, match="position_ids"):
        Batch(loop).prefill([[1, 2], [3]])
