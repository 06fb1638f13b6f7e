"""Attachments: small immutable documents about an artifact's content (signatures, attestations).

An attachment refers to its *subject*, an artifact's manifest digest, the way an OCI referrer
refers to a manifest: it is about the bytes, not about an index row, so it is added after the
artifact exists (a signature made later, by someone else) without rewriting the row, and every
store or remote that holds the content can hold its attachments. Each is named by its own
SHA-256 and a kind (``<digest>.<kind>``), so it is written once and never changes:

    <store>/attachments/<subject>/<digest>.<kind>     local, beside objects/
    <remote>/attachments/<subject>/<digest>.<kind>    on a remote, beside objects/ and entries/

A push uploads the attachments of every artifact it names (also of artifacts the remote already
holds: a signature made after the first push still reaches it); a pull fetches the remote's,
checks each against the digest in its name and hands them to the caller's admission check
before the artifact enters the store. gc leaves attachments alone: they are a few kilobytes,
and a subject may come back (a rebuild that makes the same bytes, a pull).
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from artifact_store.errors import InvalidArgument, RemoteCorrupt
from artifact_store.hashing import hash_bytes, is_digest

if TYPE_CHECKING:
    from artifact_store.remote import Remote
    from artifact_store.store import Store

FOLDER = "attachments"
KIND_RE = re.compile(r"^[a-z0-9][a-z0-9.-]{0,63}$")
# A signature or an attestation is kilobytes; anything this large is not one.
MAX_SIZE = 8 * 1024 * 1024


@dataclass(frozen=True)
class Attachment:
    """One document about the content ``subject`` (a manifest digest)."""

    subject: str
    kind: str
    data: bytes

    def __post_init__(self) -> None:
        if not is_digest(self.subject):
            raise InvalidArgument(f"attachment subject {self.subject!r} is not a digest")
        if not KIND_RE.fullmatch(self.kind):
            raise InvalidArgument(f"attachment kind {self.kind!r} must match {KIND_RE.pattern}")
        if len(self.data) > MAX_SIZE:
            raise InvalidArgument(f"attachment of {len(self.data)} bytes is over {MAX_SIZE}")

    @property
    def digest(self) -> str:
        return hash_bytes(self.data)

    @property
    def name(self) -> str:
        """The file name it is kept under: ``<digest>.<kind>``."""
        return f"{self.digest}.{self.kind}"


def _parse_name(name: str) -> tuple[str, str] | None:
    digest, _, kind = name.partition(".")
    if is_digest(digest) and KIND_RE.fullmatch(kind):
        return digest, kind
    return None


def local_folder(store: Store, subject: str) -> Path:
    if not is_digest(subject):
        raise InvalidArgument(f"attachment subject {subject!r} is not a digest")
    return store.root / FOLDER / subject


def put(store: Store, attachment: Attachment) -> Path:
    """Keep ``attachment`` in ``store`` (temp file, fsync, rename: all of it or nothing);
    an attachment already kept is left as it is. Returns its path."""
    folder = local_folder(store, attachment.subject)
    path = folder / attachment.name
    if path.is_file():
        return path
    folder.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".att-", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(attachment.data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o444)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return path


def put_all(store: Store, attachments: Iterable[Attachment]) -> list[Path]:
    return [put(store, a) for a in attachments]


def local(store: Store, subject: str, kind: str | None = None) -> list[Attachment]:
    """The attachments ``store`` keeps for ``subject`` (of ``kind``, or all), oldest name
    first. A file whose content does not match the digest in its name is left out: it was
    changed after it was written, and a reader must not take it for what its name says."""
    folder = local_folder(store, subject)
    try:
        names = sorted(os.listdir(folder))
    except FileNotFoundError:
        return []
    found = []
    for name in names:
        parsed = _parse_name(name)
        if parsed is None or (kind is not None and parsed[1] != kind):
            continue
        try:
            data = (folder / name).read_bytes()
        except OSError:
            continue
        if hash_bytes(data) == parsed[0]:
            found.append(Attachment(subject, parsed[1], data))
    return found


def damaged(store: Store, subject: str) -> list[str]:
    """Names of ``subject``'s attachment files whose content does not match their name."""
    folder = local_folder(store, subject)
    try:
        names = sorted(os.listdir(folder))
    except FileNotFoundError:
        return []
    bad = []
    for name in names:
        parsed = _parse_name(name)
        if parsed is None:
            continue
        try:
            ok = hash_bytes((folder / name).read_bytes()) == parsed[0]
        except OSError:
            ok = False
        if not ok:
            bad.append(name)
    return bad


# ---- remotes ------------------------------------------------------------------------------


def _remote_folder(remote: Remote, subject: str) -> str:
    return remote._path(FOLDER, subject)  # noqa: SLF001 - the remote's own layout helper


def remote_names(remote: Remote, subject: str) -> list[str]:
    """Names of the attachments ``remote`` holds for ``subject``."""
    fs = remote.fs
    folder = _remote_folder(remote, subject)
    with remote._errors(f"listing attachments of {subject[:12]}"):  # noqa: SLF001
        # A listing cached by the filesystem (s3fs keeps them) would miss one just uploaded.
        fs.invalidate_cache(folder)
        try:
            entries = fs.ls(folder, detail=False)
        except FileNotFoundError:
            return []
    names = [str(e).rstrip("/").rsplit("/", 1)[-1] for e in entries]
    return sorted(n for n in names if _parse_name(n) is not None)


def push(remote: Remote, store: Store, subjects: Iterable[str]) -> int:
    """Upload the attachments ``store`` keeps for ``subjects`` that ``remote`` lacks; how
    many were uploaded. Subjects with none kept here cost no request."""
    sent = 0
    for subject in dict.fromkeys(subjects):
        mine = local(store, subject)
        if not mine:
            continue
        there = set(remote_names(remote, subject))
        for attachment in mine:
            if attachment.name in there:
                continue
            path = f"{_remote_folder(remote, subject)}/{attachment.name}"
            with remote._errors(f"uploading attachment {attachment.digest[:12]}"):  # noqa: SLF001
                remote._put_bytes(path, attachment.data)  # noqa: SLF001
            sent += 1
    return sent


def fetch(remote: Remote, subject: str) -> list[Attachment]:
    """Every attachment ``remote`` holds for ``subject``, each checked against the digest in
    its name (RemoteCorrupt naming it otherwise)."""
    found = []
    for name in remote_names(remote, subject):
        digest, kind = _parse_name(name)  # type: ignore[misc]  # remote_names kept parsed ones
        path = f"{_remote_folder(remote, subject)}/{name}"
        with remote._errors(f"downloading attachment {digest[:12]}"):  # noqa: SLF001
            data = remote.fs.cat_file(path)
        if len(data) > MAX_SIZE or hash_bytes(data) != digest:
            raise RemoteCorrupt(
                remote.display,
                f"attachment {name[:20]} of content {subject[:12]} does not match its digest; "
                "refused, nothing entered the local store",
            )
        found.append(Attachment(subject, kind, data))
    return found
