"""Stop strings split over tokens, held-back text, and what is sent once generation ends."""

from __future__ import annotations

import pytest

from rmbuild.serve.textstream import TextStream


class CharTokenizer:
    """One token per character: id = code point."""

    def decode(self, ids: list[int]) -> str:
        return "".join(chr(i) for i in ids)


def feed(text: str, stop: tuple[str, ...] = ()) -> tuple[list[str], str, bool]:
    stream = TextStream(CharTokenizer(), stop)  # type: ignore[arg-type]
    pieces = []
    for ch in text:
        pieces.append(stream.push(ord(ch)))
        if stream.stopped:
            break
    return pieces, stream.finish(), stream.stopped


def test_without_stops_every_token_is_sent_at_once() -> None:
    pieces, tail, stopped = feed("hello")
    assert pieces == list("hello") and tail == "" and not stopped


def test_a_stop_split_over_tokens_is_never_sent() -> None:
    pieces, tail, stopped = feed("ab STOP cd", ("STOP",))
    assert stopped
    assert "".join(pieces) + tail == "ab "
    assert all("S" not in p for p in pieces)


def test_text_that_only_looked_like_a_stop_is_released() -> None:
    pieces, tail, stopped = feed("a ST b", ("STOP",))
    assert not stopped
    assert "".join(pieces) + tail == "a ST b"
    # "ST" was held back while it could still become "STOP".
    assert pieces[2:4] == ["", ""]


@pytest.mark.parametrize("stop", [("x",), ("zz", "y")])
def test_the_earliest_of_several_stops_wins(stop: tuple[str, ...]) -> None:
    pieces, tail, stopped = feed("abcyxzz", stop)
    assert stopped and "".join(pieces) + tail == "abc" + ("y" if stop == ("x",) else "")
