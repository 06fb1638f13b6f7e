"""A real OCI registry for the tests: Debian's ``docker-registry`` (the CNCF distribution
registry) on a free loopback port, with its storage in a temp folder; and a counting proxy in
front of it (bytes of blob uploads, and a Bearer token service where asked).

``.ci/registry.sh`` installs the package; where the binary is absent the fixtures skip, saying
so, unless ``RMBUILD_TEST_REGISTRY`` names it (CI): then its absence fails.
"""

from __future__ import annotations

import base64
import http.client
import json
import os
import secrets
import shutil
import socket
import subprocess
import threading
import time
import warnings
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

BIN_ENV = "RMBUILD_TEST_REGISTRY"
DEFAULT_BIN = "/usr/bin/docker-registry"


def registry_binary() -> str:
    """The registry binary, or a skip (a fail where ``$RMBUILD_TEST_REGISTRY`` names one)."""
    named = os.environ.get(BIN_ENV)
    if named:
        if not os.access(named, os.X_OK):
            pytest.fail(f"{BIN_ENV}={named} is not an executable registry")
        return named
    found = DEFAULT_BIN if os.access(DEFAULT_BIN, os.X_OK) else shutil.which("docker-registry")
    if not found:
        pytest.skip(
            "the OCI registry (Debian's docker-registry) is not installed: "
            "bash .ci/registry.sh installs it"
        )
    return found


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def bcrypt_htpasswd(user: str, password: str) -> str:
    """An htpasswd line (bcrypt: the only hash the registry takes)."""
    try:
        with warnings.catch_warnings():  # deprecated, gone in 3.13: htpasswd below then
            warnings.simplefilter("ignore", DeprecationWarning)
            import crypt

        hashed = crypt.crypt(password, crypt.mksalt(crypt.METHOD_BLOWFISH))
        if hashed and hashed.startswith("$2"):
            return f"{user}:{hashed}"
    except ImportError:
        pass
    tool = shutil.which("htpasswd")
    if tool is None:
        pytest.skip(
            "no bcrypt: neither Python's crypt nor htpasswd (apt-get install apache2-utils)"
        )
    done = subprocess.run(  # noqa: S603 - fixed argv
        [tool, "-nbB", user, password], capture_output=True, text=True, check=True
    )
    return done.stdout.strip()


