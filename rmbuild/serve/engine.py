"""The serving engine: one loaded session, one worker thread, many requests.

Vendor runtimes are not safe to call from several threads at once, and a session holds one KV
cache, so one thread owns the session. Requests wait in a bounded queue; the worker admits them
at step boundaries, runs their prefills (in one pass where the runtime takes a batch), then
decodes one token for every running request per round. Each request keeps its own KV cache
(the decode loop's state is swapped in and out), so a short request is not stuck behind a long
one and a request joins or leaves between steps.
Where the step cannot be swapped (a runtime without the shared decode loop), requests run one
after another.

Events flow back to the asyncio side through each :class:`~rmbuild.serve.request.Request`,
several per wake-up when the loop is behind; a request whose client went away is dropped at the
next step boundary.
"""

from __future__ import annotations

import asyncio
import itertools
import math
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import numpy as np

from rmbuild.errors import ArtifactInputMismatch, ContextTooLong, InvalidPrompt, RmbuildError
from rmbuild.runtime.batching import Batch
from rmbuild.runtime.kvloop import KVLoop
from rmbuild.runtime.sampling import sample
from rmbuild.runtime.session import BackendSession
from rmbuild.serve.request import Failed, Finished, Request, Restarted, Token
from rmbuild.serve.textstream import TextStream

# The request and its events live in rmbuild.serve.request; the engine's users import them here.
__all__ = [
    "REQUEST_ERRORS",
    "Engine",
    "EngineStopped",
    "Failed",
    "Finished",
    "QueueFull",
    "Request",
    "RequestQueue",
    "Restarted",
    "Token",
    "error_status",
]

# Errors that belong to one request (its input), not to the session serving it.
REQUEST_ERRORS = (ArtifactInputMismatch, ContextTooLong, InvalidPrompt, ValueError)


class QueueFull(Exception):
    """The waiting queue is at its bound: the caller answers 429."""


class EngineStopped(Exception):
    """The engine is draining or dead and takes no new request."""


class RequestQueue:
    """The asyncio side every engine shares: a bounded waiting queue, the running list, and
    moving requests between engines. A subclass runs them (:class:`Engine` on a loaded session,
    the remote engine against an upstream server)."""

    def __init__(
        self,
        *,
        max_running: int = 8,
        max_queue: int = 64,
        observer: Callable[[Request, str], None] | None = None,
        on_failure: Callable[[BaseException, list[Request]], list[Request]] | None = None,
    ) -> None:
        self.max_running = max(1, int(max_running))
        self.max_queue = max(0, int(max_queue))
        self.observer = observer
        # Told of a backend failure with every request not yet ended; returns those it did
        # not take over (they fail here). The served model moves them to its next candidate.
        self.on_failure = on_failure
        self._waiting: deque[Request] = deque()
        self._running: list[Request] = []
        self._cv = threading.Condition()
        self._stopping = False
        self.dead: BaseException | None = None
        self._ids = itertools.count(1)

    @property
    def num_running(self) -> int:
        return len(self._running)

    @property
    def num_waiting(self) -> int:
        return len(self._waiting)

    @property
    def healthy(self) -> bool:
        return self.dead is None and not self._stopping

    def submit(self, request: Request) -> Request:
        """Queue ``request``; its events arrive on ``request.events`` (made here if unset)."""
        if request.loop is None:
            request.loop = asyncio.get_running_loop()
        if request.events is None:
            request.events = asyncio.Queue()
        request.id = request.id or f"{next(self._ids)}"
        with self._cv:
            if self.dead is not None or self._stopping:
                raise EngineStopped(str(self.dead or "the server is shutting down"))
            if len(self._waiting) >= self.max_queue and len(self._running) >= self.max_running:
                raise QueueFull(f"{len(self._waiting)} requests are already waiting")
            self._waiting.append(request)
            self._cv.notify_all()
        return request

    def hand_over(self) -> list[Request]:
        """Take no new request and give back those still waiting (not started); the running
        ones finish here. For moving a live model to another session."""
        with self._cv:
            self._stopping = True
            waiting = list(self._waiting)
            self._waiting.clear()
            self._cv.notify_all()
        return waiting

    def adopt(self, requests: list[Request]) -> None:
        """Queue requests another engine accepted (handed over or replayed), past the bound:
        they were admitted once and must not be refused now."""
        with self._cv:
            if self.dead is not None or self._stopping:
                raise EngineStopped(str(self.dead or "the engine is stopping"))
            self._waiting.extend(requests)
            self._cv.notify_all()


