"""The shared KV-cache loop: feeds, cache, and exit 6 for an input the artifact cannot take."""

from __future__ import annotations

from typing import Any

import pytest

from rmbuild.errors import EXIT_INCOMPATIBLE, ArtifactInputMismatch
from rmbuild.runtime import kvlayout

PORTS = [
    (("input_ids",), [None, None], "int64"),
    (("attention_mask",), [None, None], "int64"),
    (("position_ids",), [None, None], "int64"),
    (("past_key_values.0.key",), [None, 1, None, 4], "float32"),
    (("past_key_values.0.value",), [None, 1, None, 4], "float32"),
]
OUTPUTS = [("logits",), ("present.0.key",), ("present.0.value",)]


def _loop(layout: kvlayout.KVLayout, pad: int = 0, refuse_at: int | None = None):  # noqa: ANN202
    np = pytest.importorskip("numpy")
    from rmbuild.runtime.kvloop import KVLoop

    class Fake(KVLoop):
        """Appends the fed tokens to the cache, like a graph would; logits = one-hot(next)."""

        calls: list[dict[str, Any]]

        def _run(self, feeds: dict[str, Any]) -> tuple[Any, list[Any]]:
            self.calls.append(feeds)
            if refuse_at is not None and len(self.calls) > refuse_at:
                raise RuntimeError("GENERAL_ERROR: the vendor says no")
            n = feeds["input_ids"].shape[1]
            grow = np.ones((1, 1, n, 4), np.float32)
            presents = [
                np.concatenate([p, grow], axis=2) for p in (feeds[k] for k in self.past_names)
            ]
            return np.eye(8, dtype=np.float32)[int(feeds["input_ids"][0, -1]) + 1], presents

    loop = Fake(layout, pad=pad, what="model.fake")
    loop.calls = []
    return loop, np


def test_feeds_grow_the_cache_and_count_positions() -> None:
    loop, np = _loop(kvlayout.from_ports(PORTS, OUTPUTS))
    assert int(loop.step(np.array([1, 2, 3])).argmax()) == 4
    assert int(loop.step(np.array([4])).argmax()) == 5
    second = loop.calls[1]
    assert second["position_ids"].tolist() == [[3]]
    assert second["attention_mask"].shape == (1, 4)
    assert second["past_key_values.0.key"].shape == (1, 1, 3, 4)
    loop.reset()
    assert loop.length == 0 and loop.past[0].shape == (1, 1, 0, 4)


def test_padding_slot_is_masked_out() -> None:
    loop, np = _loop(kvlayout.from_ports(PORTS, OUTPUTS), pad=1)
    loop.step(np.array([1, 2]))
    feeds = loop.calls[0]
    assert feeds["attention_mask"].tolist() == [[0, 1, 1]]
    assert feeds["past_key_values.0.key"].shape == (1, 1, 1, 4)
    assert feeds["position_ids"].tolist() == [[0, 1]]


def test_wrong_kv_heads_is_exit_6_with_expected_and_given_shapes() -> None:
    # A cache the graph cannot take is refused before the vendor sees it.
    layout = kvlayout.from_ports(PORTS, OUTPUTS)
    loop, np = _loop(layout)
    loop._empty = [np.zeros((1, 4, 0, 4), np.float32)] * 2  # what a config guess would feed
    loop.reset()
    with pytest.raises(ArtifactInputMismatch) as err:
        loop.step(np.array([1]))
    assert err.value.exit_code == EXIT_INCOMPATIBLE
    assert err.value.input == "past_key_values.0.key"
    assert err.value.expected == "[?, 1, ?, 4] float32"
    assert err.value.given == "[1, 4, 0, 4] float32"
    assert "model.fake cannot take input 'past_key_values.0.key'" in err.value.message
    assert loop.calls == []  # refused before the runtime ran


def test_a_bounded_dim_refused_later_names_the_input() -> None:
    # A static-shape graph (mask of 3) takes the prefill and refuses the next step: the
    # vendor's general error becomes exit 6 naming the input, with the vendor's words.
    ports = [*PORTS]
    ports[1] = (("attention_mask",), [1, 3], "int64")
    loop, np = _loop(kvlayout.from_ports(ports, OUTPUTS), refuse_at=1)
    loop.step(np.array([1, 2, 3]))
    with pytest.raises(ArtifactInputMismatch, match="expects \\[1, 3\\] int64") as err:
        loop.step(np.array([4]))
    assert err.value.given == "[1, 4] int64"
    assert any("the vendor says no" in line for line in err.value.context)


def test_other_runtime_failures_pass_through() -> None:
    loop, np = _loop(kvlayout.from_ports(PORTS, OUTPUTS), refuse_at=0)
    with pytest.raises(RuntimeError, match="the vendor says no"):
        loop.step(np.array([1]))


def test_a_step_after_close_is_session_closed_before_any_feed() -> None:
    from rmbuild.errors import EXIT_USAGE, SessionClosed

    loop, np = _loop(kvlayout.from_ports(PORTS, OUTPUTS))
    loop.step(np.array([1]))
    loop.closed = True  # what each runtime's close() sets
    loop.past = []  # and a freed cache must not be reached either
    with pytest.raises(SessionClosed) as err:
        loop.step(np.array([2]))
    assert err.value.exit_code == EXIT_USAGE
    assert err.value.message == "the session of model.fake is closed"
    assert len(loop.calls) == 1
