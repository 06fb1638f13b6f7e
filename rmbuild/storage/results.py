"""Keys without the bytes: a stage's key needs its upstream's output digest, not its files.

A downstream stage's action key is computed from the manifest digest of its upstream's output
(:func:`rmbuild.planning.stages.action_key`), so the key of a final artifact can be known from each
upstream stage's *action result* (key -> manifest digest, :mod:`artifact_store.results`)
without any of their files, the way Bazel builds "without the bytes". :func:`rmbuild.build.build`
keys a chain through these results and fetches or builds an upstream stage's files only when a
stage after it must actually be built; the plan (:mod:`rmbuild.planning.plan`) keys it the same way.

This module is the rmbuild side of it: where a result is found (the store's index, else the
remote, remembered locally), and the result a build records for what it made.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from artifact_store import Store
    from artifact_store.remote import Remote


def known_output(
    store: Store,
    remote: Remote | None,
    key: str,
    note: Callable[[str], None] | None = None,
    *,
    keep: bool = True,
) -> str | None:
    """The manifest digest ``key`` produced, from this store's index or else the remote's
    entry or result (then remembered here, unless ``keep`` is False: a plan writes nothing);
    None if neither knows it.

    A remote that cannot be read is a note, not an error: the stage is then built (or pulled)
    as if no result existed, which is what a cache must fall back to.
    """
    found = store.result(key)
    if found is not None:
        return found.manifest_digest
    if remote is None:
        return None
    from artifact_store.errors import RemoteError
    from artifact_store.results import remote_result

    try:
        found = remote_result(remote, key)
    except RemoteError as exc:
        if note is not None:
            note(f"{exc}; its result is unknown here")
        return None
    if found is None:
        return None
    if keep:
        _best_effort(lambda: store.record_results([found]))
    return found.manifest_digest


def on_remote(remote: Remote | None, key: str) -> bool:
    """Whether ``remote`` holds ``key``'s files (its entry); False when it cannot be read (the
    pull that follows says why)."""
    if remote is None:
        return False
    from artifact_store.errors import RemoteError

    try:
        return remote.get(key) is not None
    except RemoteError:
        return False


def remember(store: Store, key: str, manifest_digest: str, parents: list[str], *, replace: bool):
    """Record what a build of ``key`` produced (``replace``: a forced rebuild re-points it).

    Best effort: the artifact row says the same while it lives; this row is what outlives it
    (eviction) and what a store that pulls only a downstream artifact receives.
    """
    from artifact_store.results import ActionResult

    result = ActionResult(key, manifest_digest, tuple(parents))
    _best_effort(lambda: store.record_results([result], replace=replace))


def _best_effort(fn: Callable[[], Any]) -> None:
    # A cache of a fact that is found again (index row, remote) when missing: a full disk or a
    # read-only index must not fail a build for it.
    with contextlib.suppress(Exception):
        fn()
