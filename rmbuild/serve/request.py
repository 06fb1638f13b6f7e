"""A served request and the events it sends its consumer (tokens, then how it ended).

The engine's worker thread fills a request in and emits its events; they reach the asyncio side
through ``loop.call_soon_threadsafe``, several per wake-up when the loop is behind, and a consumer
gathering tokens (:meth:`Request.pause`) is not woken for each. Where nothing in the engine needs
the text, token ids become text on the event loop, several per decode.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from rmbuild.runtime.sampling import SamplingParams
from rmbuild.serve.textstream import TextStream


@dataclass
class Token:
    """One generated token: its id, the text now safe to send, and its log-probabilities.

    The engine leaves ``text`` None where the consumer's side decodes it (see
    :meth:`Request.decodes_on_handover`); the consumer always receives it filled in."""

    token_id: int
    text: str | None
    logprob: float | None = None
    top_logprobs: dict[str, float] | None = None


@dataclass
class Finished:
    """The request ended: why, token counts, and prompt log-probabilities where asked."""

    reason: str  # stop | length | cancelled
    text: str | None  # text left to send (held back until the end); None: as for Token
    prompt_tokens: int
    completion_tokens: int
    prompt_logprobs: list[tuple[int, float | None, dict[str, float] | None]] | None = None


@dataclass
class Restarted:
    """The request starts over on another session: drop the tokens received so far."""


class ClientGone(Exception):
    """The client of a request hung up: nobody reads what would follow."""


@dataclass
class Failed:
    """The request failed; ``error`` says why (an RmbuildError for known causes)."""

    error: BaseException


@dataclass(eq=False)  # identity: a request is itself, whatever its fields hold
class Request:
    """A submitted generation. ``events`` receives Token, then Finished or Failed."""

    prompt_ids: list[int]
    max_tokens: int
    params: SamplingParams = field(default_factory=SamplingParams)
    logprobs: int | None = None  # top-N log-probabilities per generated token
    prompt_logprobs: bool = False  # log-probabilities of the prompt's tokens (echo)
    ignore_eos: bool = False
    # A streamed request's tokens reach its client as they come, so it cannot be replayed on
    # another device once one was sent; a collected one can, until it finishes.
    stream: bool = False
    id: str = ""
    arrival: float = field(default_factory=time.monotonic)
    events: asyncio.Queue[Any] | None = None
    loop: asyncio.AbstractEventLoop | None = None
    cancelled: bool = False
    # Filled by the engine.
    started: float | None = None
    first_token: float | None = None
    finished_at: float | None = None
    completion_tokens: int = 0
    _state: Any = None  # its cache while it steps alone (KVLoop.snapshot)
    _row: Any = None  # its row while it is in the batch
    _text: TextStream | None = None  # the engine's decoder (stop strings, log-probabilities)
    _tokenizer: Any = None  # the serving session's, for the consumer side's decoder
    _out: TextStream | None = None  # the consumer side's decoder (on the event loop)
    _rng: Any = None
    _last: int | None = None
    _logits: Any = None
    # Events not yet handed to the event loop, and whether a hand-over is already scheduled:
    # a loop that falls behind the engine takes several events per wake-up, not one each.
    _pending: deque[Any] = field(default_factory=deque, repr=False)
    _handover: bool = False
    _woken: asyncio.Future[None] | None = None  # see :meth:`pause`

    def cancel(self) -> None:
        """Stop generating for this request (its client went away)."""
        self.cancelled = True

    def abandon(self) -> None:
        """The consumer went away: stop generating, and end the event stream at once (a
        consumer waiting for its next event gets :class:`ClientGone`), not at the engine's
        next step."""
        self.cancel()
        self._emit(Failed(ClientGone()))

    @property
    def decodes_on_handover(self) -> bool:
        """Whether token ids become text on the event loop, several per decode, instead of one
        by one in the engine's thread: where nothing in the engine needs the text (no stop
        strings to find) and tokens are not sent one by one (no log-probabilities). The
        engine's thread is the one every running request waits for."""
        return not self.params.stop and self.logprobs is None

    @property
    def replayable(self) -> bool:
        """Whether the request can start over on another session without its client seeing
        it: nothing of it was streamed yet (a collected request sends nothing until it ends)."""
        return self.finished_at is None and (not self.stream or self.first_token is None)

    def rewind(self) -> None:
        """Forget every step of generation, so another engine runs the request from its
        prompt; a collected request's consumer is told to drop the tokens it holds."""
        had_tokens = self.completion_tokens > 0
        self.started = self.first_token = None
        self.completion_tokens = 0
        self._state = self._text = self._rng = self._last = self._logits = self._row = None
        if hasattr(self, "_prompt_lps"):
            del self._prompt_lps
        if had_tokens:
            self._emit(Restarted())

    def _emit(self, event: Any) -> None:
        """Queue ``event`` for the request's consumer; callable from any thread."""
        if self.events is None or self.loop is None:
            return
        self._pending.append(event)
        if self._handover:  # the scheduled hand-over has not run yet: it takes this one too
            return
        if self._woken is not None and isinstance(event, Token):
            # The consumer is gathering tokens (:meth:`pause`) and takes them itself when it
            # wakes: waking the loop for each would cost a thread switch per token. Were the
            # pause just over, the token goes with the next event, which always wakes it.
            return
        self._handover = True
        try:
            self.loop.call_soon_threadsafe(self._hand_over)
        except RuntimeError:  # the event loop is closed: nobody is listening any more
            self.cancelled = True

    def _hand_over(self) -> None:
        # On the event loop. The flag drops first: an event appended after it is either
        # drained below or schedules the next hand-over itself.
        self._handover = False
        assert self.events is not None
        pending, put = self._pending, self.events.put_nowait
        while pending:
            event = pending.popleft()
            if type(event) is Token and event.text is None:
                # The tokens waiting together are decoded together; the run's text goes with
                # its last token (joined, the texts are the same).
                run = [event]
                while pending and type(pending[0]) is Token and pending[0].text is None:
                    run.append(pending.popleft())
                try:
                    if self._out is None:
                        self._out = TextStream(self._tokenizer)
                    text = self._out.push_many([t.token_id for t in run])
                except Exception as exc:  # noqa: BLE001 - raised here, no consumer would hear it
                    # A callback's exception only reaches asyncio's log: the consumer would wait
                    # for ever. It is told instead, and the engine drops the request.
                    pending.clear()
                    self.cancelled = True
                    put(Failed(exc))
                    if self._woken is not None:
                        _resolve(self._woken)
                    return
                for t in run:
                    t.text = ""
                run[-1].text = text
                for t in run:
                    put(t)
                continue
            if type(event) is Finished and event.text is None:
                event.text = self._out.finish() if self._out is not None else ""
            elif type(event) is Restarted:
                self._out = None  # its tokens come again, from the start
            put(event)
            if type(event) is not Token and self._woken is not None:
                _resolve(self._woken)

    async def pause(self, seconds: float) -> None:
        """Wait ``seconds`` on the event loop, or less: until an event other than a token (the
        end, a failure) is handed over, so that gathering tokens never delays the end. The
        tokens emitted meanwhile are in :attr:`events` when it returns."""
        loop = asyncio.get_running_loop()
        self._woken = woken = loop.create_future()
        timer = loop.call_later(seconds, _resolve, woken)
        try:
            await woken
        finally:
            timer.cancel()
            self._woken = None
            self._hand_over()


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)
