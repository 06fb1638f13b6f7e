"""Moving blobs between a local store and an fsspec filesystem.

Downloads are streamed into a temp file under the store's ``tmp/`` and hashed on the way; a
blob enters ``objects/`` only after its digest matched (:func:`install`). Large blobs are
fetched as parallel byte ranges, written at their offsets and hashed in order as they arrive,
so verifying costs no second pass over the file. Uploads go through the filesystem's own
``put_file`` (for S3: one PUT, or a multipart upload that the server assembles atomically).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

BLOB_MODE = 0o444
# A blob above twice this is fetched as parallel ranges of this size.
PART_SIZE = 16 * 1024 * 1024

Advance = Callable[[int], None]


class DigestMismatch(Exception):
    """A downloaded blob is not what its name says: another size, or another digest.

    The message says what was expected and what arrived, e.g. ``object 6087b2b96761: expected
    1000 bytes, 998 arrived`` or ``object 6087b2b96761: expected sha256 6087b2b96761…, the
    1000 bytes that arrived hash to 94a1c0d2e7f3…``.
    """

    def __init__(
        self,
        digest: str,
        *,
        arrived: int,
        expected_size: int | None = None,
        got_digest: str | None = None,
        detail: str = "",
    ) -> None:
        self.digest = digest
        self.arrived = arrived
        self.expected_size = expected_size
        self.got_digest = got_digest
        if expected_size is not None and arrived != expected_size:
            what = f"expected {expected_size} bytes, {arrived} arrived"
        else:
            what = (
                f"expected sha256 {digest[:12]}…, the {arrived} bytes that arrived hash to "
                f"{(got_digest or '?')[:12]}…"
            )
        super().__init__(f"object {digest[:12]}: {what}" + (f" ({detail})" if detail else ""))


def download(
    fs: Any,
    rpath: str,
    digest: str,
    size: int | None,
    tmp_dir: Path,
    *,
    jobs: int = 8,
    part_size: int = PART_SIZE,
    advance: Advance | None = None,
) -> Path:
    """Fetch ``rpath`` into a new file in ``tmp_dir`` and check it is blob ``digest``.

    Returns the temp file (fsynced, read-only); the caller installs or removes it. Raises
    :class:`DigestMismatch` (and removes the file) if the content is not ``digest``.
    """
    fd, name = tempfile.mkstemp(prefix="pull-", dir=tmp_dir)
    path = Path(name)
    try:
        h = hashlib.sha256()
        total = 0
        if size is None or size <= 2 * part_size:
            data = fs.cat_file(rpath)
            h.update(data)
            _write_all(fd, data)
            total = len(data)
            if advance:
                advance(total)
        else:
            for offset, chunk in _ranges(fs, rpath, digest, size, jobs, part_size):
                h.update(chunk)
                _pwrite_all(fd, chunk, offset)
                total += len(chunk)
                if advance:
                    advance(len(chunk))
        os.fsync(fd)
        got = h.hexdigest()
        if got != digest or (size is not None and total != size):
            raise DigestMismatch(digest, arrived=total, expected_size=size, got_digest=got)
        os.fchmod(fd, BLOB_MODE)
    except BaseException:
        os.close(fd)
        path.unlink(missing_ok=True)
        raise
    os.close(fd)
    return path


def _ranges(fs: Any, rpath: str, digest: str, size: int, jobs: int, part_size: int):  # noqa: ANN202
    """Yield ``(offset, bytes)`` of ``rpath`` in order, at most ``2 * jobs`` ranges in flight.

    The window bounds memory: ranges are consumed (hashed, written) as fast as they arrive.
    A range that comes back short (the object is smaller than the manifest says) stops the
    download with :class:`DigestMismatch` naming blob ``digest``.
    """
    offsets = deque(range(0, size, part_size))
    pending: deque[tuple[int, Future[bytes]]] = deque()
    with ThreadPoolExecutor(max_workers=max(1, jobs), thread_name_prefix="rmb-range") as pool:
        try:
            while offsets or pending:
                while offsets and len(pending) < 2 * jobs:
                    off = offsets.popleft()
                    end = min(size, off + part_size)
                    pending.append((off, pool.submit(fs.cat_file, rpath, start=off, end=end)))
                off, fut = pending.popleft()
                chunk = fut.result()
                want = min(part_size, size - off)
                if len(chunk) != want:
                    raise DigestMismatch(
                        digest,
                        arrived=off + len(chunk),
                        expected_size=size,
                        detail=f"the range at offset {off} returned {len(chunk)} of {want} bytes",
                    )
                yield off, chunk
        finally:
            for _, fut in pending:
                fut.cancel()


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _pwrite_all(fd: int, data: bytes, offset: int) -> None:
    view = memoryview(data)
    while view:
        n = os.pwrite(fd, view, offset)
        view, offset = view[n:], offset + n


def install(tmp_file: Path, final: Path) -> None:
    """Move a verified temp file into place as a blob (an existing blob is kept)."""
    if final.exists():
        tmp_file.unlink(missing_ok=True)
        return
    final.parent.mkdir(parents=True, exist_ok=True)
    os.replace(tmp_file, final)


def put_via_temp(fs: Any, tmp: str, final: str, write: Callable[[str], None]) -> None:
    """On a filesystem without atomic puts (``file://``, SFTP…): ``write(tmp)``, then move
    ``tmp`` to ``final``, so a reader never sees a half-written object.

    If anything fails (a full disk, a dropped connection) the temp object is removed before
    the error goes on: a failed push leaves nothing behind, and retries on a full remote do not
    pile up partial files. What a killed process leaves is collected by ``gc --remote`` and by
    the next push, after a grace period (:data:`artifact_store.remote_gc.REMOTE_TMP_GRACE`).
    """
    fs.makedirs(tmp.rsplit("/", 1)[0], exist_ok=True)
    try:
        write(tmp)
        fs.makedirs(final.rsplit("/", 1)[0], exist_ok=True)
        fs.mv(tmp, final)
    except BaseException:
        with contextlib.suppress(Exception):  # it may never have been created
            fs.rm_file(tmp)
        raise


class Counter:
    """Cumulative progress over many transfers in many threads: ``on(done, total)``."""

    def __init__(self, total: int, on: Callable[[int, int], None] | None) -> None:
        self.total = total
        self.done = 0
        self._on = on
        self._lock = threading.Lock()

    def advance(self, n: int) -> None:
        if n <= 0:
            return
        with self._lock:
            self.done += n
            done = self.done
        if self._on is not None:
            self._on(min(done, self.total), self.total)


def fsspec_callback(counter: Counter) -> Any:
    """An fsspec ``Callback`` feeding ``counter``; ``.reported`` is what it has counted."""
    from fsspec.callbacks import Callback

    class _Cb(Callback):
        reported = 0

        def call(self, *args: Any, **kwargs: Any) -> None:
            # fsspec sets .value; forward the increase since the last call.
            step = int(self.value or 0) - self.reported
            if step > 0:
                self.reported += step
                counter.advance(step)

    return _Cb()


# Options of s3fs that mean the same to a plain boto3 client; anything else (anon, requester
# pays, SSE settings…) keeps the upload on s3fs.
_S3_PLAIN_OPTIONS = frozenset(
    {"key", "secret", "token", "profile", "endpoint_url", "client_kwargs", "config_kwargs"}
)


def s3_client(options: dict[str, Any]) -> Any | None:
    """A boto3 S3 client with the credentials and endpoint s3fs would use, or None.

    None where boto3 is not installed or ``options`` hold something only s3fs understands.
    Credentials are the same chain s3fs's aiobotocore follows (environment, profile, config
    files, instance metadata) unless ``options`` name them.
    """
    if set(options) - _S3_PLAIN_OPTIONS:
        return None
    try:
        import boto3
        from botocore.config import Config
    except ImportError:
        return None
    session = boto3.session.Session(
        aws_access_key_id=options.get("key"),
        aws_secret_access_key=options.get("secret"),
        aws_session_token=options.get("token"),
        profile_name=options.get("profile"),
    )
    kwargs = dict(options.get("client_kwargs") or {})
    if options.get("endpoint_url"):
        kwargs["endpoint_url"] = options["endpoint_url"]
    config = Config(**(options.get("config_kwargs") or {}))
    return session.client("s3", config=config, **kwargs)


def s3_upload(
    client: Any,
    local: str,
    path: str,
    *,
    part_size: int,
    jobs: int,
    advance: Advance,
    journal: UploadJournal | None = None,
    abort: Callable[[str, str, str], bool] | None = None,
) -> None:
    """Upload ``local`` to ``bucket/key`` through boto3's TransferManager (what ``aws s3 cp``
    uses): a multipart upload of ``part_size`` parts, ``jobs`` at a time, which S3 assembles
    atomically on completion.

    With a ``journal``, the multipart upload is written down as soon as S3 names it, and
    crossed out once it completed; if the upload fails, ``abort(bucket, key, upload_id)``
    is tried at once (a server that went away cannot hear it: the entry stays, and the next
    push aborts it, see :meth:`UploadJournal.cut`).

    Why not s3fs's own put_file: against the same server it moved a 128 MiB file 1.5–2.5× more
    slowly (all parts go through one event-loop thread); see bench/bench_remote.py.
    """
    from boto3.s3.transfer import TransferConfig

    bucket, _, key = path.partition("/")
    config = TransferConfig(
        multipart_threshold=2 * part_size, multipart_chunksize=part_size, max_concurrency=jobs
    )
    if journal is None:
        client.upload_file(local, bucket, key, Config=config, Callback=advance)
        return
    _watch_multipart(client)
    with _STARTED_LOCK:
        _WATCHED[(bucket, key)] = journal
    ok = False
    try:
        client.upload_file(local, bucket, key, Config=config, Callback=advance)
        ok = True
    finally:
        with _STARTED_LOCK:
            _WATCHED.pop((bucket, key), None)
            upload_id = _STARTED.pop((bucket, key), None)
            _IN_FLIGHT.discard(upload_id or "")
        if upload_id is not None:
            # Completed, or aborted now (S3 then frees its parts): nothing left to clean up.
            if ok or (abort is not None and abort(bucket, key, upload_id)):
                journal.forget(upload_id)


# ---- multipart uploads that were cut --------------------------------------------------------

# (bucket, key) -> the journal of the s3_upload sending it, and the upload id S3 gave it.
_WATCHED: dict[tuple[str, str], UploadJournal] = {}
_STARTED: dict[tuple[str, str], str] = {}
# Upload ids this process is sending right now: never aborted as "cut".
_IN_FLIGHT: set[str] = set()
_STARTED_LOCK = threading.Lock()


def _watch_multipart(client: Any) -> None:
    """Have ``client`` report each multipart upload it starts to the journal watching its key.

    botocore's ``after-call`` event hands over S3's answer to CreateMultipartUpload, which
    names the upload; TransferManager itself keeps the id to itself.
    """
    if getattr(client, "_rmbuild_watched", False):
        return

    def started(parsed: Any = None, **_: Any) -> None:
        if not isinstance(parsed, dict) or not parsed.get("UploadId"):
            return
        where = (str(parsed.get("Bucket", "")), str(parsed.get("Key", "")))
        with _STARTED_LOCK:
            journal = _WATCHED.get(where)
            if journal is None:
                return
            _STARTED[where] = parsed["UploadId"]
            _IN_FLIGHT.add(parsed["UploadId"])
        journal.record(where[0], where[1], parsed["UploadId"])

    client.meta.events.register("after-call.s3.CreateMultipartUpload", started)
    client._rmbuild_watched = True


class UploadJournal:
    """Multipart uploads a store started on one S3 remote and has not seen finish.

    A multipart upload cut mid-way (the process killed, or the server gone so that even the
    abort could not reach it) leaves parts that S3 keeps, and bills, until the upload is
    aborted. Each upload is written down when S3 names it, one small file per upload in
    ``folder`` (``<store>/tmp/s3-uploads/``), and crossed out when it completes or is
    aborted. :meth:`cut` lists those whose process is gone, or no longer sending them: the next
    push to the remote aborts them. ``gc --remote`` aborts what is left (a store that never
    pushes again, a journal gc collected with the store's stale ``tmp/``) after a grace period.
    """

    def __init__(self, folder: Path, remote: str) -> None:
        self.folder = folder
        self.remote = remote

    def _file(self, upload_id: str) -> Path:
        return self.folder / f"{hashlib.sha256(upload_id.encode()).hexdigest()[:32]}.json"

    def record(self, bucket: str, key: str, upload_id: str) -> None:
        """Write the upload down (best effort: a full disk must not fail the upload itself)."""
        doc = {"remote": self.remote, "bucket": bucket, "key": key, "upload_id": upload_id}
        doc["pid"] = os.getpid()
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            self._file(upload_id).write_text(json.dumps(doc), encoding="utf-8")
        except OSError:
            pass

    def forget(self, upload_id: str) -> None:
        with contextlib.suppress(OSError):
            self._file(upload_id).unlink(missing_ok=True)

    def cut(self) -> list[tuple[str, str, str]]:
        """``(bucket, key, upload_id)`` of this remote's uploads that nobody is sending."""
        out = []
        try:
            files = sorted(self.folder.glob("*.json"))
        except OSError:
            return []
        for f in files:
            try:
                doc = json.loads(f.read_text(encoding="utf-8"))
                if doc["remote"] != self.remote:
                    continue
                where = (str(doc["bucket"]), str(doc["key"]), str(doc["upload_id"]))
                pid = int(doc["pid"])
            except (OSError, ValueError, KeyError, TypeError):
                continue
            with _STARTED_LOCK:
                sending = where[2] in _IN_FLIGHT
            if not sending and (pid == os.getpid() or not _alive(pid)):
                out.append(where)
        return out


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process of that id: not ours to judge dead
    return True
