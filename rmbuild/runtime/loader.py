"""The runtime loader: artifact reference -> compatible, materialized, loaded session."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rmbuild.errors import ArtifactUnloadable, RmbuildError, StoreCorrupt
from rmbuild.plugins import require_available
from rmbuild.store import open_store, resolve

if TYPE_CHECKING:
    from artifact_store import ArtifactRecord, Store
    from artifact_store.store import Pin
    from rmbuild.backends.base import BackendPlugin
    from rmbuild.runtime.session import BackendSession


def _rebuild_hint(record: ArtifactRecord) -> str:
    spec = record.metadata.get("spec_file")
    target = record.metadata.get("target") or record.target
    command = f"rmbuild compile {spec} --target {target}" if spec else "rmbuild compile"
    return f"rebuild it with `{command}` (a corrupt artifact is rebuilt; --rebuild forces it)"


def _check_integrity(store: Store, record: ArtifactRecord, verify: bool) -> None:
    """Refuse a damaged artifact before any backend reads it (issue 6 #8): exit 6.

    Always the store's cheap check (each blob's inode, mtime and size against what was
    recorded at ingest; only a blob that moved is re-hashed); ``verify`` re-hashes every blob.
    Damaged blobs are quarantined and the artifact marked corrupt, so the next compile
    rebuilds it.
    """
    problems = store.check(record, rehash=verify)
    if problems:
        files = [p.path for p in problems if p.path]
        where = f": {', '.join(files)}" if files else ""
        raise StoreCorrupt(
            f"artifact {record.key} is corrupt{where}",
            context=[str(p) for p in problems],
            hint=_rebuild_hint(record),
        )


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
                hint=_rebuild_hint(record),
            )


def prepare(
    ref: str,
    *,
    store: Store,
    verify: bool = False,
    options: dict[str, Any] | None = None,
    pins: list[Pin] | None = None,
) -> tuple[ArtifactRecord, Path, BackendPlugin]:
    """Resolve ``ref``, check it is compatible with this machine, materialize it.

    Load-time ``options`` (e.g. ``device``) override the recorded runtime flags for the check,
    so ``--device CPU`` can run an artifact whose profile defaults to an absent NPU.
    Where ``pins`` is given, the artifact is pinned before it is laid out (gc neither evicts
    it nor removes its tree until the pin is released; issue 6 #9) and the pin appended.
    """
    record = resolve(store, ref)
    # Damage first: it is a fact about the artifact, whatever this machine has installed.
    _check_integrity(store, record, verify)
    plugin = require_available(record.backend)
    metadata = record.metadata
    if options:
        metadata = {
            **metadata,
            "runtime_flags": {**(metadata.get("runtime_flags") or {}), **options},
        }
    plugin.check_compatible(metadata)
    if pins is not None:
        pins.append(store.pin(record.key).acquire())
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
    store = store or open_store(read_only=True)
    # While the session lives, gc neither evicts the artifact nor removes its tree (issue 6
    # #9); the pin is a shared flock, so it dies with the process too.
    pins: list[Pin] = []
    try:
        record, tree, plugin = prepare(ref, store=store, verify=verify, options=options, pins=pins)
        try:
            session = plugin.create_session(tree, record.metadata, options)
        except (RmbuildError, KeyboardInterrupt, MemoryError):
            raise
        except Exception as exc:
            # The vendor runtime refused files that passed the integrity check: say which
            # artifact and what the runtime said, instead of "internal error" (`-v` keeps the
            # traceback for the case where the bug is ours).
            raise ArtifactUnloadable(
                f"the {plugin.name} runtime could not load artifact {record.key[:12]}: "
                f"{type(exc).__name__}: {str(exc).strip()[:600]}",
                context=[f"files: {tree}"],
                hint=f"`rmbuild verify {record.key[:12]}` re-hashes it; `rmbuild compile "
                f"{record.metadata.get('spec_file', 'model.yaml')} --target {record.target} "
                "--rebuild` builds it again",
            ) from exc
    except BaseException:
        for pin in pins:
            pin.release()
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
    session.closers.extend(pin.release for pin in pins)
    if own:
        session.closers.append(store.close)
    return session
