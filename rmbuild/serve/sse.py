"""A stream's chunks as Server-Sent Events over plain ASGI, and the pace chunks go out at.

Starlette's ``StreamingResponse`` (on uvicorn, whose ASGI spec version is 2.3) runs every
response in an anyio task group with a second task listening for the client going away: two
tasks, a task group and its cancel scopes per request, and a cancellation to end them. Here the
body is sent from the request's own task, and a watcher task, when the client hangs up,
abandons the request (:meth:`~rmbuild.serve.request.Request.abandon`): its stream ends at once
and the engine drops it at its next step.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

from starlette.responses import Response

from rmbuild.serve.protocol import APIError
from rmbuild.serve.request import Request as GenRequest

DONE = b"data: [DONE]\n\n"
# A stream's chunk interval grows with the number of running streams, up to this: the server
# and its clients then pay their per-chunk work (a JSON event, a write, the client's parsing)
# about as often in all at 8 streams as at one, not 8 times as often, while a reader still sees
# text 20 times a second.
MAX_CHUNK_INTERVAL = 0.05


def chunk_interval(base: float, running: int) -> float:
    """The interval of each stream's chunks while ``running`` requests generate: ``base`` for
    one, ``base`` times the count for more, capped at :data:`MAX_CHUNK_INTERVAL` (or ``base``
    where that is longer); 0 stays 0 (every token its own chunk)."""
    return min(base * max(running, 1), max(base, MAX_CHUNK_INTERVAL))


def _ends(chunk: dict[str, Any]) -> bool:
    """Whether ``chunk`` ends its choice (the usage chunk comes right after such a one)."""
    if "usage" in chunk and not chunk.get("choices"):
        return True
    return any(c.get("finish_reason") is not None for c in chunk.get("choices", ()))


class EventStream(Response):
    """An ASGI response sending ``chunks`` as ``data: {json}`` events, ``data: [DONE]`` last.

    An error raised by ``chunks`` after the stream started becomes a ``data: {"error": ...}``
    event (an :class:`APIError` as it is, anything else as a server error). The chunk that ends
    the choice, the usage chunk and ``[DONE]`` go out in one write: the client's wait for the
    end is one round trip, not four.
    """

    media_type = "text/event-stream"

    def __init__(self, chunks: AsyncIterator[dict[str, Any]], gen: GenRequest) -> None:
        self.chunks = chunks
        self.gen = gen
        self.gone = False
        self.status_code = 200
        self.background = None
        self.init_headers({"cache-control": "no-cache"})

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": self.status_code,
                "headers": self.raw_headers,
            }
        )
        watcher = asyncio.get_running_loop().create_task(self._watch(receive))
        try:
            async for data, last in self._body():
                await send({"type": "http.response.body", "body": data, "more_body": not last})
        finally:
            watcher.cancel()
            # Done or disconnected: the engine drops the request at its next step.
            self.gen.cancel()
        if self.background is not None:
            await self.background()

    async def _body(self) -> AsyncIterator[tuple[bytes, bool]]:
        """What to write, and whether it is the last write."""
        held: list[bytes] = []
        try:
            async for chunk in self.chunks:
                held.append(b"data: " + json.dumps(chunk, ensure_ascii=False).encode() + b"\n\n")
                if not _ends(chunk):
                    yield b"".join(held), False
                    held.clear()
        except Exception as exc:  # noqa: BLE001 - the stream still ends as the protocol says
            if self.gone:
                return
            if not isinstance(exc, APIError):
                exc = APIError(
                    500, f"internal error: {type(exc).__name__}: {exc}", type_="server_error"
                )
            held.append(b"data: " + json.dumps(exc.body()).encode() + b"\n\n")
        held.append(DONE)
        yield b"".join(held), True

    async def _watch(self, receive: Any) -> None:
        while (await receive())["type"] != "http.disconnect":
            pass
        # The stream may be waiting for its next token or chunk: it ends now.
        self.gone = True
        self.gen.abandon()
