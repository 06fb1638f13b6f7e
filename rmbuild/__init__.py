"""rmbuild: a declarative build system and artifact cache for LLM accelerator artifacts.

Python users call :func:`load` to get a session for an artifact id, prefix or alias::

    import rmbuild
    with rmbuild.load("chat-main-cpu") as session:
        print(session.generate("The future of AI is", max_tokens=32))
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from rmbuild.runtime.session import BackendSession


def load(ref: str, **options: Any) -> BackendSession:
    """Resolve an artifact (id, unique prefix or alias), check it fits this machine, load it."""
    from rmbuild.runtime.loader import load as _load

    return _load(ref, **options)


__all__ = ["__version__", "load"]
