"""What a remote holds per action key, and how a remote is named in messages.

An entry is the artifact's index row as canonical JSON (``entries/<key>.json`` on the remote):
the key, its manifest's digest, what it was built for, its metadata. :func:`redact_url` and
:func:`scrub` keep credentials out of every message about a remote.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import urlsplit

from artifact_store.errors import AmbiguousRef, ArtifactNotFound, RemoteCorrupt
from artifact_store.hashing import is_digest
from artifact_store.names import HEX_RE, MIN_PREFIX, NAME_RE
from artifact_store.records import ArtifactRecord, canonical_json

ENTRY_VERSION = 1
# Environment variables that hold secrets: their values are scrubbed from every message.
SECRET_ENV = (
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AZURE_STORAGE_KEY",
    "AZURE_STORAGE_ACCOUNT_KEY",
    "AZURE_STORAGE_SAS_TOKEN",
    "AZURE_STORAGE_CONNECTION_STRING",
    "AZURE_CLIENT_SECRET",
    "GOOGLE_OAUTH_ACCESS_TOKEN",
)


def redact_url(url: str) -> str:
    """``url`` without user info, query or fragment: what messages and logs may show."""
    if "::" in url:  # a chained URL (simplecache::s3://...): each link on its own
        return "::".join(redact_url(link) for link in url.split("::"))
    parts = urlsplit(url)
    if not parts.scheme or len(parts.scheme) == 1:  # a plain path (or a Windows drive)
        return url
    netloc = parts.netloc.rsplit("@", 1)[-1]
    return f"{parts.scheme}://{netloc}{parts.path}"


def scrub(text: str, secrets: Iterable[str] = ()) -> str:
    """``text`` with known secret values (the env's, and ``secrets``) replaced by ``***``."""
    values = [os.environ.get(name, "") for name in SECRET_ENV] + list(secrets)
    for value in sorted({v for v in values if v and len(v) >= 4}, key=len, reverse=True):
        text = text.replace(value, "***")
    # Presigned-URL style credentials an SDK may echo back.
    return re.sub(r"(?i)(signature|x-amz-security-token|sig|token)=[^&\s]+", r"\1=***", text)


@dataclass(frozen=True)
class RemoteEntry:
    """An artifact as the remote holds it: the index row, without local bookkeeping."""

    key: str
    manifest_digest: str
    model: str
    target: str
    backend: str
    size: int
    created_at: str
    metadata: dict[str, Any] = field(default_factory=dict)
    uses: tuple[tuple[str, str], ...] = ()
    aliases: tuple[str, ...] = ()

    __hash__ = None  # type: ignore[assignment]

    @classmethod
    def of(cls, record: ArtifactRecord) -> RemoteEntry:
        return cls(
            key=record.key,
            manifest_digest=record.manifest_digest,
            model=record.model,
            target=record.target,
            backend=record.backend,
            size=record.size,
            created_at=record.created_at.isoformat(),
            metadata=dict(record.metadata),
            uses=tuple(record.uses),
            aliases=tuple(record.aliases),
        )

    @property
    def blobs(self) -> list[str]:
        """Blobs the metadata names (e.g. the build log), beyond the manifest's files."""
        blobs = self.metadata.get("blobs", [])
        return [d for d in blobs if isinstance(d, str) and is_digest(d)]

    def to_json(self) -> bytes:
        doc = {
            "version": ENTRY_VERSION,
            "key": self.key,
            "manifest_digest": self.manifest_digest,
            "model": self.model,
            "target": self.target,
            "backend": self.backend,
            "size": self.size,
            "created_at": self.created_at,
            "metadata": self.metadata,
            "uses": [list(u) for u in self.uses],
            "aliases": list(self.aliases),
        }
        return canonical_json(doc)

    @classmethod
    def from_json(cls, data: bytes, remote: str, key: str | None = None) -> RemoteEntry:
        import json

        try:
            doc = json.loads(data)
            if doc.get("version") != ENTRY_VERSION:
                raise ValueError(f"entry version {doc.get('version')!r}")
            entry = cls(
                key=str(doc["key"]),
                manifest_digest=str(doc["manifest_digest"]),
                model=str(doc["model"]),
                target=str(doc["target"]),
                backend=str(doc["backend"]),
                size=int(doc["size"]),
                created_at=str(doc["created_at"]),
                metadata=dict(doc.get("metadata") or {}),
                uses=tuple((str(m), str(t)) for m, t in doc.get("uses", [])),
                aliases=tuple(str(a) for a in doc.get("aliases", [])),
            )
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            raise RemoteCorrupt(remote, f"entry {key or '?'} is not valid ({exc})") from None
        if not NAME_RE.fullmatch(entry.key) or (key is not None and entry.key != key):
            raise RemoteCorrupt(remote, f"entry {key} names another key {entry.key[:40]!r}")
        if not is_digest(entry.manifest_digest):
            raise RemoteCorrupt(remote, f"entry {entry.key} has a malformed manifest digest")
        return entry

    def to_record(self) -> ArtifactRecord:
        """As an :class:`ArtifactRecord` (for listings; ``last_used_at`` is ``created_at``)."""
        from datetime import UTC, datetime

        created = datetime.fromisoformat(self.created_at)
        if created.tzinfo is None:
            created = created.replace(tzinfo=UTC)
        return ArtifactRecord(
            key=self.key,
            manifest_digest=self.manifest_digest,
            model=self.model,
            target=self.target,
            backend=self.backend,
            created_at=created,
            last_used_at=created,
            size=self.size,
            metadata=self.metadata,
            aliases=self.aliases,
            uses=self.uses,
        )


def with_aliases(entry: RemoteEntry, aliases: tuple[str, ...]) -> RemoteEntry:
    """``entry`` naming the remote's current ``aliases`` (listing reads them separately)."""
    return replace(entry, aliases=aliases)


def find_entry(entries: list[RemoteEntry], ref: str, where: str) -> RemoteEntry:
    """The entry ``ref`` names among a remote's ``entries``: ``model:target`` (the newest
    result of the target) or a unique key prefix. Raises ArtifactNotFound or AmbiguousRef;
    ``where`` names the remote in the message."""
    if ":" in ref:
        model, target = ref.split(":", 1)
        matches = [e for e in entries if (model, target) in {(e.model, e.target), *e.uses}]
        if matches:
            # The newest result of the target: the upstream stages it was built from (a
            # shared export) serve the pair too, but are not what `model:target` names.
            ups = {p for e in matches for p in e.metadata.get("parents", [])}
            return next((e for e in matches if e.key not in ups), matches[0])
    elif len(ref) >= MIN_PREFIX and HEX_RE.fullmatch(ref):
        matches = [e for e in entries if e.key.startswith(ref.lower())]
        if len(matches) == 1:
            return matches[0]
        if matches:
            raise AmbiguousRef(ref, [e.to_record() for e in matches])
    raise ArtifactNotFound(ref, f"not on the remote {where}")