class Engine(RequestQueue):
    """Runs requests against ``session`` in a worker thread.

    ``max_running`` requests decode together; up to ``max_queue`` more wait; beyond that
    :meth:`submit` raises :class:`QueueFull`. ``observer`` (optional) is told of every request
    that ends, for metrics.
    """

    def __init__(
        self,
        session: BackendSession,
        *,
        max_running: int = 8,
        max_queue: int = 64,
        observer: Callable[[Request, str], None] | None = None,
        on_failure: Callable[[BaseException, list[Request]], list[Request]] | None = None,
        batch: bool = True,
    ) -> None:
        super().__init__(
            max_running=max_running,
            max_queue=max_queue,
            observer=observer,
            on_failure=on_failure,
        )
        self.session = session
        step = session.step_fn
        self._swappable = isinstance(step, KVLoop)
        # Rows decode in one forward pass where the runtime takes a batch; elsewhere each
        # request steps alone, its cache swapped in and out.
        self._batch = Batch(step) if batch and self._swappable and step.batchable else None
        self._thread = threading.Thread(target=self._work, name="rmbuild-engine", daemon=True)
        self._thread.start()

    @property
    def healthy(self) -> bool:
        return super().healthy and self._thread.is_alive()

    def stop(self, timeout: float | None = None) -> None:
        """Finish what is running and waiting, then end the worker (at most ``timeout`` s)."""
        with self._cv:
            self._stopping = True
            self._cv.notify_all()
        self._thread.join(timeout)

    # ---- the worker ------------------------------------------------------------------------

    def _work(self) -> None:
        admitted: list[Request] = []
        try:
            while True:
                admitted.clear()
                # Between the steps of running requests with none waiting (most rounds), the
                # lock is not needed: a request queued meanwhile is admitted next round.
                if self._waiting or not self._running or self._stopping:
                    with self._cv:
                        while not self._waiting and not self._running and not self._stopping:
                            self._cv.wait()
                        if self._stopping and not self._waiting and not self._running:
                            return
                        # A request counts as running from here: its prefill is device work.
                        while self._waiting and not self._running_full():
                            request = self._waiting.popleft()
                            self._running.append(request)
                            admitted.append(request)
                self._start_all(admitted)
                self._round(skip=admitted)
        except BaseException as exc:  # noqa: BLE001 - a dead engine fails every request, says why
            self.dead = exc
            with self._cv:
                pending: list[Request] = []
                for request in [*admitted, *self._running, *self._waiting]:
                    # Not yet told how it ended, and each once (admitted ones are running too).
                    if request.finished_at is None and not any(request is p for p in pending):
                        pending.append(request)
                self._running.clear()
                self._waiting.clear()
            if self.on_failure is not None:
                try:
                    pending = self.on_failure(exc, pending)
                except BaseException as hook_exc:  # noqa: BLE001 - requests still get an end
                    exc = hook_exc
            for request in pending:
                if request.finished_at is None:
                    self._end(request, Failed(exc), "error")

    def _running_full(self) -> bool:
        limit = self.max_running if self._swappable else 1
        return len(self._running) >= limit

    def _start_all(self, admitted: list[Request]) -> None:
        """Admit and prefill the requests taken this round. Where the runtime takes a batch,
        their prompts run in one forward pass (a burst of arrivals waits for one prefill, not
        one after another); a pass the runtime refuses is run again one prompt at a time,
        which names the request at fault."""
        ready = [request for request in admitted if self._admit(request)]
        together = [r for r in ready if self._batch is not None and not r.prompt_logprobs]
        if len(together) > 1 and self._prefill_together(together):
            ready = [r for r in ready if not any(r is t for t in together)]
        for request in ready:
            self._prefill(request)

    def _prefill_together(self, requests: list[Request]) -> bool:
        """Run ``requests``' prompts in one batched pass; False where the runtime refused it
        (each is then run alone, which says which one failed)."""
        assert self._batch is not None
        try:
            logits, states = self._batch.prefill([r.prompt_ids for r in requests])
        except Exception:  # noqa: BLE001 - run alone, each prompt's own error names it
            return False
        for request, row_logits, state in zip(requests, logits, states, strict=True):
            self._first(request, row_logits, None, state)
        return True

    def _admit(self, request: Request) -> bool:
        """Check ``request`` against the session and set it up; False where it ended here (a
        request-level refusal fails only it)."""
        session = self.session
        request.started = time.monotonic()
        if request.cancelled:
            self._end(request, self._finished(request, "cancelled"), "cancelled")
            return False
        try:
            ids = session.admit(request.prompt_ids, request.max_tokens, request.params)
        except REQUEST_ERRORS as exc:
            self._end(request, Failed(exc), "error")
            return False
        request.prompt_ids = ids
        request._tokenizer = session.tokenizer
        if not request.decodes_on_handover:
            request._text = TextStream(session.tokenizer, request.params.stop)
        request._rng = np.random.default_rng(request.params.seed)
        return True

    def _prefill(self, request: Request) -> None:
        """Run ``request``'s prompt alone."""
        step = self.session.step_fn
        step.reset()
        ids = request.prompt_ids
        try:
            if request.prompt_logprobs:
                prompt_lps, logits = self._prefill_scored(ids)
            else:
                prompt_lps, logits = None, step.step(np.asarray(ids, dtype=np.int64))
        except REQUEST_ERRORS as exc:
            self._end(request, Failed(exc), "error")
            return
        self._first(request, logits, prompt_lps, step.snapshot() if self._swappable else None)

    def _first(self, request: Request, logits: Any, prompt_lps: Any, state: Any) -> None:
        """Its prompt ran: the first token comes from the prefill's logits, sent now (time to
        first token); ``state`` is its cache, to join the batch or step alone."""
        request._logits = logits
        request._prompt_lps = prompt_lps  # type: ignore[attr-defined]
        if request.max_tokens == 0:
            self._end(request, self._finished(request, "length"), "length")
            return
        request._state = state
        self._advance(request, decode=False)

    def _prefill_scored(self, ids: list[int]) -> tuple[list[Any], Any]:
        """Feed the prompt one token at a time, scoring each prompt token from the logits of
        the one before it (what a log-likelihood evaluation asks for)."""
        step = self.session.step_fn
        scored: list[tuple[int, float | None, dict[str, float] | None]] = [(ids[0], None, None)]
        logits = step.step(np.asarray(ids[:1], dtype=np.int64))
        for token in ids[1:]:
            lp, top = self._logprobs(logits, token, 1)
            scored.append((token, lp, top))
            logits = step.step(np.asarray([token], dtype=np.int64))
        return scored, logits

    def _round(self, skip: list[Request]) -> None:
        """One decode step for every running request (each with its own KV cache), but those
        in ``skip`` (just prefilled: their first token came from the prefill)."""
        for request in list(self._running):
            if request.cancelled:
                self._end(request, self._finished(request, "cancelled"), "cancelled")
        if self._batch is not None:
            self._batch_round()
        else:
            for request in list(self._running):
                if not any(request is s for s in skip):
                    self._advance(request, decode=True)
        if self._batch is not None:
            # The newcomers join the batch now: their next step is the next round's.
            for request in skip:
                if request.finished_at is None and request._state is not None:
                    request._row = self._batch.add(request._state)
                    request._row.owner = request
                    request._state = None

    def _batch_round(self) -> None:
        assert self._batch is not None
        batch = self._batch
        members = [row.owner for row in batch.rows]  # a request leaves the batch as it ends
        if not members:
            return
        try:
            logits = batch.step([r._last for r in members])
        except REQUEST_ERRORS:
            raise
        except Exception:  # noqa: BLE001 - a runtime that refuses batches: step rows alone
            self._unbatch()
            for request in members:
                self._advance(request, decode=True)
            return
        # Greedy rows take their tokens from one argmax over the batch (what ``sample`` picks
        # for each, without a call per row).
        greedy = np.asarray(logits).argmax(axis=1).tolist()
        for i, request in enumerate(members):
            request._logits = logits[i]
            picked = greedy[i] if request.params.temperature == 0 else None
            self._advance(request, decode=False, picked=picked)

    def _unbatch(self) -> None:
        """Give every row its own cache back and stop batching (the runtime refused a batch)."""
        assert self._batch is not None
        for request in self._running:
            if request._row is not None:
                request._state = self._batch.state(request._row)
                request._row = None
        self._batch = None

    def _advance(self, request: Request, *, decode: bool, picked: int | None = None) -> None:
        """One token for ``request``: decode a step first (``decode``) or use the logits it
        holds; ``picked`` is the token where it was already chosen (a greedy batch row)."""
        step = self.session.step_fn
        try:
            if decode:
                if self._swappable:
                    step.restore(request._state)
                request._logits = step.step(np.asarray([request._last], dtype=np.int64))
                if self._swappable:
                    request._state = step.snapshot()
            token = (
                picked
                if picked is not None
                else sample(request._logits, request.params, request._rng)
            )
        except REQUEST_ERRORS as exc:
            self._end(request, Failed(exc), "error")
            return
        if token in self.session.eos_token_ids and not request.ignore_eos:
            self._end(request, self._finished(request, "stop"), "stop")
            return
        lp = top = None
        if request.logprobs is not None:
            lp, top = self._logprobs(request._logits, token, request.logprobs)
        request._last = token
        request.completion_tokens += 1
        text = request._text
        piece = text.push(token) if text is not None else None
        if request.first_token is None:
            request.first_token = time.monotonic()
        request._emit(Token(token, piece, lp, top))
        if text is not None and text.stopped:
            self._end(request, self._finished(request, "stop"), "stop")
        elif request.completion_tokens >= request.max_tokens:
            self._end(request, self._finished(request, "length"), "length")

    def _finished(self, request: Request, reason: str) -> Finished:
        # Without the engine's decoder, the consumer's side fills the tail in (see _hand_over).
        tail = request._text.finish() if request._text is not None else None
        return Finished(
            reason=reason,
            text=tail,
            prompt_tokens=len(request.prompt_ids),
            completion_tokens=request.completion_tokens,
            prompt_logprobs=getattr(request, "_prompt_lps", None),
        )

    def _end(self, request: Request, event: Finished | Failed, outcome: str) -> None:
        if request in self._running:
            self._running.remove(request)
        if request._row is not None and self._batch is not None:
            self._batch.remove(request._row)
        request._row = None
        request._state = request._logits = None
        request.finished_at = time.monotonic()
        request._emit(event)
        if self.observer is not None:
            self.observer(request, outcome)

    def _logprobs(self, logits: Any, token: int, top: int) -> tuple[float, dict[str, float] | None]:
        """The log-probability of ``token`` and the ``top`` most likely tokens' (by text)."""
        x = np.asarray(logits, dtype=np.float64)
        x = x - x.max()
        logz = math.log(float(np.exp(x).sum()))
        lps = x - logz
        best: dict[str, float] | None = None
        if top > 0:
            decode = self.session.tokenizer.decode
            best = {}
            for i in np.argsort(-lps)[:top]:
                best.setdefault(decode([int(i)]), float(lps[i]))
        return float(lps[token]), best


def error_status(exc: BaseException) -> int:
    """The HTTP status of a failed request: 400 for the client's input, 500 otherwise."""
    if isinstance(exc, REQUEST_ERRORS):
        return 400
    if isinstance(exc, RmbuildError) and getattr(exc, "exit_code", 1) in (2, 3, 6):
        return 400
    return 500
