"""SIGTERM handled like Ctrl-C.

CI runners and systemd cancel with SIGTERM. By default it killed rmbuild on the spot: no
cleanup, the tool tree left running. Here it becomes an exception raised in the main thread, so
the same unwinding as for Ctrl-C runs: the adapter stops the tool's supervisor (which kills the
whole tree), build dirs are removed, key locks released, no index row is written, and
``rmbuild.cli.main`` exits with 143 (EXIT_TERMINATED).
"""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
from collections.abc import Iterator
from types import FrameType


class Terminated(BaseException):
    """SIGTERM arrived. A BaseException, like KeyboardInterrupt: ``except Exception`` blocks
    must not swallow a cancel."""


def _ignore(signum: int, frame: FrameType | None) -> None:
    pass  # a second SIGTERM must not interrupt the cleanup the first one started


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    signal.signal(signal.SIGTERM, _ignore)
    # `compile -j` workers are our multiprocessing children: they get the signal too, and their
    # tools' supervisors kill the trees when they die (instead of the pool waiting for them).
    mp = sys.modules.get("multiprocessing")
    if mp is not None:
        for child in mp.active_children():
            child.terminate()
    raise Terminated()


@contextlib.contextmanager
def sigterm_raises() -> Iterator[None]:
    """While inside, SIGTERM raises :class:`Terminated` in the main thread."""
    if threading.current_thread() is not threading.main_thread():
        yield  # only the main thread may set handlers (e.g. main() called from a worker)
        return
    previous = signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
