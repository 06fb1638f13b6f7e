"""A logical model in-process: what ``rmbuild.load("chat-main")`` returns.

The model's candidates are resolved and ordered as ``rmbuild serve`` does
(:func:`rmbuild.serve.model.resolve_model`): the first that loads serves, a backend that fails
mid-request moves the model to the next candidate (a ``generate`` is run again there, a
``stream`` too while it has yielded nothing; a stream already yielding raises), and
:meth:`ModelSession.switch` moves it on request. Everything else (``tokenizer``,
``max_model_len``, ``last_stats``, ``info``...) is the serving session's.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from rmbuild.errors import (
    ArtifactInputMismatch,
    ContextTooLong,
    InvalidPrompt,
    RmbuildError,
    SessionClosed,
)
from rmbuild.serve.model import LogicalModel, load_first

if TYPE_CHECKING:
    from artifact_store import Store

# The caller's mistakes: the same on every candidate, so never a reason to move.
_CALLER_ERRORS = (ArtifactInputMismatch, ContextTooLong, InvalidPrompt, SessionClosed, ValueError)


class ModelSession:
    """A logical model's serving session, with fallback and :meth:`switch`; see the module
    docstring. Use as a context manager or call :meth:`close`."""

    def __init__(
        self,
        model: LogicalModel,
        *,
        store: Store,
        options: dict[str, Any] | None = None,
        own_store: bool = False,
    ) -> None:
        self.model = model
        self.store = store
        self.options = dict(options or {})
        self._own_store = own_store
        self.moves: list[dict[str, str]] = []
        skipped: list[int] = []
        self.index, self.session = load_first(
            model, store=store, options=self.options, on_failure=lambda i, _why: skipped.append(i)
        )
        for i in skipped:
            self._note(i, self.index, "load_failed")

    # ---- what the serving session is -------------------------------------------------------

    @property
    def target(self) -> str:
        """The target whose artifact serves now."""
        return self.model.candidates[self.index].target

    @property
    def candidates(self) -> list[str]:
        """The targets that could serve here, best first."""
        return [c.target for c in self.model.candidates]

    def __getattr__(self, name: str) -> Any:
        # tokenizer, max_model_len, last_stats, info, generate_ids...: the serving session's.
        if name.startswith("__") or name in {"session", "model"}:
            raise AttributeError(name)
        return getattr(self.session, name)

    # ---- generating, with fallback ---------------------------------------------------------

    def generate(self, prompt: str, max_tokens: int = 32, *args: Any, **kwargs: Any) -> str:
        """The session's ``generate``; a backend failure runs it again on the next candidate."""
        while True:
            try:
                return self.session.generate(prompt, max_tokens, *args, **kwargs)
            except _CALLER_ERRORS:
                raise
            except Exception as exc:  # noqa: BLE001 - the device failed: the next one
                self._fall_back(exc)

    def stream(self, prompt: str, max_tokens: int = 32, *args: Any, **kwargs: Any) -> Iterator[str]:
        """The session's ``stream``; a backend failure before the first piece starts it again
        on the next candidate, one after it raises (the caller has the pieces)."""
        while True:
            try:
                pieces = self.session.stream(prompt, max_tokens, *args, **kwargs)
                first = next(pieces, None)
            except _CALLER_ERRORS:
                raise
            except Exception as exc:  # noqa: BLE001 - the device failed: the next one
                self._fall_back(exc)
                continue
            return self._rest(first, pieces)

    @staticmethod
    def _rest(first: str | None, pieces: Iterator[str]) -> Iterator[str]:
        if first is None:
            return
        yield first
        yield from pieces

    # ---- moving ----------------------------------------------------------------------------

    def switch(self, what: str) -> None:
        """Serve from the candidate ``what`` names (a target, a device class such as "cpu",
        a backend, an artifact id prefix) from now on; UsageError when none can run here.
        The old session is closed once the new one loaded (a failed load leaves it serving)."""
        from rmbuild.loading import load

        index = self.model.find(what)
        if index == self.index:
            return
        session = load(self.model.candidates[index].record.key, store=self.store, **self.options)
        old, origin = self.session, self.index
        self.session, self.index = session, index
        self._note(origin, index, "switch")
        old.close()

    def _fall_back(self, exc: BaseException) -> None:
        failed = self.model.candidates[self.index]
        failed.failure = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        if self.index + 1 >= len(self.model.candidates):
            raise exc
        origin = self.index
        old = self.session
        skipped: list[int] = []
        try:
            self.index, self.session = load_first(
                self.model,
                store=self.store,
                options=self.options,
                skip=self.index + 1,
                on_failure=lambda i, _why: skipped.append(i),
            )
        except RmbuildError:
            raise exc from None
        finally:
            old.close()
        for i in [origin, *skipped]:
            self._note(i, self.index, "load_failed" if i != origin else "backend_error")

    def _note(self, origin: int, to: int, reason: str) -> None:
        self.moves.append(
            {
                "from": self.model.candidates[origin].target,
                "to": self.model.candidates[to].target,
                "reason": reason,
            }
        )

    # ---- closing ---------------------------------------------------------------------------

    def close(self) -> None:
        """Close the serving session (and the store, where ``load`` opened it)."""
        self.session.close()
        if self._own_store:
            self._own_store = False
            self.store.close()

    def __enter__(self) -> ModelSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def load_model(
    ref: str,
    *,
    store: Store | None,
    own_store: bool,
    device: str | None = None,
    options: dict[str, Any] | None = None,
) -> ModelSession:
    """``rmbuild.load`` for a model.yaml or a model name: the logical model's session.

    ``device`` "auto" (or None) lets the policy choose; a target name, a class (npu, gpu,
    cpu, remote) or a backend pins the candidates to it; any other value (``GPU.1``) is the
    backend's runtime device, as for ``rmbuild run --device``."""
    from rmbuild.serve.model import resolve_model

    assert store is not None
    try:
        model = resolve_model(store, ref)
        options = dict(options or {})
        if device and device.lower() != "auto":
            if any(c.matches(device) for c in model.candidates):
                model.pin(device)
            else:
                options["device"] = device
        return ModelSession(model, store=store, options=options, own_store=own_store)
    except BaseException:
        if own_store:
            store.close()
        raise


__all__ = ["ModelSession", "load_model"]
