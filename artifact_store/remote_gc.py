"""Collecting what failed pushes leave on a remote: ``rmbuild gc --remote URL``.

A push cleans up after itself when it fails (:func:`artifact_store.transfer.put_via_temp`
removes its temp object; an S3 multipart upload is aborted, at once or by the next push from
the same store). What is left is what no process could clean up: a push killed mid-write on a
``file://`` (or SFTP…) remote leaves a temp object in ``<remote>/tmp/``; an S3 multipart upload
whose store never pushes again leaves its parts, which S3 keeps (and bills) until the upload
is aborted. Both are collected here once they are older than a grace period, so a push still
in progress on another host is never cut:

- temp objects untouched for :data:`REMOTE_TMP_GRACE` (an hour, as the store's own ``tmp/``;
  a temp object's mtime moves while it is written, so only a dead writer's gets that old);
- multipart uploads started more than :data:`REMOTE_UPLOAD_GRACE` ago (a day: S3 reports
  when an upload started, not when its last part arrived, and a large model over a slow
  link may take hours).

Objects, entries and aliases are never touched: a remote's content is immutable by name.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from artifact_store.remote import Remote
    from artifact_store.remote_fs import RemoteFS
    from artifact_store.store import Store
    from artifact_store.transfer import UploadJournal

REMOTE_TMP_GRACE = 3600.0
REMOTE_UPLOAD_GRACE = 86400.0


@dataclass
class RemoteGcReport:
    """What :func:`collect_remote` removed, or with ``dry_run`` would remove."""

    remote: str
    dry_run: bool
    tmp_removed: int = 0
    bytes_freed: int = 0
    uploads_aborted: int = 0
    kept_young: int = 0  # temp objects and uploads still inside their grace period
    aborted: list[str] = field(default_factory=list)  # keys of the uploads aborted

    def summary(self) -> str:
        """One line for humans."""
        verb = "would remove" if self.dry_run else "removed"
        return (
            f"{verb} {self.tmp_removed} temp object(s) ({self.bytes_freed} bytes) and "
            f"{self.uploads_aborted} unfinished multipart upload(s) on {self.remote}; "
            f"{self.kept_young} younger than the grace period kept"
        )


def collect_remote(
    remote: Remote,
    *,
    dry_run: bool = False,
    tmp_grace: float = REMOTE_TMP_GRACE,
    upload_grace: float = REMOTE_UPLOAD_GRACE,
) -> RemoteGcReport:
    """Remove ``remote``'s stale temp objects and abort its stale S3 multipart uploads."""
    report = RemoteGcReport(remote.display, dry_run)
    with remote._errors("collecting garbage"):
        collect_remote_tmp(remote, grace=tmp_grace, dry_run=dry_run, report=report)
        if "s3" in remote._protocols() or "s3a" in remote._protocols():
            _abort_stale_uploads(remote, upload_grace, dry_run, report)
    return report


def collect_remote_tmp(
    remote: Remote,
    *,
    grace: float = REMOTE_TMP_GRACE,
    dry_run: bool = False,
    report: RemoteGcReport | None = None,
) -> RemoteGcReport:
    """Remove temp objects under ``<remote>/tmp/`` untouched for ``grace`` seconds.

    Raises what the filesystem raises (callers wrap it: ``gc --remote`` reports it, a push
    ignores it).
    """
    report = report or RemoteGcReport(remote.display, dry_run)
    fs = remote.fs
    try:
        found = fs.ls(remote._path("tmp"), detail=True)
    except FileNotFoundError:
        return report
    now = time.time()
    for info in found:
        if info.get("type") == "directory":
            continue
        mtime = _mtime(info)
        if mtime is None or now - mtime < grace:
            report.kept_young += 1
            continue
        report.tmp_removed += 1
        report.bytes_freed += int(info.get("size") or 0)
        if not dry_run:
            try:
                fs.rm_file(info["name"])
            except FileNotFoundError:
                pass  # another gc or push removed it first
    return report


def before_push(remote: Remote, store: Store) -> UploadJournal | None:
    """Before a push: collect what earlier pushes left behind, best effort.

    Temp objects older than the grace period (a push killed mid-write on ``file://``); S3
    multipart uploads this store started and nobody is sending any more (a push cut mid-way
    whose abort could not reach the server). Returns the journal the push's own S3 uploads are
    written down in (None where the remote is not S3).
    """
    from artifact_store.transfer import UploadJournal

    journal = None
    if remote._s3_client() is not None:
        journal = UploadJournal(store.root / "tmp" / "s3-uploads", remote.display)
        for bucket, key, upload_id in journal.cut():
            if abort_upload(remote, bucket, key, upload_id):
                journal.forget(upload_id)
    elif not remote.atomic:
        # Housekeeping must not fail a push: a remote that cannot be listed fails the upload
        # itself, with the error that matters.
        with contextlib.suppress(Exception):
            collect_remote_tmp(remote)
    return journal


def abort_upload(remote: RemoteFS, bucket: str, key: str, upload_id: str) -> bool:
    """Abort an S3 multipart upload; True once S3 no longer holds it (aborted now, or completed
    or aborted before), False if the remote could not be reached (the caller keeps it)."""
    try:
        remote.fs.call_s3("abort_multipart_upload", Bucket=bucket, Key=key, UploadId=upload_id)
    except FileNotFoundError:
        return True  # NoSuchUpload: nothing left to abort
    except Exception:  # noqa: BLE001 - unreachable now: the caller keeps it for later
        return False
    return True


def _abort_stale_uploads(
    remote: Remote, grace: float, dry_run: bool, report: RemoteGcReport
) -> None:
    root = remote._path()
    bucket, _, prefix = root.partition("/")
    kwargs: dict[str, Any] = {"Bucket": bucket}
    if prefix:
        kwargs["Prefix"] = prefix.rstrip("/") + "/"
    fs = remote.fs
    now = time.time()
    while True:
        page = fs.call_s3("list_multipart_uploads", **kwargs)
        for upload in page.get("Uploads") or []:
            started = upload.get("Initiated")
            age = now - started.timestamp() if isinstance(started, datetime) else None
            if age is None or age < grace:
                report.kept_young += 1
                continue
            if dry_run or abort_upload(remote, bucket, upload["Key"], upload["UploadId"]):
                report.uploads_aborted += 1
                report.aborted.append(upload["Key"])
        if not page.get("IsTruncated"):
            return
        kwargs["KeyMarker"] = page.get("NextKeyMarker", "")
        kwargs["UploadIdMarker"] = page.get("NextUploadIdMarker", "")


def _mtime(info: dict[str, Any]) -> float | None:
    """A listing entry's modification time as a POSIX timestamp (filesystems differ)."""
    for name in ("mtime", "LastModified", "last_modified", "modified", "updated", "created"):
        value = info.get(name)
        if isinstance(value, int | float):
            return float(value)
        if isinstance(value, datetime):
            return value.timestamp()
    return None
