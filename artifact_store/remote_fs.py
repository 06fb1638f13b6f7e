"""The filesystem side of a remote cache: the fsspec filesystem behind a URL (opened on first
use, never from fsspec's instance cache, which would keep credentials and dead connections past
a change), the paths of objects and entries under it, its errors as
:class:`~artifact_store.errors.RemoteError` naming the remote with its secrets scrubbed, and
writes that appear whole: straight to the name on an object store, whose single PUT (or
multipart upload the server assembles) is atomic; through a temp name elsewhere. What is stored
there and how pushes and pulls use it is :mod:`artifact_store.remote`'s.
"""

from __future__ import annotations

import contextlib
import re
import threading
import uuid
from collections.abc import Iterator, Mapping
from typing import Any

from artifact_store import remote_gc, transfer
from artifact_store.entries import redact_url, scrub
from artifact_store.errors import RemoteAuthError, RemoteError, StoreError

# Protocols whose put is atomic: an object appears whole or not at all.
ATOMIC_PROTOCOLS = frozenset({"s3", "s3a", "gs", "gcs", "az", "abfs", "abfss", "memory", "oss"})
# How SDK errors that are not PermissionErrors (boto3's) say "your credentials".
_AUTH_FAILURE = re.compile(
    r"InvalidAccessKeyId|SignatureDoesNotMatch|AccessDenied|ExpiredToken|InvalidToken|"
    r"NoCredentialsError|PartialCredentialsError|\b403\b|Forbidden"
)


