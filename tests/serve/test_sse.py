"""A stream as Server-Sent Events: what each write carries, the end in one write, an error
mid-stream, a client that hangs up while the stream waits, and the pace of chunks."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

pytest.importorskip("starlette")

from rmbuild.serve.protocol import APIError  # noqa: E402
from rmbuild.serve.request import Request  # noqa: E402
from rmbuild.serve.sse import MAX_CHUNK_INTERVAL, EventStream, chunk_interval  # noqa: E402


def _chunk(text: str, finish: str | None = None) -> dict[str, Any]:
    return {"choices": [{"index": 0, "text": text, "finish_reason": finish}]}


def _sent(chunk: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(chunk).encode() + b"\n\n"


async def _gen() -> Request:
    return Request(
        prompt_ids=[1], max_tokens=8, events=asyncio.Queue(), loop=asyncio.get_running_loop()
    )


async def _run(stream: EventStream, receive: Any = None) -> list[dict[str, Any]]:
    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    async def never() -> dict[str, Any]:
        await asyncio.Event().wait()
        raise AssertionError

    await asyncio.wait_for(stream({"type": "http"}, receive or never, send), 30)
    return sent


def test_each_chunk_is_one_write_and_the_end_usage_and_done_are_one() -> None:
    async def chunks() -> AsyncIterator[dict[str, Any]]:
        yield _chunk("a")
        yield _chunk("b")
        yield _chunk("c", "length")
        yield {"choices": [], "usage": {"completion_tokens": 3}}

    async def main() -> list[dict[str, Any]]:
        gen = await _gen()
        sent = await _run(EventStream(chunks(), gen))
        assert gen.cancelled  # the engine drops whatever is left of it
        return sent

    sent = asyncio.run(main())
    assert sent[0]["type"] == "http.response.start"
    assert (b"content-type", b"text/event-stream; charset=utf-8") in sent[0]["headers"]
    bodies = sent[1:]
    assert [m["more_body"] for m in bodies] == [True, True, False]
    assert (
        bodies[0]["body"]
        == b'data: {"choices": [{"index": 0, "text": "a", "finish_reason": null}]}\n\n'
    )
    last = bodies[-1]["body"].decode()
    events = [e for e in last.split("\n\n") if e]
    assert len(events) == 3
    assert '"finish_reason": "length"' in events[0]
    assert '"usage"' in events[1]
    assert events[2] == "data: [DONE]"


def test_an_error_mid_stream_is_an_error_event_then_done() -> None:
    async def chunks() -> AsyncIterator[dict[str, Any]]:
        yield _chunk("a")
        raise APIError(500, "the backend died")

    async def main() -> list[dict[str, Any]]:
        return await _run(EventStream(chunks(), await _gen()))

    bodies = asyncio.run(main())[1:]
    assert bodies[-1]["more_body"] is False
    last = bodies[-1]["body"].decode()
    assert last.startswith('data: {"error": ')
    assert "the backend died" in last
    assert last.endswith("data: [DONE]\n\n")


def test_an_unexpected_exception_mid_stream_still_ends_with_an_error_event_and_done() -> None:
    async def chunks() -> AsyncIterator[dict[str, Any]]:
        yield _chunk("a")
        raise KeyError("oops")

    async def main() -> list[dict[str, Any]]:
        return await _run(EventStream(chunks(), await _gen()))

    last = asyncio.run(main())[-1]
    assert last["more_body"] is False
    error = json.loads(last["body"].decode().split("\n\n")[0].removeprefix("data: "))
    assert error["error"]["type"] == "server_error"
    assert "KeyError" in error["error"]["message"]
    assert last["body"].endswith(b"data: [DONE]\n\n")


def test_a_client_that_hangs_up_ends_a_waiting_stream_at_once() -> None:
    from rmbuild.serve.request import Failed, Token
    from rmbuild.serve.responses import as_api_error, events

    async def main() -> tuple[Request, list[dict[str, Any]]]:
        gen = await _gen()
        hung_up = asyncio.Event()

        async def chunks() -> AsyncIterator[dict[str, Any]]:
            # As the completion's chunks: a token is a chunk, a failure an error. After the
            # first token no event comes (the engine is on a long step).
            async for event in events(gen, Token(1, "a")):
                if isinstance(event, Token):
                    yield _chunk(event.text or "")
                    hung_up.set()
                elif isinstance(event, Failed):
                    raise as_api_error(event.error)

        async def receive() -> dict[str, Any]:
            await hung_up.wait()
            return {"type": "http.disconnect"}

        return gen, await _run(EventStream(chunks(), gen), receive)

    gen, sent = asyncio.run(main())
    assert gen.cancelled
    # What was sent before the hang-up; nothing after it, not even an error event.
    assert [m["body"] for m in sent[1:]] == [_sent(_chunk("a"))]


def test_the_chunk_interval_grows_with_the_streams_running_up_to_a_cap() -> None:
    assert chunk_interval(0.01, 0) == 0.01
    assert chunk_interval(0.01, 1) == 0.01
    assert chunk_interval(0.01, 3) == pytest.approx(0.03)
    assert chunk_interval(0.01, 32) == MAX_CHUNK_INTERVAL
    assert chunk_interval(0.0, 32) == 0.0  # a chunk per token stays so
    assert chunk_interval(0.2, 8) == 0.2  # an interval set above the cap is kept
