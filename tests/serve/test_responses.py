"""How a request's events become a stream's chunks: tokens that wait are merged, tokens within
the chunk interval share a chunk, and neither the first token nor the end is held back."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

pytest.importorskip("fastapi")

from rmbuild.serve.engine import Finished, Request, Token  # noqa: E402
from rmbuild.serve.responses import events  # noqa: E402


def _finished(n: int) -> Finished:
    return Finished(reason="length", text="", prompt_tokens=1, completion_tokens=n)


def _texts(got: list[Any]) -> list[str]:
    return [e.text if isinstance(e, Token) else type(e).__name__ for e in got]


async def _request() -> Request:
    return Request(
        prompt_ids=[1], max_tokens=8, events=asyncio.Queue(), loop=asyncio.get_running_loop()
    )


async def _collect(gen: Request, first: Any, **kw: Any) -> list[Any]:
    return [e async for e in events(gen, first, **kw)]


def test_tokens_already_waiting_are_one_chunk_with_the_last_id() -> None:
    async def main() -> list[Any]:
        gen = await _request()
        for i, text in enumerate("bcd", start=2):
            gen._emit(Token(i, text))
        gen._emit(_finished(4))
        await asyncio.sleep(0)  # the hand-over runs on the loop
        return await _collect(gen, Token(1, "a"), merge=True)

    got = asyncio.run(main())
    assert _texts(got) == ["abcd", "Finished"]
    assert got[0].token_id == 4


def test_without_merge_every_token_is_its_own_event() -> None:
    async def main() -> list[Any]:
        gen = await _request()
        for i, text in enumerate("bc", start=2):
            gen._emit(Token(i, text))
        gen._emit(_finished(3))
        await asyncio.sleep(0)
        return await _collect(gen, Token(1, "a"))

    assert _texts(asyncio.run(main())) == ["a", "b", "c", "Finished"]


def test_tokens_within_the_interval_share_a_chunk_and_the_end_is_not_held() -> None:
    async def main() -> list[Any]:
        gen = await _request()
        got: list[Any] = []
        first_out = asyncio.Event()

        async def consume() -> None:
            async for event in events(gen, Token(1, "a"), merge=True, interval=interval):
                got.append(event)
                first_out.set()

        task = asyncio.create_task(consume())
        await first_out.wait()  # the first token went out at once, not after the interval
        gen._emit(Token(2, "b"))
        await asyncio.sleep(0.01)
        gen._emit(Token(3, "c"))
        await asyncio.sleep(0.01)
        gen._emit(_finished(3))
        # A bound on a hang: were the end held for the interval, this would wait an hour.
        await asyncio.wait_for(task, 30)
        return got

    asked: list[int] = []

    def interval() -> float:  # a pace the server sets per chunk: asked before each one
        asked.append(1)
        return 3600

    got = asyncio.run(main())
    # The tokens gathered when the end came go with it: the stream ends in one chunk.
    assert _texts(got) == ["a", "Finished"]
    assert got[-1].text == "bc"
    assert len(asked) == 2


def test_the_tokens_gathered_before_an_end_with_text_come_first() -> None:
    async def main() -> list[Any]:
        gen = await _request()
        got: list[Any] = []
        first_out = asyncio.Event()

        async def consume() -> None:
            async for event in events(gen, Token(1, "a"), merge=True, interval=3600):
                got.append(event)
                first_out.set()

        task = asyncio.create_task(consume())
        await first_out.wait()
        gen._emit(Token(2, "b"))
        await asyncio.sleep(0.01)
        gen._emit(Finished(reason="stop", text="!", prompt_tokens=1, completion_tokens=2))
        await asyncio.wait_for(task, 30)
        return got

    got = asyncio.run(main())
    assert _texts(got) == ["a", "Finished"]
    assert got[-1].text == "b!"  # the held-back tail follows the tokens, in order
