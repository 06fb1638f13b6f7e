"""rmbuild: a declarative build system and artifact cache for LLM accelerator artifacts.

Python users call :func:`load` to get a session for an artifact id, prefix or alias::

    import rmbuild
    with rmbuild.load("chat-main-cpu") as session:
        print(session.generate("The future of AI is", max_tokens=32))
        for piece in session.stream("Once upon a time", 64, temperature=0.8, seed=1):
            print(piece, end="")
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from rmbuild.version import __version__

if TYPE_CHECKING:
    from artifact_store import Store
    from rmbuild.runtime.sampling import SamplingParams
    from rmbuild.runtime.session import BackendSession


def __getattr__(name: str) -> Any:
    # ``rmbuild.SamplingParams`` without importing dataclasses and the sampler on every
    # command's start-up (every CLI invocation imports this package).
    if name == "SamplingParams":
        from rmbuild.runtime.sampling import SamplingParams

        return SamplingParams
    raise AttributeError(f"module 'rmbuild' has no attribute {name!r}")


def load(
    ref: str,
    *,
    store: Store | str | os.PathLike[str] | None = None,
    verify: bool = False,
    device: str | None = None,
    max_model_len: int | None = None,
    trust: str | None = None,
    **options: Any,
) -> BackendSession:
    """Resolve an artifact, check that it fits this machine, load it and return a session.

    Args:
        ref: the artifact's id, a unique prefix of it, or an alias (``rmbuild ls`` lists
            them); or a logical model: a model.yaml or a model name. A logical model is
            served from the best of its stored artifacts that loads here, in the serving
            policy's order (model.yaml's ``serve.order``, default NPU, GPU, CPU, remote), as
            ``rmbuild serve`` does; the session returned falls back to the next candidate
            when its backend fails, and ``session.switch("cpu")`` moves it on request
            (:class:`rmbuild.serve.session.ModelSession`).
        store: the store to read: a :class:`artifact_store.Store`, or its folder as a
            ``str`` or ``pathlib.Path`` (opened read-only and closed with the session).
            Default: ``$RMBUILD_STORE``, else the user cache dir, as for the CLI.
        verify: re-hash every file of the artifact before loading (the default check
            compares each file's inode, mtime and size with what was recorded at build time).
        device: run on this device instead of the profile's (``CPU``, ``GPU``, ``NPU``...),
            like ``rmbuild run --device``. For a logical model: ``"auto"`` (or None) lets the
            policy choose; a target name, a class (``cpu``, ``gpu``, ``npu``, ``remote``) or
            a backend pins it to those candidates.
        max_model_len: the context limit, prompt and generated tokens together (like
            ``rmbuild run --max-model-len``). Default: the model's declared maximum
            (config.json) or the artifact's compiled one, whichever is smaller. A smaller
            value lowers it; a larger one is accepted only for a model that computes its
            positions (rotary, ALiBi), and never past the compiled limit.
        trust: a trust policy, like ``rmbuild run --trust``: ``"signed-by:KEY.pub"`` refuses
            an artifact without a signature by that key that holds (exit 6, before any file
            reaches the runtime); ``"none"`` turns a configured one off. Default:
            ``RMBUILD_TRUST``, else ``trust`` in ``rmbuild.toml`` / ``config.toml``.
        **options: the backend's runtime options, overriding the profile's runtime flags
            (e.g. ``intra_op_threads`` and ``providers`` for ONNX Runtime,
            ``inference_precision`` and ``num_threads`` for OpenVINO, ``pad_past`` for IREE).

    Returns:
        A :class:`rmbuild.runtime.session.BackendSession`: ``generate(prompt, max_tokens,
        params=None, *, temperature, top_p, seed, stop)`` returns the new text (``params``:
        a :class:`rmbuild.SamplingParams`, a keyword replacing its field), ``stream`` (same
        arguments) yields it piece by piece, ``max_model_len`` is the context limit,
        ``last_stats`` the last request's token counts and timings. Close it (or use it as a
        context manager); a closed session raises ``SessionClosed``.

    Raises:
        rmbuild.errors.ArtifactNotFound: no artifact matches ``ref`` (CLI exit 5).
        rmbuild.errors.IncompatibleArtifact: it cannot run here, is damaged, or
            ``max_model_len`` cannot be had (exit 6).
        rmbuild.errors.BackendUnavailable: its backend is not installed (exit 7).
    """
    from rmbuild.errors import ArtifactNotFound
    from rmbuild.loading import load as _load

    logical = dict(options, trust=trust) if trust is not None else dict(options)
    if ref.endswith((".yaml", ".yml")) and os.path.isfile(ref):
        return _load_logical(
            ref, store=store, verify=verify, device=device, max_model_len=max_model_len, **logical
        )
    if device:
        options["device"] = device
    try:
        return _load(
            ref, store=store, verify=verify, max_model_len=max_model_len, trust=trust, **options
        )
    except ArtifactNotFound:
        # No artifact's id, prefix or alias (those keep meaning one artifact): a model name?
        if ":" in ref or not _model_name(ref, store):
            raise
    return _load_logical(
        ref, store=store, verify=verify, device=device, max_model_len=max_model_len, **logical
    )


def _model_name(ref: str, store: Store | str | os.PathLike[str] | None) -> bool:
    """Whether the store holds artifacts of a model named ``ref``."""
    from rmbuild.storage.store import open_store

    own = store is None or isinstance(store, str | os.PathLike)
    opened = open_store(store, read_only=True) if own else store  # type: ignore[arg-type]
    try:
        return bool(opened.list(model=ref))  # type: ignore[union-attr]
    finally:
        if own:
            opened.close()  # type: ignore[union-attr]


def _load_logical(
    ref: str,
    *,
    store: Store | str | os.PathLike[str] | None,
    verify: bool,
    device: str | None,
    max_model_len: int | None,
    **options: Any,
) -> Any:
    from rmbuild.serve.session import load_model
    from rmbuild.storage.store import open_store

    own = store is None or isinstance(store, str | os.PathLike)
    opened = open_store(store, read_only=True) if own else store  # type: ignore[arg-type]
    if max_model_len is not None:
        options["max_model_len"] = max_model_len
    return load_model(
        ref,
        store=opened,  # type: ignore[arg-type]
        own_store=own,
        device=device,
        options={**options, "verify": verify},
    )


__all__ = ["SamplingParams", "__version__", "load"]
