"""The loader: artifact reference -> compatible, materialized, loaded session.

It joins the store, the trust policy and the backend plugins to the runtime, so it lives a floor
above all of them: the runtime (:mod:`rmbuild.runtime`) knows no plugin and no store, and a
backend's runtime builds on it, never the other way round.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rmbuild.errors import (
    ArtifactNotFound,
    ArtifactNotRunnable,
    ArtifactUnloadable,
    RmbuildError,
    StoreCorrupt,
)
from rmbuild.plugins import require_available
from rmbuild.storage.store import open_store, resolve

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
    """Refuse a damaged artifact before any backend reads it: exit 6.

    Always the store's cheap check (each blob's inode, mtime and size against what was
    recorded at ingest; only a blob that moved is re-hashed); ``verify`` re-hashes every blob.
    Damaged blobs are quarantined and the artifact marked corrupt in this store, so the next
    compile rebuilds it. An artifact of a shared index whose files this store never held is
    not corrupt but not here: exit 5, saying how to get it.
    """
    problems = store.check(record, rehash=verify)
    if problems and problems[0].absent:
        spec = record.metadata.get("spec_file")
        target = record.metadata.get("target") or record.target
        build = f"rmbuild compile {spec} --target {target}" if spec else "rmbuild compile"
        raise ArtifactNotFound(
            f"artifact {record.key[:12]} is in the index, but its files are not in this store "
            "(another store sharing the index built it)",
            hint=f"`rmbuild pull {record.key[:12]} --remote URL` fetches it, or `{build}` "
            "builds it here",
        )
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


def _check_runnable(record: ArtifactRecord) -> None:
    """Refuse an internal artifact (a compiler's cache) before its backend takes it for a
    model and complains about missing model files."""
    from rmbuild.build.compcache import KIND

    if record.target == KIND or record.metadata.get("kind") == KIND:
        raise ArtifactNotRunnable(
            f"artifact {record.key[:12]} ({record.model}) is an internal compiler-cache "
            f"artifact, not runnable: the {record.backend} compiler's cache, kept in the store "
            "to speed up later builds",
            hint="run a model's artifact instead: `rmbuild ls` lists them (internal ones only "
            "with `--all`)",
        )


def prepare(
    ref: str,
    *,
    store: Store,
    verify: bool = False,
    options: dict[str, Any] | None = None,
    pins: list[Pin] | None = None,
    trust: str | None = None,
) -> tuple[ArtifactRecord, Path, BackendPlugin]:
    """Resolve ``ref``, check it is compatible with this machine, materialize it.

    Load-time ``options`` (e.g. ``device``) override the recorded runtime flags for the check,
    so ``--device CPU`` can run an artifact whose profile defaults to an absent NPU.
    Where ``pins`` is given, the artifact is pinned before it is laid out (gc neither evicts
    it nor removes its tree until the pin is released) and the pin appended.
    Under a trust policy (``trust``: ``--trust``'s value; else ``RMBUILD_TRUST`` or the config
    files, see :mod:`rmbuild.trust.policy`) an artifact without a signature that holds is
    refused (exit 6) before its backend is imported or any file is laid out.
    """
    record = resolve(store, ref)
    _check_runnable(record)
    # Damage first: it is a fact about the artifact, whatever this machine has installed.
    _check_integrity(store, record, verify)
    # The trust policy, on files the integrity check just tied to the manifest it compares.
    from rmbuild.trust.policy import check_loadable

    check_loadable(store, record, trust)
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
    ref: str,
    *,
    store: Store | str | os.PathLike[str] | None = None,
    verify: bool = False,
    max_model_len: int | None = None,
    trust: str | None = None,
    **options: Any,
) -> BackendSession:
    """A ready session for artifact ``ref`` (id, unique prefix or alias).

    ``store`` is a Store, or the folder of one (str or Path), opened read-only and closed with
    the session; without it, the default store. ``max_model_len`` lowers the session's context
    limit, or raises the model's declared one where its positions allow it (see
    :mod:`rmbuild.runtime.limits`). ``options`` are the backend's runtime options (``device``,
    ...), which override the profile's runtime flags. ``trust`` is a trust policy
    (``"signed-by:KEY.pub"``, ``"none"``; default: ``RMBUILD_TRUST`` or the config files).
    """
    own = store is None or isinstance(store, str | os.PathLike)
    store = open_store(store, read_only=True) if own else store  # type: ignore[arg-type]
    # While the session lives, gc neither evicts the artifact nor removes its tree; the pin is
    # a shared flock, so it dies with the process too.
    pins: list[Pin] = []
    session: BackendSession | None = None
    try:
        record, tree, plugin = prepare(
            ref, store=store, verify=verify, options=options, pins=pins, trust=trust
        )
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
        # What every request is checked against before the backend runs: the context limit
        # (declared by config.json, compiled into the artifact) and the BOS an empty prompt
        # starts from.
        from rmbuild.runtime import limits
        from rmbuild.runtime.session import bos_id, read_json

        session.context_limit = limits.for_artifact(
            read_json(tree / "config.json"), record.metadata, session.step_fn, max_model_len
        )
        session.bos_token_id = bos_id(tree)
    except BaseException:
        if session is not None:
            session.close()
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
            "max_model_len": session.max_model_len,
        }
    )
    session.closers.extend(pin.release for pin in pins)
    if own:
        session.closers.append(store.close)
    return session
