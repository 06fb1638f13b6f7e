"""Serving a remote upstream: each request proxied to the OpenAI-compatible server.

:class:`RemoteEngine` has the engine's interface (``submit``, ``adopt``, ``hand_over``,
``stop``, ``healthy``...) so the served model and the endpoints treat a remote device like a
local one. ``max_running`` worker threads each proxy one request at a time (streaming, with
httpx): the upstream batches them itself. Events go back to the asyncio side as the local
engine's do. A request the upstream refuses (4xx) fails alone; an upstream that cannot be
reached or fails (5xx) kills the engine, which hands every request not yet ended to its
failure hook, so the served model falls back to its next candidate as for a local device.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from rmbuild.serve.engine import (
    REQUEST_ERRORS,
    Failed,
    Finished,
    Request,
    RequestQueue,
    Token,
)

if TYPE_CHECKING:
    from rmbuild.backends.remote.session import RemoteSession


def _token_id(text: Any, session: RemoteSession) -> int:
    """A token's id from an upstream's logprobs entry: vLLM's ``token_id:N`` where it gives
    it, else the first id of the text as the local tokenizer encodes it (-1: none)."""
    if isinstance(text, str) and text.startswith("token_id:") and text[9:].isdigit():
        return int(text[9:])
    if isinstance(text, str) and text:
        ids = session.tokenizer.encode(text, add_special_tokens=False)
        if ids:
            return int(ids[0])
    return -1


class RemoteEngine(RequestQueue):
    """Proxies requests to ``session``'s upstream; see the module docstring."""

    def __init__(
        self,
        session: RemoteSession,
        *,
        max_running: int = 8,
        max_queue: int = 64,
        observer: Callable[[Request, str], None] | None = None,
        on_failure: Callable[[BaseException, list[Request]], list[Request]] | None = None,
    ) -> None:
        super().__init__(
            max_running=max_running,
            max_queue=max_queue,
            observer=observer,
            on_failure=on_failure,
        )
        self.session = session
        self._threads = [
            threading.Thread(target=self._work, name=f"rmbuild-remote-{i}", daemon=True)
            for i in range(self.max_running)
        ]
        for thread in self._threads:
            thread.start()

    # ---- the engine's interface ------------------------------------------------------------

    def stop(self, timeout: float | None = None) -> None:
        """Finish what is running and waiting, then end the workers (at most ``timeout``)."""
        with self._cv:
            self._stopping = True
            self._cv.notify_all()
        deadline = None if timeout is None else time.monotonic() + timeout
        for thread in self._threads:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            thread.join(left)

    # ---- the workers -----------------------------------------------------------------------

    def _work(self) -> None:
        while True:
            with self._cv:
                while not self._waiting and not self._stopping and self.dead is None:
                    self._cv.wait()
                if self.dead is not None or (self._stopping and not self._waiting):
                    return
                request = self._waiting.popleft()
                self._running.append(request)
            try:
                self._proxy(request)
            except BaseException as exc:  # noqa: BLE001 - the upstream failed: fall back
                self._die(exc, request)
                return
            finally:
                with self._cv:
                    if request in self._running:
                        self._running.remove(request)

    def _proxy(self, request: Request) -> None:
        session = self.session
        request.started = time.monotonic()
        if request.cancelled:
            self._end(request, self._finished(request, "cancelled", 0), "cancelled")
            return
        try:
            ids = session.admit(request.prompt_ids, request.max_tokens, request.params)
        except REQUEST_ERRORS as exc:
            self._end(request, Failed(exc), "error")
            return
        request.prompt_ids = ids
        if request.max_tokens == 0:
            self._end(request, self._finished(request, "length", len(ids)), "length")
            return
        more: dict[str, Any] = {"stream_options": {"include_usage": True}}
        if request.logprobs is not None:
            more.update(logprobs=request.logprobs, return_tokens_as_token_ids=True)
        if request.ignore_eos:
            more["ignore_eos"] = True
        payload = session.payload(ids, request.max_tokens, request.params, **more)
        from rmbuild.backends.remote.client import UpstreamRefused

        try:
            if request.prompt_logprobs:
                self._echo(request, payload)
            else:
                self._stream(request, payload)
        except UpstreamRefused as exc:
            self._end(request, Failed(exc), "error")

    def _stream(self, request: Request, payload: dict[str, Any]) -> None:
        assert self.session.upstream is not None
        reason, usage = "length", None
        events = self.session.upstream.stream(payload)
        try:
            for event in events:
                if request.cancelled:
                    break  # closing the stream tells the upstream to stop
                if isinstance(event.get("usage"), dict):
                    usage = event["usage"]
                for choice in event.get("choices") or []:
                    self._tokens(request, choice)
                    if choice.get("finish_reason"):
                        reason = choice["finish_reason"]
        finally:
            events.close()
        if request.cancelled:
            self._end(request, self._finished(request, "cancelled", None), "cancelled")
            return
        if usage and usage.get("completion_tokens") is not None:
            request.completion_tokens = int(usage["completion_tokens"])
        self._end(request, self._finished(request, reason, None), reason)

    def _echo(self, request: Request, payload: dict[str, Any]) -> None:
        """Prompt log-probabilities (``echo``): one non-streamed request, whose first
        ``len(prompt)`` tokens are the prompt's."""
        assert self.session.upstream is not None
        body = {k: v for k, v in payload.items() if k != "stream_options"}
        body.update(echo=True, logprobs=request.logprobs or 0, return_tokens_as_token_ids=True)
        answer = self.session.upstream.complete(body)
        choice = (answer.get("choices") or [{}])[0]
        lp = choice.get("logprobs") or {}
        tokens = lp.get("tokens") or []
        values = lp.get("token_logprobs") or []
        tops = lp.get("top_logprobs") or [None] * len(tokens)
        n = len(request.prompt_ids)
        request._prompt_lps = [  # type: ignore[attr-defined]
            (request.prompt_ids[i], values[i] if i < len(values) else None, self._top(tops[i]))
            for i in range(min(n, len(tokens)))
        ]
        for i in range(n, len(tokens)):
            self._emit_token(request, tokens[i], tokens[i], values[i], tops[i], text=None)
        reason = choice.get("finish_reason") or "length"
        self._end(request, self._finished(request, reason, None), reason)

    def _tokens(self, request: Request, choice: dict[str, Any]) -> None:
        text = choice.get("text") or ""
        lp = choice.get("logprobs") if request.logprobs is not None else None
        if isinstance(lp, dict) and lp.get("tokens"):
            toks, values = lp["tokens"], lp.get("token_logprobs") or []
            tops = lp.get("top_logprobs") or [None] * len(toks)
            for i, tok in enumerate(toks):
                # The chunk's text goes with its last token, so the pieces add up to it.
                piece = text if i == len(toks) - 1 else ""
                value = values[i] if i < len(values) else None
                self._emit_token(request, tok, tok, value, tops[i], text=piece)
        elif text:
            self._emit_token(request, None, None, None, None, text=text)

    def _emit_token(
        self,
        request: Request,
        token: Any,
        label: Any,
        logprob: float | None,
        top: Any,
        *,
        text: str | None,
    ) -> None:
        token_id = _token_id(token, self.session) if token is not None else -1
        if text is None:
            text = self.session.tokenizer.decode([token_id]) if token_id >= 0 else ""
        request.completion_tokens += 1
        if request.first_token is None:
            request.first_token = time.monotonic()
        request._emit(Token(token_id, text, logprob, self._top(top)))

    def _top(self, top: Any) -> dict[str, float] | None:
        """An upstream's top log-probabilities keyed by token text (vLLM's ``token_id:N``
        keys decoded here)."""
        if not isinstance(top, dict) or not top:
            return None
        decode = self.session.tokenizer.decode
        return {
            (decode([_token_id(k, self.session)]) if str(k).startswith("token_id:") else str(k)): (
                float(v)
            )
            for k, v in top.items()
        }

    def _finished(self, request: Request, reason: str, prompt_tokens: int | None) -> Finished:
        return Finished(
            reason=reason,
            text="",
            prompt_tokens=len(request.prompt_ids) if prompt_tokens is None else prompt_tokens,
            completion_tokens=request.completion_tokens,
            prompt_logprobs=getattr(request, "_prompt_lps", None),
        )

    def _end(self, request: Request, event: Finished | Failed, outcome: str) -> None:
        request.finished_at = time.monotonic()
        request._emit(event)
        if self.observer is not None:
            self.observer(request, outcome)

    def _die(self, exc: BaseException, request: Request) -> None:
        """The upstream failed under ``request``: the engine stops taking work; what has not
        ended goes to the failure hook (the served model replays it elsewhere)."""
        with self._cv:
            first = self.dead is None
            if first:
                self.dead = exc
            pending = [request] if request.finished_at is None else []
            if first:
                pending += list(self._waiting)
                self._waiting.clear()
            self._cv.notify_all()
        if self.on_failure is not None and pending:
            try:
                pending = self.on_failure(exc, pending)
            except BaseException as hook_exc:  # noqa: BLE001 - requests still get an end
                exc = hook_exc
        for r in pending:
            if r.finished_at is None:
                self._end(r, Failed(exc), "error")
