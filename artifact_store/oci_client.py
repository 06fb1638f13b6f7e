"""The OCI distribution API as :mod:`artifact_store.oci` speaks it: requests, auth, blobs.

Plain ``http.client`` (no dependency beyond the standard library), keep-alive connections pooled
per host, so a pull of many blobs pays one TCP handshake per transfer thread.

Auth is what registries ask for in their ``WWW-Authenticate`` challenge: ``Basic`` (the
credentials themselves on every request) or ``Bearer`` (a token from the realm the challenge
names, for the scope it names, fetched with the credentials where there are any, anonymously
otherwise). Credentials come only from the standard Docker config file
(:mod:`artifact_store.oci_auth`). They are never put in a URL, never logged, and every message
passes through :meth:`Client.scrub`.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import json
import os
import re
import ssl
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, urlencode, urljoin, urlsplit

from artifact_store.entries import scrub
from artifact_store.errors import RemoteAuthError, RemoteError
from artifact_store.oci_auth import Credentials, basic_auth, docker_config_path, find_credentials
from artifact_store.oci_layout import INDEX, MANIFEST, Address

TIMEOUT_S = 60.0
# Big enough that a socket write is never the bottleneck of an upload (http.client's default
# block of 8 KiB costs a system call per 8 KiB).
BLOCK = 1024 * 1024
# A download asks the kernel to start writing what it received every this many bytes.
WRITEBACK = 8 * 1024 * 1024
_CHALLENGE_PARAM = re.compile(r'(\w+)="([^"]*)"')

Advance = Callable[[int], None]


# ---- requests ------------------------------------------------------------------------------


@dataclass
class Response:
    status: int
    headers: http.client.HTTPMessage
    body: bytes
    url: str


class _Reader:
    """A file as a request body that reports what was read (sent) to ``advance``."""

    def __init__(self, path: Path, advance: Advance | None) -> None:
        self._f = open(path, "rb")  # noqa: SIM115 - closed by the caller's finally
        self._advance = advance

    def read(self, n: int = -1) -> bytes:
        data = self._f.read(n)
        if self._advance is not None and data:
            self._advance(len(data))
        return data

    def close(self) -> None:
        self._f.close()


Body = bytes | Path | None
Sink = Callable[[http.client.HTTPResponse], None]


class SinkError(Exception):
    """A failure of a sink's own side (writing the local file), not of the registry."""

    def __init__(self, error: BaseException) -> None:
        super().__init__(str(error))
        self.error = error


