"""rmbuild's view of the artifact store: opening it and turning its errors into ours."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from rmbuild.config import index_url, store_root
from rmbuild.errors import AmbiguousArtifact, ArtifactNotFound

if TYPE_CHECKING:
    from artifact_store import ArtifactRecord, Store


def open_store(root: str | os.PathLike | None = None, url: str | None = None) -> Store:
    """The store at ``--store``/``$RMBUILD_STORE``/the user cache dir."""
    from artifact_store import Store

    return Store(store_root(root), index_url(url))


def describe(record: ArtifactRecord) -> str:
    """One line naming an artifact, for candidate lists."""
    profile = record.metadata.get("profile", "?")
    return (f"{record.key[:12]}  {record.model}  {record.target}  {profile}  "
            f"{record.created_at:%Y-%m-%d %H:%M}")


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