class Registry:
    """One registry process; ``stop``/``start`` keep its port and storage (a restart)."""

    def __init__(self, root: Path, *, users: dict[str, str] | None = None) -> None:
        self.binary = registry_binary()
        self.root = root
        self.storage = root / "storage"
        self.log = root / "registry.log"
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        root.mkdir(parents=True, exist_ok=True)
        auth = ""
        if users:
            lines = [bcrypt_htpasswd(u, p) for u, p in users.items()]
            (root / "htpasswd").write_text("\n".join(lines) + "\n")
            auth = f"auth:\n  htpasswd:\n    realm: rmbuild-test\n    path: {root / 'htpasswd'}\n"
        (root / "config.yml").write_text(
            "version: 0.1\n"
            "log:\n  level: info\n  formatter: text\n  accesslog:\n    disabled: false\n"
            f"storage:\n  filesystem:\n    rootdirectory: {self.storage}\n"
            "  delete:\n    enabled: true\n"
            "  maintenance:\n    uploadpurging:\n      enabled: false\n"
            f"http:\n  addr: 127.0.0.1:{self.port}\n  secret: rmbuild-test-secret\n{auth}"
        )

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def url(self, repo: str) -> str:
        return f"oci://{self.host}/{repo}"

    def start(self) -> None:
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(  # noqa: S603 - fixed argv
                [self.binary, "serve", str(self.root / "config.yml")],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
                conn.request("GET", "/v2/")
                status = conn.getresponse().status
                conn.close()
                if status in (200, 401):
                    return
            except OSError:
                time.sleep(0.05)
        tail = self.log.read_text(errors="replace")[-2000:]
        self.stop()
        pytest.fail(f"the registry did not start on {self.host}:\n{tail}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=30)
        self.proc = None

    def blob_file(self, digest: str) -> Path:
        """Where the registry keeps blob ``digest`` (hex) on disk."""
        return self.storage / "docker/registry/v2/blobs/sha256" / digest[:2] / digest / "data"


def running(root: Path, **kw: dict[str, str]) -> Iterator[Registry]:
    registry = Registry(root, **kw)
    registry.start()
    try:
        yield registry
    finally:
        registry.stop()


class Proxy(ThreadingHTTPServer):
    """A reverse proxy to ``upstream`` on a free loopback port that counts the body bytes of
    blob uploads (``uploaded``); with ``token_user``, it also plays a registry's Bearer token
    auth: every /v2/ request needs a token its /token endpoint gives for Basic credentials."""

    daemon_threads = True

    def __init__(self, upstream: str, token_user: tuple[str, str] | None = None) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.upstream = upstream
        self.token_user = token_user
        self.tokens: set[str] = set()
        self.uploaded = 0
        self.token_requests = 0
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self.serve_forever, daemon=True)
        self.thread.start()

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.server_address[1]}"

    def url(self, repo: str) -> str:
        return f"oci://{self.host}/{repo}"

    def close(self) -> None:
        self.shutdown()
        self.server_close()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: Proxy

    def log_message(self, *args: object) -> None:
        pass

    def _reply(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        if "Content-Length" not in (headers or {}):
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _token(self) -> None:
        self.server.token_requests += 1
        user, password = self.server.token_user or ("", "")
        want = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
        if self.headers.get("Authorization") != want:
            self._reply(401, b'{"errors":[{"code":"UNAUTHORIZED"}]}')
            return
        token = secrets.token_hex(16)
        self.server.tokens.add(token)
        self._reply(
            200, json.dumps({"token": token}).encode(), {"Content-Type": "application/json"}
        )

    def _handle(self) -> None:
        if self.path.startswith("/token"):
            self._token()
            return
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        if self.server.token_user is not None:
            got = (self.headers.get("Authorization") or "").removeprefix("Bearer ")
            if got not in self.server.tokens:
                actions = "pull" if self.command in ("GET", "HEAD") else "pull,push"
                repo = self.path.split("/v2/", 1)[-1].split("/blobs/")[0].split("/manifests/")[0]
                challenge = (
                    f'Bearer realm="http://{self.server.host}/token",service="rmbuild-test",'
                    f'scope="repository:{repo}:{actions}"'
                )
                self._reply(401, b"{}", {"WWW-Authenticate": challenge})
                return
        if self.command in ("PUT", "PATCH") and "/blobs/uploads/" in self.path:
            with self.server.lock:
                self.server.uploaded += len(body)
        # The token is the proxy's; without token auth, the client's credentials go on.
        drop = {"connection", "content-length"}
        if self.server.token_user is not None:
            drop.add("authorization")
        headers = {k: v for k, v in self.headers.items() if k.lower() not in drop}
        conn = http.client.HTTPConnection(self.server.upstream, timeout=60)
        try:
            conn.request(self.command, self.path, body=body or None, headers=headers)
            resp = conn.getresponse()
            data = resp.read()
        except OSError:
            self._reply(502, b"upstream down")
            return
        finally:
            conn.close()
        out = {
            k: v
            for k, v in resp.getheaders()
            if k.lower() not in ("connection", "content-length", "transfer-encoding")
        }
        if self.command == "HEAD":  # no body: the size the registry said goes on as it is
            out["Content-Length"] = resp.getheader("Content-Length") or "0"
        self._reply(resp.status, data, out)

    do_GET = do_HEAD = do_PUT = do_POST = do_PATCH = do_DELETE = _handle


def docker_config(folder: Path, host: str, user: str, password: str) -> Path:
    """A Docker config folder whose ``auths`` hold ``user:password`` for ``host``."""
    folder.mkdir(parents=True, exist_ok=True)
    auth = base64.b64encode(f"{user}:{password}".encode()).decode()
    (folder / "config.json").write_text(json.dumps({"auths": {host: {"auth": auth}}}))
    return folder
