"""The OpenAI-compatible HTTP application (FastAPI).

Endpoints follow vLLM's server, the field's reference: ``/v1/models``, ``/v1/completions``,
``/v1/chat/completions``, ``/tokenize``, ``/detokenize``, ``/tokenizer_info``, ``/health``,
``/version`` and ``/metrics``. Streams are Server-Sent Events ending with ``data: [DONE]``; an
error after the stream started is a ``data: {"error": ...}`` event. A request whose client
disconnects is cancelled at the engine's next step.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from rmbuild import __version__
from rmbuild.errors import RmbuildError
from rmbuild.runtime.sampling import SamplingParams
from rmbuild.serve.chat import ChatTemplate
from rmbuild.serve.engine import (
    Engine,
    EngineStopped,
    Failed,
    Finished,
    QueueFull,
    Restarted,
    Token,
)
from rmbuild.serve.engine import Request as GenRequest
from rmbuild.serve.metrics import Metrics
from rmbuild.serve.model import LogicalModel
from rmbuild.serve.protocol import APIError, ChatRequest, CompletionRequest, parse
from rmbuild.serve.responses import (
    as_api_error,
    chat_chunks,
    chat_logprob,
    completion_choice,
    completion_chunks,
    usage_of,
)
from rmbuild.serve.sse import EventStream
from rmbuild.serve.sse import chunk_interval as stream_interval

# A request body past this is refused before it is parsed (a 10 MB prompt is a mistake or an
# attack, never a prompt this server can take).
MAX_BODY_BYTES = 8 * 1024 * 1024
# A stream's tokens are sent in chunks of this many seconds (longer while several streams run,
# see rmbuild.serve.sse): the per-chunk work of the server and its client (a JSON event, a
# write, the client's parsing) is then paid ~100 times a second rather than once per token,
# which on a small host takes cores from generation; a reader sees no difference at this rate
# (a screen refreshes every 16 ms).
CHUNK_INTERVAL = 0.01


@dataclass
class Served:
    """What the application serves: the logical model, its engine and what loaded it."""

    model: LogicalModel
    engine: Engine
    metrics: Metrics
    info: dict[str, Any] = field(default_factory=dict)
    created: int = field(default_factory=lambda: int(time.time()))

    @property
    def session(self) -> Any:
        return self.engine.session

    @property
    def max_model_len(self) -> int | None:
        return getattr(self.session, "max_model_len", None)


def create_app(
    served: Served, *, api_key: str | None = None, chunk_interval: float = CHUNK_INTERVAL
) -> FastAPI:
    """The application over ``served``; with ``api_key``, every request must bear it. A
    stream sends the text of each ``chunk_interval`` seconds as one chunk (0: each token),
    longer while several streams run (:func:`~rmbuild.serve.sse.chunk_interval`)."""
    app = FastAPI(title="rmbuild", version=__version__, docs_url=None, redoc_url=None)
    app.state.served = served
    template = ChatTemplate.from_artifact(served.info.get("path"), served.session.tokenizer)

    def pace() -> float:
        return stream_interval(chunk_interval, served.engine.num_running)

    app.add_middleware(_Guard, api_key=api_key)

    @app.exception_handler(APIError)
    async def _api_error(request: Request, exc: APIError) -> Response:
        return _error(exc)

    @app.exception_handler(Exception)
    async def _internal(request: Request, exc: Exception) -> Response:
        return _error(
            APIError(500, f"internal error: {type(exc).__name__}: {exc}", type_="server_error")
        )

    @app.get("/health")
    async def health() -> Response:
        # A served model says which candidate serves now, and the moves so far.
        status = getattr(served.engine, "status", None)
        body = status() if status is not None else {"status": "ok"}
        if served.engine.healthy:
            return JSONResponse(body, status_code=200)
        reason = served.engine.dead or "shutting down"
        return JSONResponse(
            {**body, "status": "unavailable", "reason": str(reason)}, status_code=503
        )

    @app.post("/admin/switch")
    async def switch(request: Request) -> Response:
        # Moving a live model is an operator's act: with no key, only a loopback server
        # (whose callers are this machine's users) takes it.
        if api_key is None and not _local_connection(request):
            raise APIError(
                403,
                "/admin/switch needs the server's API key; this server has none",
                type_="permission_error",
            )
        body = await _json(request)
        to = body.get("to", body.get("device", body.get("target")))
        if not isinstance(to, str) or not to.strip():
            raise APIError(
                400,
                "to: a target, a device class (npu, gpu, cpu, remote), a backend or an "
                "artifact id is required",
                param="to",
            )
        move = getattr(served.engine, "switch", None)
        if move is None:
            raise APIError(400, "this server serves one session; it cannot switch", param="to")
        from rmbuild.serve.router import MoveInProgress

        try:
            status = await asyncio.to_thread(move, to)
        except MoveInProgress as exc:
            raise APIError(409, str(exc), type_="conflict_error") from None
        except EngineStopped as exc:
            raise APIError(503, f"the server is not serving: {exc}", type_="server_error") from None
        except RmbuildError as exc:
            error = as_api_error(exc)
            error.param = "to"
            raise error from None
        return JSONResponse(status)

    @app.get("/version")
    async def version() -> dict[str, Any]:
        return {
            "version": __version__,
            "rmbuild": __version__,
            "model": served.model.name,
            "artifact": served.info.get("artifact"),
            "target": served.info.get("target"),
            "backend": served.info.get("backend"),
            "device": served.info.get("device"),
            "resource": served.info.get("resource"),
            "sdk": served.info.get("sdk", {}),
        }

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        return {
            "object": "list",
            "data": [
                {
                    "id": served.model.name,
                    "object": "model",
                    "created": served.created,
                    "owned_by": "rmbuild",
                    "root": served.info.get("artifact"),
                    "parent": None,
                    "max_model_len": served.max_model_len,
                }
            ],
        }

    @app.get("/metrics")
    async def metrics() -> Response:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        served.metrics.sample_engine(served.engine)
        return Response(generate_latest(served.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/tokenizer_info")
    async def tokenizer_info() -> dict[str, Any]:
        tok = served.session.tokenizer
        return {
            "tokenizer_class": "PreTrainedTokenizerFast",
            "eos_token": template.eos_token,
            "bos_token": template.bos_token,
            "chat_template": template.source,
            "model_max_length": served.max_model_len,
            "vocab_size": tok.vocab_size(),
        }

    @app.post("/tokenize")
    async def tokenize(request: Request) -> dict[str, Any]:
        body = await _json(request)
        if "messages" in body:
            chat = parse(ChatRequest, {**body, "model": body.get("model")})
            ids = template.encode(chat.messages)
        elif isinstance(body.get("prompt"), str):
            add = body.get("add_special_tokens", True)
            ids = served.session.tokenizer.encode(body["prompt"], add_special_tokens=bool(add))
        else:
            raise APIError(400, "prompt: a string is required (or messages)", param="prompt")
        return {"tokens": ids, "count": len(ids), "max_model_len": served.max_model_len}

    @app.post("/detokenize")
    async def detokenize(request: Request) -> dict[str, Any]:
        body = await _json(request)
        tokens = body.get("tokens")
        if not isinstance(tokens, list) or not all(
            isinstance(t, int) and not isinstance(t, bool) for t in tokens
        ):
            raise APIError(400, "tokens: a list of token ids is required", param="tokens")
        _check_ids(served, tokens, "tokens")
        return {"prompt": served.session.tokenizer.decode(tokens)}

    @app.post("/v1/completions")
    async def completions(request: Request) -> Response:
        req = parse(CompletionRequest, await _json(request))
        _check_model(served, req.model)
        prompts = req.prompts()
        if req.stream and len(prompts) > 1:
            raise APIError(400, "stream takes one prompt", param="prompt")
        gens = []
        for prompt in prompts:
            if isinstance(prompt, str):
                ids = served.session.tokenizer.encode(prompt)
            else:
                _check_ids(served, prompt, "prompt")
                ids = list(prompt)
            gens.append(
                GenRequest(
                    prompt_ids=ids,
                    max_tokens=16 if req.max_tokens is None else req.max_tokens,
                    params=_params(req),
                    logprobs=req.logprobs,
                    prompt_logprobs=req.echo and req.logprobs is not None,
                    ignore_eos=req.ignore_eos,
                    stream=req.stream,
                )
            )
        rid = f"cmpl-{uuid.uuid4().hex}"
        if req.stream:
            gen = _submit(served, gens[0])
            first = await _first_event(gen)
            return EventStream(completion_chunks(served, rid, req, gen, first, pace), gen)
        choices = []
        usage = {"prompt_tokens": 0, "completion_tokens": 0}
        submitted = [_submit(served, g) for g in gens]
        for index, gen in enumerate(submitted):
            tokens, end = await _collect(gen)
            choices.append(completion_choice(served, index, req, gen, tokens, end))
            usage["prompt_tokens"] += end.prompt_tokens
            usage["completion_tokens"] += end.completion_tokens
        usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
        return JSONResponse(
            {
                "id": rid,
                "object": "text_completion",
                "created": int(time.time()),
                "model": served.model.name,
                "choices": choices,
                "usage": usage,
            }
        )

    @app.post("/v1/chat/completions")
    async def chat(request: Request) -> Response:
        req = parse(ChatRequest, await _json(request))
        _check_model(served, req.model)
        ids = template.encode(req.messages)
        limit = req.limit()
        if limit is None:
            # As vLLM: without max_tokens, generate up to the context limit.
            room = (served.max_model_len or 2048) - max(len(ids), 1)
            limit = max(room, 0)
        gen = GenRequest(
            prompt_ids=ids,
            max_tokens=limit,
            params=_params(req),
            logprobs=(req.top_logprobs or 0) if req.logprobs else None,
            ignore_eos=req.ignore_eos,
            stream=req.stream,
        )
        rid = f"chatcmpl-{uuid.uuid4().hex}"
        gen = _submit(served, gen)
        if req.stream:
            first = await _first_event(gen)
            return EventStream(chat_chunks(served, rid, req, gen, first, pace), gen)
        tokens, end = await _collect(gen)
        text = "".join(t.text for t in tokens) + end.text
        logprobs = None
        if req.logprobs:
            logprobs = {"content": [chat_logprob(served, t) for t in tokens]}
        return JSONResponse(
            {
                "id": rid,
                "object": "chat.completion",
                "created": int(time.time()),
                "model": served.model.name,
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": text},
                        "logprobs": logprobs,
                        "finish_reason": end.reason,
                    }
                ],
                "usage": usage_of(end),
            }
        )

    return app


# ---- helpers ---------------------------------------------------------------------------------


def _local_connection(request: Request) -> bool:
    """Whether the request came in on a loopback address, so from this machine."""
    import ipaddress

    server = request.scope.get("server") or ("",)
    try:
        return ipaddress.ip_address(str(server[0])).is_loopback
    except ValueError:
        return server[0] == "localhost"


class _Guard:
    """The API key and the body bound, checked before any route runs.

    A plain ASGI middleware, not ``@app.middleware("http")``: Starlette's ``BaseHTTPMiddleware``
    pipes every chunk of a streamed response through a memory stream and a task switch, a cost
    paid per token of every stream.
    """

    def __init__(self, app: Any, api_key: str | None) -> None:
        self.app = app
        self.api_key = api_key.encode() if api_key is not None else None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            refusal = self._refusal(dict(scope["headers"]))
            if refusal is not None:
                await _error(refusal)(scope, receive, send)
                return
        await self.app(scope, receive, send)

    def _refusal(self, headers: dict[bytes, bytes]) -> APIError | None:
        if self.api_key is not None:
            scheme, _, token = headers.get(b"authorization", b"").partition(b" ")
            if scheme.lower() != b"bearer" or not hmac.compare_digest(token.strip(), self.api_key):
                return APIError(401, "invalid or missing API key", type_="authentication_error")
        length = headers.get(b"content-length", b"")
        if length.isdigit() and int(length) > MAX_BODY_BYTES:
            return APIError(413, f"request body over {MAX_BODY_BYTES} bytes")
        return None


def _error(exc: APIError) -> JSONResponse:
    return JSONResponse(exc.body(), status_code=exc.status, headers=exc.headers)


async def _json(request: Request) -> Any:
    raw = await request.body()
    if len(raw) > MAX_BODY_BYTES:
        raise APIError(413, f"request body over {MAX_BODY_BYTES} bytes")
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise APIError(400, f"the request body is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise APIError(400, "the request body must be a JSON object")
    return body


def _check_model(served: Served, name: str | None) -> None:
    if not served.model.answers_to(name):
        raise APIError(
            404,
            f"the model {name!r} does not exist; this server serves {served.model.name!r}",
            param="model",
            type_="NotFoundError",
            code="model_not_found",
        )


def _check_ids(served: Served, ids: list[int], param: str) -> None:
    size = served.session.tokenizer.vocab_size()
    bad = [i for i in ids if not 0 <= i < size]
    if bad:
        raise APIError(
            400,
            f"{param}: token id {bad[0]} is outside the vocabulary (0..{size - 1})",
            param=param,
        )


def _params(req: CompletionRequest | ChatRequest) -> SamplingParams:
    return SamplingParams(
        temperature=req.temperature, top_p=req.top_p, seed=req.seed, stop=req.stop_strings()
    )


def _submit(served: Served, gen: GenRequest) -> GenRequest:
    try:
        return served.engine.submit(gen)
    except QueueFull as exc:
        raise APIError(
            429,
            f"the server is at capacity ({exc}); retry shortly",
            type_="rate_limit_error",
            headers={"Retry-After": "1"},
        ) from None
    except EngineStopped as exc:
        raise APIError(
            503, f"the server is not taking requests: {exc}", type_="server_error"
        ) from None


async def _first_event(gen: GenRequest) -> Any:
    """The first event, so a request refused before its first token is a plain HTTP error."""
    assert gen.events is not None
    try:
        event = await gen.events.get()
    except BaseException:
        gen.cancel()
        raise
    if isinstance(event, Failed):
        raise as_api_error(event.error)
    return event


# How long a collected request's tokens may wait on the engine's side before the event loop takes
# them (the end always wakes it at once).
COLLECT_WAKE = 1.0


async def _collect(gen: GenRequest) -> tuple[list[Token], Finished]:
    assert gen.events is not None
    tokens: list[Token] = []
    try:
        while True:
            if gen.events.empty():
                # Nothing is sent before the end: take the tokens when it comes, instead of
                # waking the event loop (and taking the engine's GIL) for each one.
                await gen.pause(COLLECT_WAKE)
            event = await gen.events.get()
            if isinstance(event, Token):
                tokens.append(event)
            elif isinstance(event, Restarted):
                tokens.clear()  # replayed on another session: its tokens come again
            elif isinstance(event, Finished):
                return tokens, event
            elif isinstance(event, Failed):
                raise as_api_error(event.error)
    except BaseException:
        gen.cancel()
        raise
