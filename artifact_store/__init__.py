"""artifact_store: a content-addressed store of build artifacts with an SQL action cache.

Standalone (imports nothing from rmbuild). ``Store`` is imported lazily so that importing
this package does not pull in SQLAlchemy until a store is actually opened.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from artifact_store.errors import (
    AmbiguousRef,
    ArtifactCorrupt,
    ArtifactNotFound,
    CorruptManifest,
    CorruptObject,
    DestinationExists,
    DiskFull,
    IndexUnreachable,
    InvalidAlias,
    InvalidArgument,
    LockTimeout,
    RemoteAuthError,
    RemoteCorrupt,
    RemoteError,
    StoreError,
    StoreUnavailable,
    UnsafeTree,
)
from artifact_store.failures import FailureRecord
from artifact_store.hashing import HASH_VERSION
from artifact_store.records import ArtifactRecord, FileEntry, GcReport, Manifest

if TYPE_CHECKING:
    from artifact_store.remote import Remote
    from artifact_store.store import Store

__all__ = [
    "HASH_VERSION",
    "AmbiguousRef",
    "ArtifactCorrupt",
    "ArtifactNotFound",
    "ArtifactRecord",
    "CorruptManifest",
    "CorruptObject",
    "DestinationExists",
    "DiskFull",
    "FailureRecord",
    "FileEntry",
    "GcReport",
    "IndexUnreachable",
    "InvalidAlias",
    "InvalidArgument",
    "LockTimeout",
    "Manifest",
    "Remote",
    "RemoteAuthError",
    "RemoteCorrupt",
    "RemoteError",
    "Store",
    "StoreError",
    "StoreUnavailable",
    "UnsafeTree",
]


def __getattr__(name: str) -> Any:
    if name == "Store":
        from artifact_store.store import Store

        return Store
    if name == "Remote":  # imports no fsspec until a remote is opened
        from artifact_store.remote import Remote

        return Remote
    raise AttributeError(f"module 'artifact_store' has no attribute {name!r}")
