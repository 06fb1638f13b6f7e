"""The served model: the engine of the candidate serving now, and the moves to another one.

:class:`ServedModel` stands where the application expects an :class:`~rmbuild.serve.engine.Engine`
(``submit``, ``healthy``, ``session``, ``stop``...), so the endpoints do not know that the
session behind them can change. It changes in two ways:

* **fallback**: a backend that fails mid-request kills its engine; the engine hands every
  request that has not ended to :meth:`ServedModel._failed`, which replays on the next
  candidate those whose client saw nothing yet (a collected request until it ends, a stream
  before its first token) and lets the others fail (a stream already sending ends with an error
  event). Requests that arrive while the next candidate loads wait for it. A candidate that
  fails to load is skipped the same way, at start-up too.
* **switching** (:meth:`ServedModel.switch`, ``POST /admin/switch``): the other candidate is
  loaded first; then its engine takes the requests still waiting, while those already running
  finish where they are and the old session closes after them. No request is dropped.

Every move is counted in ``rmbuild:fallback_total{from,to,reason}`` (reasons ``load_failed``,
``backend_error``, ``switch``), and the metrics' labels, ``/health`` and ``/version`` say which
target, backend and device serve now.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import threading
import time
from collections import deque
from typing import TYPE_CHECKING, Any

from rmbuild.errors import UsageError
from rmbuild.serve.engine import Engine, EngineStopped, Failed, QueueFull, Request
from rmbuild.serve.metrics import Labels, Metrics
from rmbuild.serve.model import LogicalModel, load_first

if TYPE_CHECKING:
    from artifact_store import Store
    from rmbuild.runtime.session import BackendSession

# Reasons of rmbuild:fallback_total.
LOAD_FAILED = "load_failed"
BACKEND_ERROR = "backend_error"
SWITCH = "switch"


class MoveInProgress(UsageError):
    """A switch was asked while the model is already moving to another candidate."""


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


class ServedModel:
    """One logical model served from the best of its candidates; see the module docstring.

    Use :meth:`start` (it loads the first candidate that loads). ``metrics`` and ``info``
    (the serving session's facts: artifact, target, backend, device, path...) are updated in
    place on every move, so whoever holds them sees the current ones.
    """

    def __init__(
        self,
        model: LogicalModel,
        *,
        store: Store,
        index: int,
        session: BackendSession,
        options: dict[str, Any] | None = None,
        max_running: int = 8,
        max_queue: int = 64,
        metrics: Metrics | None = None,
    ) -> None:
        self.model = model
        self.store = store
        self.options = dict(options or {})
        self.max_running = max_running
        self.max_queue = max_queue
        self.index = index
        self.info: dict[str, Any] = {}
        self._describe(session)
        self.metrics = metrics or Metrics(self._labels())
        self.metrics.labels.__dict__.update(self._labels().__dict__)
        self._lock = threading.RLock()
        self._held: deque[Request] = deque()
        self._moving = False
        self._moved = threading.Condition(self._lock)
        self._stopping = False
        self._ids = itertools.count(1)
        self.dead: BaseException | None = None
        self.moves: list[dict[str, Any]] = []
        self.engine = self._engine(session)

    @classmethod
    def start(
        cls,
        model: LogicalModel,
        *,
        store: Store,
        options: dict[str, Any] | None = None,
        max_running: int = 8,
        max_queue: int = 64,
    ) -> ServedModel:
        """Load the first candidate of ``model`` that loads and serve it; each one skipped
        counts as a ``load_failed`` move to the one that serves."""
        skipped: list[tuple[int, str]] = []
        index, session = load_first(
            model,
            store=store,
            options=options,
            on_failure=lambda i, why: skipped.append((i, why)),
        )
        served = cls(
            model,
            store=store,
            index=index,
            session=session,
            options=options,
            max_running=max_running,
            max_queue=max_queue,
        )
        for i, why in skipped:
            served._count(model.candidates[i].target, LOAD_FAILED, why)
        return served

    # ---- what the application reads ---------------------------------------------------------

    @property
    def session(self) -> BackendSession:
        """The session serving now."""
        return self.engine.session

    @property
    def num_running(self) -> int:
        return self.engine.num_running

    @property
    def num_waiting(self) -> int:
        return self.engine.num_waiting + len(self._held)

    @property
    def healthy(self) -> bool:
        """Serving, or about to serve again: a move in progress holds requests, it does not
        refuse them."""
        if self.dead is not None or self._stopping:
            return False
        return self._moving or self.engine.healthy or self._can_move()

    def status(self) -> dict[str, Any]:
        """What ``/health`` says: which candidate serves, what else could, the moves so far."""
        current = self.model.candidates[self.index]
        return {
            "status": "moving" if self._moving else ("ok" if self.healthy else "unavailable"),
            "model": self.model.name,
            "target": current.target,
            "resource": current.resource,
            "backend": self.info.get("backend"),
            "device": self.info.get("device"),
            "artifact": self.info.get("artifact"),
            "candidates": [
                {
                    "target": c.target,
                    "resource": c.resource,
                    "backend": c.backend,
                    "artifact": c.record.key[:12],
                    "serving": i == self.index,
                    **({"failure": c.failure} if c.failure else {}),
                }
                for i, c in enumerate(self.model.candidates)
            ],
            "moves": self.moves[-16:],
            **({"reason": _first_line(self.dead)} if self.dead is not None else {}),
        }

    def submit(self, request: Request) -> Request:
        """Queue ``request`` on the serving engine, or hold it while the model moves."""
        if request.loop is None:
            request.loop = asyncio.get_running_loop()
        if request.events is None:
            request.events = asyncio.Queue()
        with self._lock:
            if self._stopping:
                raise EngineStopped("the server is shutting down")
            if self.dead is not None:
                raise EngineStopped(_first_line(self.dead))
            if not self._moving:
                try:
                    return self.engine.submit(request)
                except EngineStopped:
                    # Its backend just failed and its failure hook is about to move the model
                    # (it takes this lock first): the request waits for the next candidate.
                    if not (self.engine.dead is not None and self._can_move()):
                        raise
            if len(self._held) >= self.max_queue + self.max_running:
                raise QueueFull(f"{len(self._held)} requests are waiting for the model to move")
            request.id = request.id or f"h{next(self._ids)}"
            self._held.append(request)
            return request

    def stop(self, timeout: float | None = None) -> None:
        """Take no new request, let a move in progress end, then drain the serving engine."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            self._stopping = True
            while self._moving:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    break
                self._moved.wait(left)
        left = None if deadline is None else max(0.0, deadline - time.monotonic())
        self.engine.stop(left)

    def close(self) -> None:
        """Close the serving session (after :meth:`stop`)."""
        self.engine.session.close()

    # ---- moving ----------------------------------------------------------------------------

    def switch(self, what: str) -> dict[str, Any]:
        """Move the live model to the candidate ``what`` names (a target, class, backend or
        artifact id prefix): load it, give it the waiting requests, let the running ones
        finish on the old session, then close that. Returns :meth:`status`.

        Raises UsageError when nothing named ``what`` can run here, MoveInProgress while
        another move runs, and the loader's error when the candidate does not load (the model
        stays where it was)."""
        from rmbuild.loading import load

        with self._lock:
            if self._stopping or self.dead is not None:
                raise EngineStopped(_first_line(self.dead) if self.dead else "shutting down")
            index = self.model.find(what)
            if index == self.index:
                return self.status()
            if self._moving:
                raise MoveInProgress(
                    "the model is moving to another candidate already",
                    hint="retry when /health says status ok",
                )
            self._moving = True
        candidate = self.model.candidates[index]
        try:
            session = load(candidate.record.key, store=self.store, **self.options)
        except BaseException as exc:
            candidate.failure = _first_line(exc)
            with self._lock:
                self._moving = False
                held = self._release_held()
            self._requeue(held)
            raise
        self._install(index, session, SWITCH, "asked")
        return self.status()

    def _can_move(self) -> bool:
        return not self._stopping and self.index + 1 < len(self.model.candidates)

    def _failed(self, engine: Engine, exc: BaseException, pending: list[Request]) -> list[Request]:
        """An engine's backend failed (called in its worker thread): replay what can be,
        move to the next candidate; returns the requests that fail with ``exc``."""
        replay = [r for r in pending if r.replayable and not r.cancelled]
        lost = [r for r in pending if not any(r is p for p in replay)]
        with self._lock:
            if engine is not self.engine:
                # A session left by a switch, finishing its running requests: they go on
                # where the model is now.
                for request in replay:
                    request.rewind()
                self._requeue(replay)
                return lost
            if self._moving:
                # Another request of the same engine failed first and the move is under way
                # (a remote engine's workers fail one by one): these wait for it too.
                for request in replay:
                    request.rewind()
                    self._held.append(request)
                return lost
            if not self._can_move():
                self.dead = exc
                return pending
            self._moving = True
            for request in replay:
                request.rewind()
                self._held.append(request)
        threading.Thread(
            target=self._fall_back,
            args=(exc,),
            name="rmbuild-fallback",
            daemon=True,
        ).start()
        return lost

    def _fall_back(self, exc: BaseException) -> None:
        origin = self.model.candidates[self.index].target
        self.model.candidates[self.index].failure = _first_line(exc)
        reason = _first_line(exc)

        def skipped(i: int, why: str) -> None:
            self._count(self.model.candidates[i].target, LOAD_FAILED, why)

        try:
            index, session = load_first(
                self.model,
                store=self.store,
                options=self.options,
                skip=self.index + 1,
                on_failure=skipped,
            )
        except BaseException as load_exc:  # noqa: BLE001 - the held requests get an end
            with self._lock:
                self.dead = exc
                self._moving = False
                held = self._release_held()
                self._moved.notify_all()
            for request in held:
                self._fail(request, load_exc)
            return
        old = self.engine.session
        self._install(index, session, BACKEND_ERROR, reason, origin=origin)
        old.close()

    def _install(
        self,
        index: int,
        session: BackendSession,
        reason: str,
        why: str,
        origin: str | None = None,
    ) -> None:
        """Make ``session`` (candidate ``index``) serve: its engine takes the requests held
        and those the old engine had not started; the old one drains and closes."""
        engine = self._engine(session)
        with self._lock:
            old = self.engine
            origin = origin or self.model.candidates[self.index].target
            waiting = old.hand_over() if old.dead is None else []
            self.engine = engine
            self.index = index
            self._describe(session)
            self.metrics.labels.__dict__.update(self._labels().__dict__)
            held = self._release_held()
            self._moving = False
            engine.adopt([*waiting, *held])
            self._moved.notify_all()
        self._count(origin, reason, why, to=self.model.candidates[index].target)
        if old.dead is None:
            threading.Thread(
                target=_retire, args=(old,), name="rmbuild-retire", daemon=True
            ).start()

    def _release_held(self) -> list[Request]:
        held = list(self._held)
        self._held.clear()
        return held

    def _requeue(self, requests: list[Request]) -> None:
        """Give ``requests`` to the serving engine (or hold them while the model moves)."""
        if not requests:
            return
        with self._lock:
            if self._moving:
                self._held.extend(requests)
                return
            try:
                self.engine.adopt(requests)
                return
            except EngineStopped as exc:
                error: BaseException = exc
        for request in requests:
            self._fail(request, error)

    def _fail(self, request: Request, exc: BaseException) -> None:
        request.finished_at = time.monotonic()
        request._emit(Failed(exc))
        self.metrics.observe(request, "error")

    def _count(self, origin: str, reason: str, why: str, *, to: str | None = None) -> None:
        """Count one move (``to``: the candidate serving now, by default)."""
        to = to or self.model.candidates[self.index].target
        self.metrics.fallbacks.labels(origin, to, reason).inc()
        self.moves.append(
            {"from": origin, "to": to, "reason": reason, "why": why, "at": round(time.time(), 3)}
        )

    def _engine(self, session: BackendSession) -> Any:
        # A session that is not stepped here (a remote server) brings its own engine.
        make = getattr(session, "serving_engine", None)
        kwargs: dict[str, Any] = {
            "max_running": self.max_running,
            "max_queue": self.max_queue,
            "observer": self.metrics.observe,
        }
        engine = make(**kwargs) if make is not None else Engine(session, **kwargs)
        engine.on_failure = functools.partial(self._failed, engine)
        return engine

    def _describe(self, session: BackendSession) -> None:
        candidate = self.model.candidates[self.index]
        record = candidate.record
        toolchain = record.metadata.get("toolchain") or {}
        self.info.clear()
        self.info.update(
            {
                **session.info,
                "target": record.target,
                "resource": candidate.resource,
                "sdk": dict(toolchain.get("packages") or {}) if isinstance(toolchain, dict) else {},
            }
        )

    def _labels(self) -> Labels:
        record = self.model.candidates[self.index].record
        return Labels(
            model=self.model.name,
            artifact=record.key[:12],
            backend=str(self.info.get("backend", record.backend)),
            device=str(self.info.get("device", "")),
        )


def _retire(engine: Engine) -> None:
    """Let a handed-over engine finish its running requests, then close its session."""
    engine.stop(None)
    # A session that fails to close must not take the thread down with a traceback: it
    # serves nobody any more.
    with contextlib.suppress(Exception):
        engine.session.close()