class Client:
    """One repository of one registry, as a connection pool with its auth state. Thread-safe."""

    def __init__(
        self, address: Address, *, timeout: float = TIMEOUT_S, ca_file: str | None = None
    ) -> None:
        self.address = address
        self.display = address.display
        self.timeout = timeout
        self._ssl = ssl.create_default_context(cafile=ca_file) if ca_file else None
        self._idle: dict[tuple[str, str], list[http.client.HTTPConnection]] = {}
        self._lock = threading.Lock()
        self._auth: str | None = None
        self._creds: Credentials | None = None
        self._creds_read = False
        self._secrets: set[str] = set()

    def url(self, tail: str) -> str:
        """The API URL of ``tail`` in this repository (``blobs/…``, ``manifests/…``)."""
        return f"{self.address.base}/v2/{self.address.repo}/{tail}"

    def scrub(self, text: str) -> str:
        return scrub(text, self._secrets)

    def close(self) -> None:
        with self._lock:
            conns = [c for pool in self._idle.values() for c in pool]
            self._idle.clear()
        for conn in conns:
            conn.close()

    # ---- connections -----------------------------------------------------------------------

    def _connection(self, scheme: str, netloc: str) -> tuple[http.client.HTTPConnection, bool]:
        with self._lock:
            pool = self._idle.get((scheme, netloc))
            if pool:
                return pool.pop(), True
        if scheme == "https":
            context = self._ssl or ssl.create_default_context()
            return (
                http.client.HTTPSConnection(
                    netloc, timeout=self.timeout, context=context, blocksize=BLOCK
                ),
                False,
            )
        return http.client.HTTPConnection(netloc, timeout=self.timeout, blocksize=BLOCK), False

    def _release(self, scheme: str, netloc: str, conn: http.client.HTTPConnection) -> None:
        with self._lock:
            self._idle.setdefault((scheme, netloc), []).append(conn)

    def _send(
        self,
        method: str,
        url: str,
        headers: dict[str, str],
        body: Body,
        advance: Advance | None,
        sink: Sink | None = None,
    ) -> Response:
        """One request on a pooled connection; a reused connection the server had closed is
        retried once on a new one (keep-alive connections time out on the server's side).
        ``sink`` consumes the body of a 200/206 answer as it streams (the Response then holds
        none)."""
        parts = urlsplit(url)
        target = parts.path + (f"?{parts.query}" if parts.query else "")
        for attempt in (0, 1):
            conn, reused = self._connection(parts.scheme, parts.netloc)
            reader = _Reader(body, advance) if isinstance(body, Path) else None
            try:
                conn.request(method, target, body=reader or body, headers=headers)
                resp = conn.getresponse()
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
                conn.close()
                if reused and attempt == 0:
                    continue
                raise
            except BaseException:
                conn.close()
                raise
            finally:
                if reader is not None:
                    reader.close()
            try:
                if sink is not None and resp.status in (200, 206):
                    sink(resp)
                    data = b""
                else:
                    data = resp.read()
            except BaseException:
                conn.close()
                raise
            if resp.will_close or not resp.isclosed():
                conn.close()  # closing, or a body the sink left unread
            else:
                self._release(parts.scheme, parts.netloc, conn)
            return Response(resp.status, resp.headers, data, url)
        raise AssertionError("unreachable")

    def request(
        self,
        method: str,
        url: str,
        *,
        what: str,
        headers: Mapping[str, str] | None = None,
        body: Body = None,
        ok: Iterable[int] = (200,),
        missing: Iterable[int] = (),
        advance: Advance | None = None,
        sink: Sink | None = None,
    ) -> Response:
        """``method url`` with this registry's auth, redirects followed; the response when its
        status is in ``ok`` or ``missing``; RemoteAuthError / RemoteError (naming ``what``)
        otherwise, or when the registry cannot be reached. What ``sink`` raises as a
        :class:`SinkError` (a local failure: the disk) goes on as the error it wraps."""
        ok, missing = set(ok), set(missing)
        home = urlsplit(self.address.base).netloc
        tried: set[str] = set()
        for _ in range(6):
            sent = dict(headers or {})
            if body is None and method in ("POST", "PUT", "PATCH"):
                sent.setdefault("Content-Length", "0")
            if self._auth and urlsplit(url).netloc == home:
                # Never to another host: a redirect to a storage backend gets no credentials.
                sent["Authorization"] = self._auth
            try:
                resp = self._send(method, url, sent, body, advance, sink)
            except SinkError as exc:
                raise exc.error from None
            except ssl.SSLError as exc:
                raise RemoteError(
                    self.display,
                    f"{what}: TLS failed ({self.scrub(str(exc))}); a registry without TLS on "
                    "another host needs plain_http = true in [remote_options]",
                ) from None
            except (OSError, http.client.HTTPException) as exc:
                detail = self.scrub(str(exc)) or type(exc).__name__
                raise RemoteError(
                    self.display, f"{what}: cannot reach the registry ({detail})"
                ) from None
            if resp.status == 401 and urlsplit(url).netloc == home:
                challenge = resp.headers.get("WWW-Authenticate") or ""
                if challenge in tried:
                    self._refused(what)
                tried.add(challenge)
                self._auth = self._authorize(challenge, what)
                continue
            if resp.status in (301, 302, 303, 307, 308) and method in ("GET", "HEAD"):
                url = urljoin(url, resp.headers.get("Location") or "")
                continue
            if resp.status in ok or resp.status in missing:
                return resp
            if resp.status in (401, 403):
                self._refused(what, resp)
            raise RemoteError(self.display, f"{what}: {self._explain(resp)}")
        raise RemoteError(self.display, f"{what}: too many redirects or auth challenges")

    def _explain(self, resp: Response) -> str:
        """HTTP status and the registry's error codes (the distribution spec's error body)."""
        detail = ""
        with contextlib.suppress(ValueError, TypeError, AttributeError):
            errors = json.loads(resp.body)["errors"]
            detail = "; ".join(f"{e.get('code')}: {e.get('message')}" for e in errors)
        if not detail:
            detail = resp.body[:200].decode("utf-8", "replace").strip()
        return self.scrub(f"HTTP {resp.status}" + (f" ({detail})" if detail else ""))

    def _refused(self, what: str, resp: Response | None = None) -> None:
        creds = self._credentials()
        if creds is None:
            why = (
                f"the registry wants credentials and {docker_config_path()} has none for "
                f"{self.address.host}; run `docker login {self.address.host}` (or write its "
                "auths entry) and try again"
            )
        else:
            why = (
                f"the registry refused the credentials for {self.address.host} from "
                f"{creds.source}; check them (`docker login {self.address.host}`)"
            )
        status = f" (HTTP {resp.status})" if resp is not None else ""
        raise RemoteAuthError(self.display, f"{what}: access denied{status}; {why}")

    # ---- auth ------------------------------------------------------------------------------

    def _credentials(self) -> Credentials | None:
        with self._lock:
            if not self._creds_read:
                self._creds = find_credentials(self.address.host, self.display)
                self._creds_read = True
                if self._creds is not None:
                    self._secrets.add(self._creds.secret)
                    self._secrets.add(basic_auth(self._creds))
            return self._creds

    def _authorize(self, challenge: str, what: str) -> str:
        """The Authorization header that answers ``challenge``."""
        scheme, _, rest = challenge.partition(" ")
        params = dict(_CHALLENGE_PARAM.findall(rest))
        creds = self._credentials()
        if scheme.lower() == "basic":
            if creds is None or creds.token:
                self._refused(what)
            return "Basic " + basic_auth(creds)  # type: ignore[arg-type]
        if scheme.lower() != "bearer" or not params.get("realm"):
            raise RemoteError(self.display, f"{what}: unknown auth challenge {scheme!r}")
        scope = params.get("scope", "")
        token = self._token(params["realm"], params.get("service", ""), scope, creds, what)
        self._secrets.add(token)
        return f"Bearer {token}"

    def _token(
        self, realm: str, service: str, scope: str, creds: Credentials | None, what: str
    ) -> str:
        """A token from the challenge's realm (the distribution token protocol): a GET with
        the credentials as Basic auth, or, for an identity token, the OAuth2 refresh grant."""
        query = {"service": service} if service else {}
        if scope:
            query["scope"] = scope
        if creds is not None and creds.token:
            form = {**query, "grant_type": "refresh_token", "refresh_token": creds.secret}
            form["client_id"] = "rmbuild"
            method, url = "POST", realm
            body: bytes | None = urlencode(form).encode()
            headers = {"Content-Type": "application/x-www-form-urlencoded"}
        else:
            method, url, body, headers = "GET", f"{realm}?{urlencode(query)}", None, {}
            if creds is not None:
                headers["Authorization"] = "Basic " + basic_auth(creds)
        try:
            resp = self._send(method, url, headers, body, None)
        except (OSError, http.client.HTTPException) as exc:
            raise RemoteError(
                self.display, f"{what}: cannot reach the token service ({type(exc).__name__})"
            ) from None
        if resp.status in (401, 403):
            self._refused(what, resp)
        if resp.status != 200:
            raise RemoteError(self.display, f"{what}: token service: {self._explain(resp)}")
        try:
            doc = json.loads(resp.body)
            token = str(doc.get("token") or doc.get("access_token") or "")
        except (ValueError, AttributeError):
            token = ""
        if not token:
            raise RemoteError(self.display, f"{what}: the token service answered no token")
        return token

    # ---- the API ---------------------------------------------------------------------------

    def blob_size(self, digest: str) -> int | None:
        """The size of blob ``digest`` in this repository, or None if it has none."""
        resp = self.request(
            "HEAD",
            self.url(f"blobs/sha256:{digest}"),
            what=f"checking blob {digest[:12]}",
            missing=(404,),
        )
        if resp.status == 404:
            return None
        return int(resp.headers.get("Content-Length") or -1)

    def get_blob(self, digest: str) -> bytes:
        """Small blob ``digest`` (a manifest, an attachment) in memory; FileNotFoundError if
        the registry lacks it. Not verified here: the caller hashes."""
        resp = self.request(
            "GET", self.url(f"blobs/sha256:{digest}"), what=f"downloading blob {digest[:12]}",
            missing=(404,),
        )  # fmt: skip
        if resp.status == 404:
            raise FileNotFoundError(digest)
        return resp.body

    def read_blob(self, digest: str, fd: int, advance: Advance | None) -> tuple[str, int]:
        """Stream blob ``digest`` into the open file ``fd``, hashing it on the way; returns the
        SHA-256 (hex) of what arrived and its length, for the caller to compare. One GET per
        blob: on a registry nearby, one stream per blob (and blobs in parallel) beats ranges.
        FileNotFoundError if the registry lacks it."""
        h = hashlib.sha256()
        total = flushed = 0

        def sink(resp: http.client.HTTPResponse) -> None:
            nonlocal total, flushed
            buf = bytearray(BLOCK)
            view = memoryview(buf)
            while n := resp.readinto(buf):
                h.update(view[:n])
                try:
                    out = view[:n]
                    while out:
                        out = out[os.write(fd, out) :]
                except OSError as exc:
                    raise SinkError(exc) from None
                total += n
                if total - flushed >= WRITEBACK:
                    # The disk writes while the next bytes arrive: the fsync before install
                    # then waits for the tail only, not for the whole blob.
                    start_writeback(fd, flushed, total - flushed)
                    flushed = total
                if advance is not None:
                    advance(n)

        resp = self.request(
            "GET", self.url(f"blobs/sha256:{digest}"), what=f"downloading blob {digest[:12]}",
            missing=(404,), sink=sink,
        )  # fmt: skip
        if resp.status == 404:
            raise FileNotFoundError(digest)
        return h.hexdigest(), total

    def upload_blob(self, digest: str, size: int, source: Path | bytes, advance: Advance | None):
        """Upload blob ``digest`` (a monolithic upload: POST for a session, one PUT with the
        bytes and the digest, which the registry checks before the blob exists). A failed
        upload cancels its session, best effort."""
        what = f"uploading blob {digest[:12]}"
        started = self.request("POST", self.url("blobs/uploads/"), what=what, ok=(202,))
        location = started.headers.get("Location")
        if not location:
            raise RemoteError(self.display, f"{what}: the registry gave no upload location")
        session = urljoin(self.address.base + "/", location)
        sep = "&" if urlsplit(session).query else "?"
        try:
            self.request(
                "PUT",
                f"{session}{sep}digest=sha256:{digest}",
                what=what,
                body=source,
                headers={"Content-Type": "application/octet-stream", "Content-Length": str(size)},
                ok=(201, 204),
                advance=advance,
            )
        except RemoteError:
            with contextlib.suppress(RemoteError):
                self.request("DELETE", session, what=what, ok=(204,), missing=(404, 400, 405))
            raise

    def get_manifest(self, ref: str, accept: str = MANIFEST) -> tuple[bytes, str] | None:
        """The manifest ``ref`` (a tag or ``sha256:<hex>``) names: its bytes and the digest
        the registry says they have; None if there is none."""
        resp = self.request(
            "GET",
            self.url(f"manifests/{quote(ref)}"),
            what=f"reading manifest {ref[:24]}",
            headers={"Accept": accept},
            missing=(404,),
        )
        if resp.status == 404:
            return None
        return resp.body, resp.headers.get("Docker-Content-Digest") or ""

    def manifest_digest(self, ref: str, accept: str = MANIFEST) -> str | None:
        """The digest tag ``ref`` points at (a HEAD: no body), or None."""
        resp = self.request(
            "HEAD",
            self.url(f"manifests/{quote(ref)}"),
            what=f"checking tag {ref[:24]}",
            headers={"Accept": accept},
            missing=(404,),
        )
        if resp.status == 404:
            return None
        return resp.headers.get("Docker-Content-Digest") or ""

    def put_manifest(self, ref: str, data: bytes, media_type: str = MANIFEST) -> Response:
        """Store manifest ``data`` under ``ref`` (a tag, or its own digest). The registry checks
        that every blob it names is there first: a manifest is visible whole or not at all."""
        return self.request(
            "PUT",
            self.url(f"manifests/{quote(ref)}"),
            what=f"writing manifest {ref[:24]}",
            body=data,
            headers={"Content-Type": media_type},
            ok=(201, 200, 204),
        )

    def tags(self) -> list[str]:
        """Every tag of the repository (the pages the registry's Link header chains)."""
        found: list[str] = []
        url: str | None = self.url("tags/list?n=1000")
        while url:
            resp = self.request("GET", url, what="listing tags", missing=(404,))
            if resp.status == 404:
                return found  # no repository yet: nothing was pushed
            try:
                found += [str(t) for t in json.loads(resp.body).get("tags") or []]
            except (ValueError, AttributeError):
                raise RemoteError(self.display, "listing tags: the answer is not JSON") from None
            link = resp.headers.get("Link") or ""
            match = re.search(r"<([^>]+)>\s*;\s*rel=\"?next\"?", link)
            url = urljoin(self.address.base + "/", match.group(1)) if match else None
        return found

    def referrers(self, digest: str) -> bytes | None:
        """The referrers API's index for ``digest``; None where the registry has no such API
        (then the OCI 1.1 fallback tag is the list)."""
        resp = self.request(
            "GET",
            self.url(f"referrers/sha256:{digest}"),
            what="listing referrers",
            headers={"Accept": INDEX},
            missing=(404, 400, 405),
        )
        if resp.status != 200 or INDEX not in (resp.headers.get("Content-Type") or ""):
            return None
        return resp.body


def _writeback() -> Callable[[int, int, int], None]:
    """``start_writeback(fd, offset, length)``: Linux's sync_file_range(SYNC_FILE_RANGE_WRITE),
    which starts writing those dirty pages out and returns at once; elsewhere, nothing (the
    fsync before install then does all of the writing)."""
    try:
        import ctypes

        fn = ctypes.CDLL(None, use_errno=True).sync_file_range
    except (OSError, AttributeError):
        return lambda fd, offset, length: None
    fn.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
    fn.restype = ctypes.c_int

    def start(fd: int, offset: int, length: int) -> None:
        fn(fd, offset, length, 2)  # SYNC_FILE_RANGE_WRITE; a failure leaves it to the fsync

    return start


start_writeback = _writeback()
