"""The runtime loader: artifact reference -> compatible, materialized, loaded session."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rmbuild.errors import StoreCorrupt
from rmbuild.plugins import require_available
from rmbuild.store import open_store, resolve

if TYPE_CHECKING:
    from artifact_store import ArtifactRecord, Store
    from rmbuild.backends.base import BackendPlugin
    from rmbuild.runtime.session import BackendSession


def _check_sizes(store: Store, record: ArtifactRecord, tree: Path) -> None:
    # Cheap guard on every load (a truncated file fails here, not inside a vendor runtime);
    # `rmbuild verify` / verify=True re-hashes everything.
    manifest = store.get_manifest(record.manifest_digest)
    for rel, entry in manifest.files.items():
        path = tree / rel
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            size = -1
        if size != entry.size:
            raise StoreCorrupt(
                f"artifact {record.key[:12]}: {rel} is {size} bytes, the manifest says "
                f"{entry.size}",
                hint="run `rmbuild verify` and rebuild the artifact with `rmbuild compile`",
            )


def prepare(
    ref: str,
    *,
    store: Store,
    verify: bool = False,
    options: dict[str, Any] | None = None,
) -> tuple[ArtifactRecord, Path, BackendPlugin]:
    """Resolve ``ref``, check it is compatible with this machine, materialize it.

    Load-time ``options`` (e.g. ``device``) override the recorded runtime flags for the check,
    so ``--device CPU`` can run an artifact whose profile defaults to an absent NPU.
    """
    record = resolve(store, ref)
    plugin = require_available(record.backend)
    metadata = record.metadata
    if options:
        metadata = {
            **metadata,
            "runtime_flags": {**(metadata.get("runtime_flags") or {}), **options},
        }
    plugin.check_compatible(metadata)
    if verify and (problems := store.verify(record.key)):
        raise StoreCorrupt(
            f"artifact {record.key[:12]} is corrupt",
            context=problems,
            hint="rebuild it with `rmbuild compile`",
        )
    tree = store.materialize(record.key)  # also marks it used, for gc's LRU
    _check_sizes(store, record, tree)
    return record, tree, plugin


def load(
    ref: str, *, store: Store | None = None, verify: bool = False, **options: Any
) -> BackendSession:
    """A ready session for artifact ``ref`` (id, unique prefix or alias).

    Without ``store``, the default store is opened and closed with the session.
    """
    own = store is None
    store = store or open_store()
    try:
        record, tree, plugin = prepare(ref, store=store, verify=verify, options=options)
        session = plugin.create_session(tree, record.metadata, options)
    except BaseException:
        if own:
            store.close()
        raise
    session.info.update(
        {
            "artifact": record.key,
            "model": record.model,
            "target": record.target,
            "path": os.fspath(tree),
        }
    )
    if own:
        session.closers.append(store.close)
    return session
