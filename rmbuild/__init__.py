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

from rmbuild.runtime.sampling import SamplingParams

__version__ = "0.1.0"

if TYPE_CHECKING:
    from artifact_store import Store
    from rmbuild.runtime.session import BackendSession


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
            them).
        store: the store to read: a :class:`artifact_store.Store`, or its folder as a
            ``str`` or ``pathlib.Path`` (opened read-only and closed with the session).
            Default: ``$RMBUILD_STORE``, else the user cache dir, as for the CLI.
        verify: re-hash every file of the artifact before loading (the default check
            compares each file's inode, mtime and size with what was recorded at build time).
        device: run on this device instead of the profile's (``CPU``, ``GPU``, ``NPU``...),
            like ``rmbuild run --device``.
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
    from rmbuild.runtime.loader import load as _load

    if device:
        options["device"] = device
    return _load(
        ref, store=store, verify=verify, max_model_len=max_model_len, trust=trust, **options
    )


__all__ = ["SamplingParams", "__version__", "load"]
