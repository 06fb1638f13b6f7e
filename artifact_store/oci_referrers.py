"""Attachments (:mod:`artifact_store.attachments`) as OCI 1.1 referrers of an artifact's manifest.

Each attachment (a signature bundle, a signed provenance statement) is one small image manifest
whose ``subject`` is the artifact's manifest, whose only layer is the attachment's bytes and
whose annotations say its kind and the content (rmbuild manifest digest) it is about. It is
stored under its own digest, so pushing it twice writes the same manifest.

A registry with the referrers API (``GET /v2/<repo>/referrers/<digest>``) lists them itself
(it answers the manifest PUT with an ``OCI-Subject`` header). One without it (the distribution
registry 2.8 answers 404) gets the OCI 1.1 fallback: an image index tagged
``sha256-<subject hex>`` that lists them, which the pusher reads, extends and writes back.
Readers try the API first, then the tag. Every attachment read is checked against the digests
its manifest and descriptor name (:class:`RemoteCorrupt` otherwise); one about other content,
or of a kind that cannot be an attachment, is passed over.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from artifact_store import attachments
from artifact_store.attachments import Attachment
from artifact_store.errors import InvalidArgument, RemoteCorrupt
from artifact_store.hashing import hash_bytes, is_digest
from artifact_store.oci_layout import EMPTY, EMPTY_DATA, INDEX, MANIFEST
from artifact_store.records import canonical_json

if TYPE_CHECKING:
    from artifact_store.oci import OCIRemote
    from artifact_store.store import Store

KIND = "dev.rmbuild.attachment.kind"
SUBJECT = "dev.rmbuild.attachment.subject"
DIGEST = "dev.rmbuild.attachment.digest"
# An attachment's kind ends in its format: a Sigstore bundle is the one the field's tools
# (cosign, notation, model-signing) know by this media type.
SIGSTORE_BUNDLE = "application/vnd.dev.sigstore.bundle.v0.3+json"


def artifact_type(kind: str) -> str:
    """The referrer's artifactType for an attachment of ``kind``."""
    if kind.endswith(".sigstore.json"):
        return SIGSTORE_BUNDLE
    return f"application/vnd.rmbuild.attachment.{kind}"


def referrer(attachment: Attachment, subject: str, subject_size: int, empty: str) -> bytes:
    """The referrer manifest of ``attachment`` about artifact manifest ``subject`` (hex)."""
    kind_type = artifact_type(attachment.kind)
    notes = {KIND: attachment.kind, SUBJECT: attachment.subject, DIGEST: attachment.digest}
    doc = {
        "schemaVersion": 2,
        "mediaType": MANIFEST,
        "artifactType": kind_type,
        "config": {"mediaType": EMPTY, "digest": f"sha256:{empty}", "size": len(EMPTY_DATA)},
        "layers": [
            {
                "mediaType": kind_type,
                "digest": f"sha256:{attachment.digest}",
                "size": len(attachment.data),
            }
        ],
        "subject": {"mediaType": MANIFEST, "digest": f"sha256:{subject}", "size": subject_size},
        "annotations": notes,
    }
    return canonical_json(doc)


def listed(remote: OCIRemote, subject: str) -> list[dict[str, Any]]:
    """The referrers of manifest ``subject`` (hex) as index descriptors: the API's answer,
    else the fallback tag's index, else none."""
    body = remote.client.referrers(subject)
    if body is None:
        found = remote.client.get_manifest(f"sha256-{subject}", accept=INDEX)
        body = found[0] if found is not None else None
    if body is None:
        return []
    try:
        manifests = json.loads(body).get("manifests") or []
    except (ValueError, AttributeError):
        raise RemoteCorrupt(
            remote.display, f"the referrers of {subject[:12]} are not JSON"
        ) from None
    return [d for d in manifests if isinstance(d, dict)]