class RemoteFS:
    """The filesystem of a remote at an fsspec ``url``; see the module docstring.

    ``storage_options`` go to the filesystem (e.g. ``endpoint_url`` for an S3-compatible
    server); ``jobs`` is how many transfers run at once. Picklable (the filesystem is opened
    again on the other side), so a build worker process can take one along.
    """

    def __init__(
        self,
        url: str,
        *,
        storage_options: Mapping[str, Any] | None = None,
        jobs: int = 8,
        part_size: int = transfer.PART_SIZE,
    ) -> None:
        self.url = url.rstrip("/") or url
        self.display = redact_url(self.url)
        self.storage_options = dict(storage_options or {})
        self.jobs = max(1, jobs)
        self.part_size = part_size
        self._fs: Any = None
        self._boto: Any = None
        self._root = ""
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"Remote({self.display!r})"

    def __getstate__(self) -> dict[str, Any]:
        return {k: self.__dict__[k] for k in ("url", "storage_options", "jobs", "part_size")}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state.pop("url"), **state)  # type: ignore[misc]

    @property
    def fs(self) -> Any:
        """The fsspec filesystem, opened on first use (ImportError → RemoteError)."""
        with self._lock:
            if self._fs is None:
                with self._errors("opening"):
                    from fsspec.core import url_to_fs

                    # No instance cache: a cached filesystem would keep credentials (and a
                    # dead connection pool) past a change of env or a server restart.
                    fs, root = url_to_fs(self.url, skip_instance_cache=True, **self.storage_options)
                self._fs, self._root = fs, root.rstrip("/")
            return self._fs

    @property
    def atomic(self) -> bool:
        return bool(self._protocols() & ATOMIC_PROTOCOLS)

    def _path(self, *parts: str) -> str:
        self.fs  # noqa: B018  # sets _root
        return "/".join([self._root, *parts]) if self._root else "/".join(parts)

    def object_path(self, digest: str) -> str:
        return self._path("objects", digest[:2], digest[2:])

    def entry_path(self, key: str) -> str:
        return self._path("entries", f"{key}.json")

    @contextlib.contextmanager
    def _errors(self, what: str) -> Iterator[None]:
        """Turn whatever the filesystem raises into a RemoteError naming this remote."""
        try:
            yield
        except StoreError:
            raise
        except ImportError as exc:
            raise RemoteError(
                self.display,
                f"no filesystem for this URL ({self._scrub(str(exc))}); install its fsspec "
                "package (s3fs, gcsfs, adlfs…), e.g. pip install 'rmbuild[remote]'",
            ) from None
        except ValueError as exc:
            if "protocol" in str(exc).lower():
                raise RemoteError(
                    self.display, f"unknown protocol: {self._scrub(str(exc))}"
                ) from None
            raise RemoteError(self.display, f"{what}: {self._scrub(str(exc))}") from exc
        except PermissionError as exc:
            raise RemoteAuthError(
                self.display,
                f"{what}: access denied ({self._scrub(str(exc))}); check the credentials the "
                "provider's SDK finds (environment, its config files)",
            ) from None
        except FileNotFoundError as exc:
            raise RemoteError(
                self.display, f"{what}: not found ({self._scrub(str(exc))}); does the bucket exist?"
            ) from None
        except Exception as exc:  # noqa: BLE001 - SDKs raise their own trees; all mean "remote"
            detail = self._scrub(str(exc)) or type(exc).__name__
            if _AUTH_FAILURE.search(f"{type(exc).__name__} {exc}"):
                raise RemoteAuthError(
                    self.display,
                    f"{what}: access denied ({detail}); check the credentials the provider's "
                    "SDK finds (environment, its config files)",
                ) from None
            raise RemoteError(self.display, f"{what}: {detail}") from None

    def _scrub(self, text: str) -> str:
        """``text`` without the env's secrets nor the URL's own (password, query values)."""
        from urllib.parse import parse_qsl, urlsplit

        parts = urlsplit(self.url)
        secrets = [parts.password or "", *(v for _, v in parse_qsl(parts.query))]
        return scrub(text, secrets)

    def _put_bytes(self, path: str, data: bytes) -> None:
        fs = self.fs
        if self.atomic:
            fs.pipe_file(path, data)
            return
        tmp = self._path("tmp", uuid.uuid4().hex)
        transfer.put_via_temp(fs, tmp, path, lambda t: fs.pipe_file(t, data))

    def _put_options(self, size: int) -> dict[str, Any]:
        # s3fs sends a big file as a multipart upload of 50 MiB parts by default; parts of
        # `part_size`, `jobs` at a time, keep as many requests in flight as `aws s3 cp` does
        # (measured in bench/bench_remote.py). Other filesystems take no such options.
        if "s3" in self._protocols() and size > 2 * self.part_size:
            return {"chunksize": self.part_size, "max_concurrency": self.jobs}
        return {}

    def _s3_client(self) -> Any | None:
        """boto3's client for big S3 uploads (see transfer.s3_upload); None: use s3fs."""
        if "s3" not in self._protocols() and "s3a" not in self._protocols():
            return None
        with self._lock:
            if self._boto is None:
                self._boto = transfer.s3_client(self.storage_options) or False
            return self._boto or None

    def _protocols(self) -> set[str]:
        protocol = self.fs.protocol
        return {protocol} if isinstance(protocol, str) else set(protocol)

    def _put_file(
        self,
        local: str,
        path: str,
        counter: transfer.Counter,
        size: int,
        journal: transfer.UploadJournal | None = None,
    ) -> None:
        fs = self.fs
        cb = transfer.fsspec_callback(counter)

        def cb_advance(n: int) -> None:
            cb.reported += n
            counter.advance(n)

        if size > 2 * self.part_size and (client := self._s3_client()) is not None:
            transfer.s3_upload(
                client,
                local,
                path,
                part_size=self.part_size,
                jobs=self.jobs,
                advance=cb_advance,
                journal=journal,
                abort=lambda bucket, key, upload: remote_gc.abort_upload(self, bucket, key, upload),
            )
        elif self.atomic:
            fs.put_file(local, path, callback=cb, **self._put_options(size))
        else:
            tmp = self._path("tmp", uuid.uuid4().hex)
            transfer.put_via_temp(fs, tmp, path, lambda t: fs.put_file(local, t, callback=cb))
        counter.advance(size - cb.reported)  # filesystems that report nothing
