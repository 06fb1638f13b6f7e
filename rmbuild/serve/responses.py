"""OpenAI's response shapes for the served endpoints: completion and chat objects, their
streamed chunks, log-probabilities and usage, and an engine failure as OpenAI's error object."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any

from rmbuild.serve.engine import Failed, Finished, Token, error_status
from rmbuild.serve.engine import Request as GenRequest
from rmbuild.serve.protocol import APIError, ChatRequest, CompletionRequest

if TYPE_CHECKING:
    from rmbuild.serve.app import Served


def as_api_error(exc: BaseException) -> APIError:
    """A failed request as OpenAI's error object: 400 for the client's input, 500 else."""
    status = error_status(exc)
    message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    context = getattr(exc, "context", None) or []
    if context:
        message += " (" + "; ".join(str(c) for c in context[:4]) + ")"
    hint = getattr(exc, "hint", None)
    if hint:
        message += f"; {hint}"
    param = "max_tokens" if type(exc).__name__ == "ContextTooLong" else None
    return APIError(
        status,
        message,
        param=param,
        type_="invalid_request_error" if status < 500 else "server_error",
        code=getattr(exc, "code", None),
    )


async def events(
    gen: GenRequest,
    first: Any,
    *,
    merge: bool = False,
    interval: float | Callable[[], float] = 0.0,
) -> AsyncIterator[Any]:
    """The request's events from ``first`` on, up to and including how it ended.

    With ``merge``, tokens already waiting are joined into one (their text, the last id), and
    with ``interval`` too, those that come within ``interval`` seconds of the last one yielded
    (a callable is asked before each chunk: the pace can follow the server's load): a stream
    then costs the server and its client one chunk per interval instead of one per token. The
    first token is never held back, nor the end (:meth:`GenRequest.pause` wakes on it); tokens
    gathered when the end comes go with it, as its text, so a stream ends in one chunk. Not
    for log-probabilities, which are per token.
    """
    queue = gen.events
    assert queue is not None
    event, held, sent = first, None, 0.0
    while True:
        if merge and isinstance(event, Token):
            pieces, last = [event.text], event
            gap = interval() if callable(interval) else interval
            for paused in (False, True):
                while held is None and not queue.empty():
                    nxt = queue.get_nowait()
                    if isinstance(nxt, Token):
                        pieces.append(nxt.text)
                        last = nxt
                    else:
                        held = nxt
                wait = sent + gap - time.monotonic()
                if paused or held is not None or not sent or wait <= 0:
                    break
                await gen.pause(wait)
            if sent and isinstance(held, Finished):
                # The end came while tokens gathered: one chunk says both.
                held.text = "".join(pieces) + (held.text or "")
                event, held = held, None
            elif len(pieces) > 1:
                event = Token(last.token_id, "".join(pieces))
        yield event
        sent = time.monotonic()
        if isinstance(event, Finished | Failed):
            return
        if held is not None:
            event, held = held, None
        else:
            event = await queue.get()


def usage_of(end: Finished) -> dict[str, int]:
    """The ``usage`` object of a finished request."""
    return {
        "prompt_tokens": end.prompt_tokens,
        "completion_tokens": end.completion_tokens,
        "total_tokens": end.prompt_tokens + end.completion_tokens,
    }


def _token_text(served: Served, token_id: int) -> str:
    return served.session.tokenizer.decode([token_id])


def _completion_logprobs(
    served: Served, req: CompletionRequest, gen: GenRequest, tokens: list[Token], end: Finished
) -> dict[str, Any] | None:
    if req.logprobs is None:
        return None
    out: dict[str, list[Any]] = {
        "tokens": [],
        "token_logprobs": [],
        "top_logprobs": [],
        "text_offset": [],
    }
    offset = 0
    if req.echo and end.prompt_logprobs is not None:
        for token_id, lp, top in end.prompt_logprobs:
            text = _token_text(served, token_id)
            out["tokens"].append(text)
            out["token_logprobs"].append(lp)
            out["top_logprobs"].append(top)
            out["text_offset"].append(offset)
            offset += len(text)
    for t in tokens:
        text = _token_text(served, t.token_id)
        out["tokens"].append(text)
        out["token_logprobs"].append(t.logprob)
        out["top_logprobs"].append(t.top_logprobs)
        out["text_offset"].append(offset)
        offset += len(text)
    return out


def completion_choice(
    served: Served,
    index: int,
    req: CompletionRequest,
    gen: GenRequest,
    tokens: list[Token],
    end: Finished,
) -> dict[str, Any]:
    """One ``choices`` entry of a completion (echo and logprobs as asked)."""
    text = "".join(t.text for t in tokens) + end.text
    if req.echo:
        text = served.session.tokenizer.decode(gen.prompt_ids) + text
    return {
        "index": index,
        "text": text,
        "logprobs": _completion_logprobs(served, req, gen, tokens, end),
        "finish_reason": end.reason,
    }


async def completion_chunks(
    served: Served,
    rid: str,
    req: CompletionRequest,
    gen: GenRequest,
    first: Any,
    interval: float | Callable[[], float] = 0.0,
) -> AsyncIterator[dict[str, Any]]:
    """The streamed chunks of a completion (``text_completion`` objects), usage last; the
    tokens of each ``interval`` seconds share a chunk (see :func:`events`)."""
    created = int(time.time())

    def chunk(text: str, finish: str | None, logprobs: Any = None) -> dict[str, Any]:
        return {
            "id": rid,
            "object": "text_completion",
            "created": created,
            "model": served.model.name,
            "choices": [{"index": 0, "text": text, "logprobs": logprobs, "finish_reason": finish}],
        }

    if req.echo:
        yield chunk(served.session.tokenizer.decode(gen.prompt_ids), None)
    async for event in events(gen, first, merge=req.logprobs is None, interval=interval):
        if isinstance(event, Token):
            lp = None
            if req.logprobs is not None:
                lp = {
                    "tokens": [_token_text(served, event.token_id)],
                    "token_logprobs": [event.logprob],
                    "top_logprobs": [event.top_logprobs],
                    "text_offset": [0],
                }
            if event.text or lp is not None:
                yield chunk(event.text, None, lp)
        elif isinstance(event, Finished):
            yield chunk(event.text, event.reason)
            if req.include_usage:
                yield {
                    "id": rid,
                    "object": "text_completion",
                    "created": created,
                    "model": served.model.name,
                    "choices": [],
                    "usage": usage_of(event),
                }
        elif isinstance(event, Failed):
            raise as_api_error(event.error)


def chat_logprob(served: Served, t: Token) -> dict[str, Any]:
    """One generated token in chat's ``logprobs.content`` shape."""
    text = _token_text(served, t.token_id)
    return {
        "token": text,
        "logprob": t.logprob,
        "bytes": list(text.encode()),
        "top_logprobs": [
            {"token": k, "logprob": v, "bytes": list(k.encode())}
            for k, v in (t.top_logprobs or {}).items()
        ],
    }


async def chat_chunks(
    served: Served,
    rid: str,
    req: ChatRequest,
    gen: GenRequest,
    first: Any,
    interval: float | Callable[[], float] = 0.0,
) -> AsyncIterator[dict[str, Any]]:
    """The streamed chunks of a chat completion: the role first, usage last; the tokens of
    each ``interval`` seconds share a chunk (see :func:`events`)."""
    created = int(time.time())

    def chunk(delta: dict[str, Any], finish: str | None, logprobs: Any = None) -> dict[str, Any]:
        return {
            "id": rid,
            "object": "chat.completion.chunk",
            "created": created,
            "model": served.model.name,
            "choices": [
                {"index": 0, "delta": delta, "logprobs": logprobs, "finish_reason": finish}
            ],
        }

    yield chunk({"role": "assistant", "content": ""}, None)
    async for event in events(gen, first, merge=not req.logprobs, interval=interval):
        if isinstance(event, Token):
            lp = {"content": [chat_logprob(served, event)]} if req.logprobs else None
            if event.text or lp is not None:
                yield chunk({"content": event.text}, None, lp)
        elif isinstance(event, Finished):
            yield chunk({"content": event.text} if event.text else {}, event.reason)
            if req.include_usage:
                yield {
                    "id": rid,
                    "object": "chat.completion.chunk",
                    "created": created,
                    "model": served.model.name,
                    "choices": [],
                    "usage": usage_of(event),
                }
        elif isinstance(event, Failed):
            raise as_api_error(event.error)