def _names(descriptors: list[dict[str, Any]]) -> set[tuple[str, str]]:
    out = set()
    for d in descriptors:
        notes = d.get("annotations") or {}
        if isinstance(notes, dict) and notes.get(KIND) and notes.get(DIGEST):
            out.add((str(notes[KIND]), str(notes[DIGEST])))
    return out


def push(remote: OCIRemote, store: Store, subject: str, subject_size: int, content: str) -> int:
    """Attach what ``store`` keeps about ``content`` to the registry's manifest ``subject``
    (hex), each attachment the registry lacks; how many were sent. None kept: no request."""
    mine = attachments.local(store, content)
    if not mine:
        return 0
    there = listed(remote, subject)
    have = _names(there)
    new = [a for a in mine if (a.kind, a.digest) not in have]
    if not new:
        return 0
    empty = remote.ensure_blob(EMPTY_DATA)
    added: list[dict[str, Any]] = []
    tracked = True
    for attachment in new:
        remote.ensure_blob(attachment.data)
        data = referrer(attachment, subject, subject_size, empty)
        digest = hash_bytes(data)
        resp = remote.client.put_manifest(f"sha256:{digest}", data)
        tracked = tracked and bool(resp.headers.get("OCI-Subject"))
        added.append(
            {
                "mediaType": MANIFEST,
                "digest": f"sha256:{digest}",
                "size": len(data),
                "artifactType": artifact_type(attachment.kind),
                "annotations": json.loads(data)["annotations"],
            }
        )
    if not tracked:
        # No referrers API: the fallback tag's index lists them (read, extend, write back).
        index = {"schemaVersion": 2, "mediaType": INDEX, "manifests": [*there, *added]}
        remote.client.put_manifest(f"sha256-{subject}", canonical_json(index), INDEX)
    return len(new)


def fetch(remote: OCIRemote, subject: str, content: str) -> list[Attachment]:
    """The attachments about ``content`` among the referrers of manifest ``subject`` (hex),
    each checked against its digests."""
    found: list[Attachment] = []
    seen: set[str] = set()
    for descriptor in listed(remote, subject):
        notes = descriptor.get("annotations") or {}
        digest = str(descriptor.get("digest") or "").removeprefix("sha256:")
        if not isinstance(notes, dict) or not notes.get(KIND) or not is_digest(digest):
            continue  # another tool's referrer
        if notes.get(SUBJECT) != content or digest in seen:
            continue
        seen.add(digest)
        got = remote.client.get_manifest(f"sha256:{digest}")
        if got is None:
            continue  # listed in a fallback index, then deleted
        if hash_bytes(got[0]) != digest:
            raise RemoteCorrupt(
                remote.display, f"referrer {digest[:12]} does not hash to its digest; refused"
            )
        try:
            doc = json.loads(got[0])
            layer = doc["layers"][0]
            blob = str(layer["digest"]).removeprefix("sha256:")
            kind = str(doc["annotations"][KIND])
            about = doc["annotations"][SUBJECT]
            points_at = str(doc["subject"]["digest"]).removeprefix("sha256:")
        except (ValueError, KeyError, IndexError, TypeError):
            raise RemoteCorrupt(remote.display, f"referrer {digest[:12]} is not valid") from None
        if about != content or points_at != subject or not is_digest(blob):
            continue
        try:
            data = remote.client.get_blob(blob)
        except FileNotFoundError:
            raise RemoteCorrupt(
                remote.display, f"attachment {blob[:12]} of {content[:12]} is missing"
            ) from None
        if len(data) > attachments.MAX_SIZE or hash_bytes(data) != blob:
            raise RemoteCorrupt(
                remote.display,
                f"attachment {blob[:12]} of content {content[:12]} does not match its digest; "
                "refused, nothing entered the local store",
            )
        try:
            found.append(Attachment(content, kind, data))
        except InvalidArgument:
            continue  # a kind this store cannot name a file after
    return found
