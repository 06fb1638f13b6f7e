"""rmbuild's view of the artifact store: opening it and turning its errors into ours."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from rmbuild.config import index_url, store_root
from rmbuild.errors import (
    AmbiguousArtifact,
    ArtifactNotFound,
    BuildLockTimeout,
    InvalidName,
    RmbuildError,
    StoreCorrupt,
    StoreUnavailable,
)

if TYPE_CHECKING:
    from artifact_store import ArtifactRecord, Store


def open_store(root: str | os.PathLike | None = None, url: str | None = None) -> Store:
    """The store at ``--store``/``$RMBUILD_STORE``/the user cache dir."""
    from artifact_store import Store, StoreError

    try:
        return Store(store_root(root), index_url(url))
    except StoreError as exc:
        raise translate(exc) from None  # type: ignore[misc]


def describe(record: ArtifactRecord) -> str:
    """One line naming an artifact, for candidate lists."""
    profile = record.metadata.get("profile", "?")
    return (
        f"{record.key[:12]}  {record.model}  {record.target}  {profile}  "
        f"{record.created_at:%Y-%m-%d %H:%M}"
    )


def resolve(store: Store, ref: str) -> ArtifactRecord:
    """Artifact by full id, unique prefix or alias; errors list what exists."""
    import artifact_store

    try:
        return store.resolve(ref)
    except artifact_store.AmbiguousRef as exc:
        raise AmbiguousArtifact(
            f"artifact id {ref!r} is ambiguous: {len(exc.candidates)} artifacts start with it",
            context=[describe(c) for c in exc.candidates],
            hint="give more characters of the id",
        ) from None
    except artifact_store.ArtifactNotFound as exc:
        raise ArtifactNotFound(
            str(exc),
            hint="`rmbuild ls` lists the artifacts in this store (ids, prefixes and aliases work)",
        ) from None


def translate(exc: Exception) -> RmbuildError | None:
    """artifact_store's error as the rmbuild error a user should see, or None if not one."""
    import artifact_store as st

    if not isinstance(exc, st.StoreError):
        return None
    message = str(exc)
    if isinstance(exc, st.InvalidAlias):
        return InvalidName(
            message,
            hint="aliases are letters, digits, '.', '_' and '-', and "
            "not all-hex (that would read as an id prefix)",
        )
    if isinstance(exc, st.ArtifactNotFound):
        return ArtifactNotFound(message, hint="`rmbuild ls` lists the artifacts and aliases")
    if isinstance(exc, st.LockTimeout):
        return BuildLockTimeout(
            message, hint="another process is still building this key; try again when it is done"
        )
    if isinstance(exc, st.StoreUnavailable):
        return StoreUnavailable(
            message, hint="check --store / RMBUILD_STORE and --index-url / RMBUILD_INDEX_URL"
        )
    if isinstance(exc, st.CorruptObject | st.CorruptManifest):
        return StoreCorrupt(
            f"artifact store: {message}",
            hint="run `rmbuild verify`, rebuild with `rmbuild compile`",
        )
    return StoreUnavailable(
        f"artifact store: {message}",
        hint="check the store folder (--store) and run `rmbuild verify`",
    )
