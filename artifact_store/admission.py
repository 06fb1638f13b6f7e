"""The end of every remote's pull, whatever the transport (fsspec, OCI): once each blob arrived
and matched its digest, the caller's check sees the artifact, then it enters the store whole,
then the remote's names for it join the local index."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from artifact_store import attachments, transfer
from artifact_store.entries import RemoteEntry
from artifact_store.errors import AmbiguousRef, ArtifactNotFound, InvalidAlias
from artifact_store.records import ArtifactRecord, Manifest

if TYPE_CHECKING:
    from artifact_store.store import Store

# A pull's admission check (e.g. a trust policy): given the entry, its verified manifest and the
# attachments about that content (the store's and the remote's), it raises to refuse.
Admit = Callable[[RemoteEntry, Manifest, list[Any]], None]


def admit_pulled(
    store: Store,
    entry: RemoteEntry,
    manifest: Manifest,
    fetched: list[tuple[str, Path]],
    found: list[Any],
    admit: Admit | None,
) -> ArtifactRecord:
    """The end of every remote's pull, once each blob arrived and matched its digest: the
    caller's check (``admit``, e.g. a trust policy) sees the artifact with its attachments, and
    only then does anything enter ``objects/`` and the index."""
    if admit is not None:
        held = {a.name: a for a in attachments.local(store, manifest.digest)}
        held.update((a.name, a) for a in found)
        admit(entry, manifest, list(held.values()))
    for digest, path in fetched:
        transfer.install(path, store.blob_path(digest))
    record = store.commit(
        entry.key,
        manifest,
        model=entry.model,
        target=entry.target,
        backend=entry.backend,
        metadata=entry.metadata,
        # The index row (maybe another store's, a shared index) stays; commit keeps what was
        # pulled as this store's copy where the row names other bytes (a tool whose output
        # differs from run to run).
        replace=False,
    )
    attachments.put_all(store, found)
    return record


def adopt_names(
    store: Store, entry: RemoteEntry, record: ArtifactRecord, aliases: Iterable[str]
) -> None:
    """The pulled artifact's uses and the remote's aliases for it, in the local index; an
    alias this store gives another artifact stays that artifact's."""
    for model, target in entry.uses:
        if (model, target) not in record.uses:
            store.add_use(entry.key, model, target)
    for alias in sorted(set(aliases) - set(record.aliases)):
        try:
            held = store.resolve(alias)
        except (ArtifactNotFound, AmbiguousRef):
            held = None
        if held is None or alias not in held.aliases:
            with contextlib.suppress(InvalidAlias):  # a name this store cannot hold
                store.tag(alias, entry.key)


def admit_held(
    store: Store, entry: RemoteEntry, local: ArtifactRecord, found: list[Any], admit: Admit | None
) -> None:
    """A pull of an artifact this store already holds intact: only the remote's attachments
    (``found``) are new, and the caller's check still sees the artifact."""
    attachments.put_all(store, found)
    if admit is not None:
        held = attachments.local(store, local.manifest_digest)
        admit(entry, store.get_manifest(local.manifest_digest), held)


def blobs_to_fetch(
    store: Store, entry: RemoteEntry, manifest: Manifest
) -> tuple[dict[str, int | None], list[str]]:
    """Every blob of the artifact with its size where the manifest gives it (the entry's own
    blobs, e.g. its log, have none), and those this store lacks."""
    sizes: dict[str, int | None] = {e.digest: e.size for e in manifest.files.values()}
    for digest in entry.blobs:
        sizes.setdefault(digest, None)
    return sizes, [d for d in sizes if not store.has_blob(d)]
