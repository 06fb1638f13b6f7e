"""artifact_store.remote on a real S3 protocol (moto server on loopback) and file://.

The fault tests feed the faults a shared cache meets: the server gone mid-push, a blob damaged
on the remote, wrong credentials; each checks the outcome and the message.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from pathlib import Path

import pytest

from artifact_store import Store
from artifact_store.errors import (
    AmbiguousRef,
    ArtifactCorrupt,
    ArtifactNotFound,
    RemoteAuthError,
    RemoteCorrupt,
    RemoteError,
)
from artifact_store.remote import Remote, redact_url, scrub  # fsspec only once a remote opens

KEY = "ab12" * 16


def _artifact(store: Store, tmp_path: Path, key: str = KEY, *, big: int = 0, **kw: str):  # noqa: ANN202
    src = tmp_path / f"src-{key[:6]}"
    src.mkdir()
    (src / "model.bin").write_bytes(os.urandom(big or 50_000))
    (src / "sub").mkdir()
    (src / "sub" / "config.json").write_text('{"a": 1}')
    manifest = store.put_tree(src)
    log = store.put_bytes(b"the build log of " + key.encode())
    meta = {"blobs": [log], "parents": [], "profile": "p", "secret_free": True}
    fields = {"model": "tiny", "target": "cpu", "backend": "onnxruntime", **kw}
    return store.commit(key, manifest, metadata=meta, **fields)


@pytest.fixture
def stores(tmp_path: Path) -> tuple[Store, Store]:
    with Store(tmp_path / "a") as a, Store(tmp_path / "b") as b:
        yield a, b


def _files(store: Store, key: str) -> dict[str, bytes]:
    tree = store.materialize(key)
    return {
        str(p.relative_to(tree)): p.read_bytes() for p in sorted(tree.rglob("*")) if p.is_file()
    }


def test_push_then_pull_round_trip_over_s3(s3_remote: str, stores, tmp_path: Path) -> None:  # noqa: ANN001
    a, b = stores
    record = _artifact(a, tmp_path)
    a.tag("chat-main", record.key)
    remote = Remote(s3_remote)
    report = remote.push(a, [record.key])
    assert report.keys == [record.key] and report.blobs == 4  # 2 files, manifest, log
    again = remote.push(a, [record.key])
    assert again.keys == [] and again.present == [record.key] and again.blobs == 0
    assert [e.key for e in remote.list()] == [record.key]
    assert remote.list()[0].aliases == ("chat-main",)
    a.tag("chat-next", record.key)  # an alias given after the push goes with the next one
    assert remote.push(a, [record.key]).keys == [] and remote.resolve("chat-next").key == record.key
    pulled = remote.pull(b, remote.resolve("chat-main"))
    assert pulled.key == record.key and pulled.manifest_digest == record.manifest_digest
    assert pulled.metadata == record.metadata and pulled.uses == (("tiny", "cpu"),)
    assert _files(b, record.key) == _files(a, record.key)
    assert b.read_bytes(record.metadata["blobs"][0]).startswith(b"the build log")
    assert b.check(pulled) == []


def test_large_blob_comes_in_parallel_ranges(s3_remote: str, stores, tmp_path: Path) -> None:  # noqa: ANN001
    a, b = stores
    record = _artifact(a, tmp_path, big=3_000_000 + 17)
    remote = Remote(s3_remote, part_size=256 * 1024, jobs=4)
    seen: list[tuple[int, int]] = []
    remote.push(a, [record.key], on_progress=lambda d, t: seen.append((d, t)))
    assert seen and seen[-1][0] == seen[-1][1]  # progress reached the total
    got: list[int] = []
    remote.pull(b, record.key, on_progress=lambda d, t: got.append(d))
    assert got[-1] >= 3_000_000
    assert _files(b, record.key) == _files(a, record.key)


def test_resolve_by_alias_prefix_and_model_target(s3_remote: str, stores, tmp_path: Path) -> None:  # noqa: ANN001
    a, _ = stores
    one = _artifact(a, tmp_path, "abcd" + "1" * 60)
    two = _artifact(a, tmp_path, "abcd" + "2" * 60, target="gpu")
    remote = Remote(s3_remote)
    remote.push(a, [one.key, two.key])
    assert remote.resolve("abcd1").key == one.key
    assert remote.resolve("tiny:gpu").key == two.key
    with pytest.raises(AmbiguousRef):
        remote.resolve("abcd")
    with pytest.raises(ArtifactNotFound, match="not on the remote s3://"):
        remote.resolve("tiny:npu")


class _Proxy:
    """A TCP relay in front of the S3 server: ``stop()`` cuts every connection, as a server
    going away does; ``start()`` brings it back on the same port."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self.port = 0
        self._socks: list[socket.socket] = []
        self._listener: socket.socket | None = None

    def start(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self.port = listener.getsockname()[1]
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            server = socket.create_connection(self.upstream)
            self._socks += [client, server]
            for src, dst in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(src, dst), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def stop(self) -> None:
        if self._listener is not None:
            self._listener.close()
        for s in self._socks:
            try:
                s.shutdown(socket.SHUT_RDWR)
                s.close()
            except OSError:
                pass
        self._socks.clear()


def test_server_stopped_mid_push_then_the_retry_completes(
    s3_remote: str, stores, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:  # noqa: ANN001
    a, b = stores
    record = _artifact(a, tmp_path, big=2_000_000)
    direct = Remote(s3_remote)
    host, port = os.environ["AWS_ENDPOINT_URL"].rsplit("/", 1)[-1].split(":")
    proxy = _Proxy((host, int(port)))
    proxy.start()
    options = {
        "endpoint_url": f"http://127.0.0.1:{proxy.port}",
        "config_kwargs": {"retries": {"max_attempts": 1}, "connect_timeout": 2},
    }
    remote = Remote(s3_remote, storage_options=options, part_size=256 * 1024, jobs=1)
    stopped = threading.Event()

    def cut(done: int, total: int) -> None:
        if done and not stopped.is_set():
            stopped.set()
            proxy.stop()  # the server goes away after the first object

    with pytest.raises(RemoteError) as info:
        remote.push(a, [record.key], on_progress=cut)
    assert stopped.is_set(), info.value
    message = str(info.value)
    assert message.startswith(f"remote {s3_remote}: uploading")
    assert os.environ["AWS_SECRET_ACCESS_KEY"] not in message
    # Half a push is never visible: no entry, so nothing to pull.
    assert direct.list() == [] and direct.get(record.key) is None
    # The local artifact is intact.
    assert a.get(record.key) is not None and a.check(a.get(record.key)) == []
    assert a.verify(record.key) == []
    proxy.start()  # the server is back
    try:
        report = remote.push(a, [record.key])
    finally:
        proxy.stop()
    assert report.keys == [record.key] and 0 < report.blobs < 4  # only what was missing
    assert direct.pull(b, record.key).key == record.key
    assert _files(b, record.key) == _files(a, record.key)


def _s3():  # noqa: ANN202 - a boto3 client on the test server, to damage what it holds
    boto3 = pytest.importorskip("boto3", reason="boto3 not installed (dev)")
    return boto3.client("s3", endpoint_url=os.environ["AWS_ENDPOINT_URL"])


@pytest.mark.parametrize("what", ["file", "manifest"])
def test_a_blob_corrupted_on_the_remote_never_enters_the_store(
    s3_remote: str, stores, tmp_path: Path, what: str
) -> None:  # noqa: ANN001
    a, b = stores
    record = _artifact(a, tmp_path, big=1_000_000)
    remote = Remote(s3_remote, part_size=128 * 1024)
    remote.push(a, [record.key])
    manifest = a.get_manifest(record.manifest_digest)
    digest = manifest.files["model.bin"].digest if what == "file" else manifest.digest
    bucket, prefix = s3_remote.removeprefix("s3://").split("/", 1)
    name = f"{prefix}/objects/{digest[:2]}/{digest[2:]}"
    good = _s3().get_object(Bucket=bucket, Key=name)["Body"].read()
    bad = bytearray(good)
    bad[len(bad) // 2] ^= 0xFF  # same size: only the digest can tell
    _s3().put_object(Bucket=bucket, Key=name, Body=bytes(bad))
    with pytest.raises(RemoteCorrupt) as info:
        remote.pull(b, record.key)
    assert str(info.value).startswith(f"remote {s3_remote}: ")
    assert digest[:12] in str(info.value) and "nothing entered the local store" in str(info.value)
    assert b.get(record.key) is None
    assert list(b.iter_blobs()) == []  # not the bad blob, nor the good ones beside it
    assert list((b.root / "tmp").iterdir()) == []


def test_wrong_credentials_name_the_remote_and_no_secret(
    s3_remote: str, stores, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:  # noqa: ANN001
    import moto.settings

    a, _ = stores
    record = _artifact(a, tmp_path)
    secret = "wrong-secret-9f8e7d6c5b4a"
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAWRONGWRONGWRONG0")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", secret)
    monkeypatch.setattr(moto.settings, "INITIAL_NO_AUTH_ACTION_COUNT", 0)  # moto checks keys
    remote = Remote(s3_remote)
    with pytest.raises(RemoteAuthError) as info:
        remote.push(a, [record.key])
    message = str(info.value)
    assert message.startswith(f"remote {s3_remote}: ") and "access denied" in message
    assert "credentials" in message and secret not in message
    assert a.check(a.get(record.key)) == []


def test_push_refuses_a_corrupt_local_artifact(s3_remote: str, stores, tmp_path: Path) -> None:  # noqa: ANN001
    a, _ = stores
    record = _artifact(a, tmp_path)
    digest = a.get_manifest(record.manifest_digest).files["model.bin"].digest
    blob = a.blob_path(digest)
    os.chmod(blob, 0o644)
    blob.write_bytes(b"damaged")
    with pytest.raises(ArtifactCorrupt):
        Remote(s3_remote).push(a, [record.key])
    assert Remote(s3_remote).list() == []


def test_file_remote_moves_temp_names_into_place(stores, tmp_path: Path) -> None:  # noqa: ANN001
    pytest.importorskip("fsspec", reason="fsspec not installed (extra: remote)")
    a, b = stores
    record = _artifact(a, tmp_path)
    remote = Remote(f"file://{tmp_path / 'shared'}")
    assert not remote.atomic
    remote.push(a, [record.key])
    assert list((tmp_path / "shared" / "tmp").iterdir()) == []
    assert (tmp_path / "shared" / "entries" / f"{record.key}.json").is_file()
    assert remote.pull(b, "tiny:cpu").key == record.key


def test_pull_with_parents_pushes_the_upstream_stage(stores, tmp_path: Path) -> None:  # noqa: ANN001
    pytest.importorskip("fsspec", reason="fsspec not installed (extra: remote)")
    a, _ = stores
    up = _artifact(a, tmp_path, "aaaa" + "0" * 60)
    down_src = tmp_path / "down"
    down_src.mkdir()
    (down_src / "engine").write_bytes(b"engine")
    down = a.commit(
        "bbbb" + "0" * 60,
        a.put_tree(down_src),
        model="tiny",
        target="cpu",
        backend="b",
        metadata={"parents": [up.key]},
    )
    remote = Remote(f"memory://rmbuild-test-{tmp_path.name}")
    assert sorted(remote.push(a, [down.key]).keys) == sorted([up.key, down.key])


def test_urls_and_messages_lose_their_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    assert redact_url("s3://AKIA:hunter22@bucket/x?X-Amz-Signature=abc#f") == "s3://bucket/x"
    assert redact_url("/plain/path") == "/plain/path"
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "s3cr3t-value")
    assert scrub("boom s3cr3t-value and ?Signature=xyz") == "boom *** and ?Signature=***"
    remote = Remote("file://user:pw-0123@host/x?sig=qs-0123")
    assert "pw-0123" not in repr(remote) and remote.display == "file://host/x"
    assert remote._scrub("failed for pw-0123 and qs-0123") == "failed for *** and ***"


def test_a_missing_filesystem_package_is_a_remote_error() -> None:
    with pytest.raises(RemoteError, match="no filesystem for this URL|unknown protocol"):
        Remote("nosuchproto://bucket/x").get(KEY)


# ---- what a failed push leaves behind ------------------------------------------------------


def test_a_failed_file_push_leaves_no_temp_file_and_retries_do_not_pile_up(
    stores, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:  # noqa: ANN001
    import errno

    pytest.importorskip("fsspec", reason="fsspec not installed (extra: remote)")
    a, b = stores
    record = _artifact(a, tmp_path)
    remote = Remote(f"file://{tmp_path / 'shared'}")
    fs = remote.fs

    def full_disk(local: str, rpath: str, **_: object) -> None:
        Path(rpath).write_bytes(b"the first bytes of a blob")  # then the disk is full
        raise OSError(errno.ENOSPC, "No space left on device", rpath)

    with monkeypatch.context() as m:
        m.setattr(fs, "put_file", full_disk)
        for _ in range(3):  # each retry used to add one more partial file
            with pytest.raises(RemoteError, match="No space left on device"):
                remote.push(a, [record.key])
            assert list((tmp_path / "shared" / "tmp").iterdir()) == []
    assert remote.push(a, [record.key]).keys == [record.key]  # room again: the retry completes
    assert remote.pull(b, record.key).key == record.key


def test_stale_remote_temp_files_go_with_the_next_push_and_gc_remote(
    stores, tmp_path: Path
) -> None:  # noqa: ANN001
    pytest.importorskip("fsspec", reason="fsspec not installed (extra: remote)")
    from artifact_store.remote_gc import REMOTE_TMP_GRACE, collect_remote

    a, _ = stores
    record = _artifact(a, tmp_path)
    tmp = tmp_path / "shared" / "tmp"
    tmp.mkdir(parents=True)
    old = time.time() - REMOTE_TMP_GRACE - 60

    def left_by_a_killed_push(name: str) -> Path:
        path = tmp / name
        path.write_bytes(b"x" * 1000)
        os.utime(path, (old, old))
        return path

    dead = left_by_a_killed_push("dead1")
    young = tmp / "young"  # another host's push, still writing
    young.write_bytes(b"y")
    remote = Remote(f"file://{tmp_path / 'shared'}")
    remote.push(a, [record.key])
    assert not dead.exists() and young.exists()
    dead = left_by_a_killed_push("dead2")
    dry = collect_remote(remote, dry_run=True)
    assert (dry.tmp_removed, dry.bytes_freed, dry.kept_young) == (1, 1000, 1) and dead.exists()
    report = collect_remote(remote)
    assert (report.tmp_removed, report.bytes_freed, report.uploads_aborted) == (1, 1000, 0)
    assert not dead.exists() and young.exists()
    assert "removed 1 temp object(s) (1000 bytes)" in report.summary()


def _uploads(s3_remote: str) -> list[str]:
    bucket = s3_remote.removeprefix("s3://").split("/", 1)[0]
    return [u["Key"] for u in _s3().list_multipart_uploads(Bucket=bucket).get("Uploads", [])]


def test_an_s3_push_cut_mid_upload_leaves_no_multipart_upload_after_the_retry(
    s3_remote: str, stores, tmp_path: Path
) -> None:  # noqa: ANN001
    a, b = stores
    record = _artifact(a, tmp_path, big=3_000_000)
    host, port = os.environ["AWS_ENDPOINT_URL"].rsplit("/", 1)[-1].split(":")
    proxy = _Proxy((host, int(port)))
    proxy.start()
    options = {
        "endpoint_url": f"http://127.0.0.1:{proxy.port}",
        "config_kwargs": {"retries": {"max_attempts": 1}, "connect_timeout": 2},
    }
    remote = Remote(s3_remote, storage_options=options, part_size=256 * 1024, jobs=1)
    stopped = threading.Event()

    def cut(done: int, total: int) -> None:
        if done > 1_000_000 and not stopped.is_set():  # a third into the big blob's parts
            stopped.set()
            proxy.stop()

    with pytest.raises(RemoteError):
        remote.push(a, [record.key], on_progress=cut)
    assert stopped.is_set()
    # The server went away, so the abort could not reach it: the upload is orphaned, and the
    # store wrote it down.
    assert len(_uploads(s3_remote)) == 1
    assert len(list((a.root / "tmp" / "s3-uploads").iterdir())) == 1
    proxy.start()
    try:
        report = remote.push(a, [record.key])
    finally:
        proxy.stop()
    assert report.keys == [record.key]
    assert _uploads(s3_remote) == []  # the retry aborted the cut upload
    assert list((a.root / "tmp" / "s3-uploads").iterdir()) == []
    assert Remote(s3_remote).pull(b, record.key).key == record.key


def test_gc_remote_aborts_multipart_uploads_past_their_grace(s3_remote: str) -> None:
    from artifact_store.remote_gc import collect_remote

    bucket, prefix = s3_remote.removeprefix("s3://").split("/", 1)
    _s3().create_multipart_upload(Bucket=bucket, Key=f"{prefix}/objects/ab/{'c' * 62}")
    _s3().create_multipart_upload(Bucket=bucket, Key="not-the-remote/x")  # outside its prefix
    remote = Remote(s3_remote)
    # moto dates every upload 2010-11-10: a grace longer than that stands for a young upload,
    # one that a push may still be sending.
    young = collect_remote(remote, upload_grace=1e10)
    assert (young.uploads_aborted, young.kept_young) == (0, 1)
    assert len(_uploads(s3_remote)) == 2
    report = collect_remote(remote, upload_grace=0)
    assert report.uploads_aborted == 1 and report.aborted == [f"{prefix}/objects/ab/{'c' * 62}"]
    assert _uploads(s3_remote) == ["not-the-remote/x"]


# ---- aliases travel with artifacts ----------------------------------------------------------


def test_an_alias_given_after_the_push_reaches_the_remote_and_every_pull(
    stores, tmp_path: Path
) -> None:  # noqa: ANN001
    import json

    pytest.importorskip("fsspec", reason="fsspec not installed (extra: remote)")
    a, b = stores
    record = _artifact(a, tmp_path)
    remote = Remote(f"file://{tmp_path / 'shared'}")
    remote.push(a, [record.key])  # as `compile --remote` does, before `--tag` applies
    a.tag("chat-main", record.key)
    report = remote.push(a, [record.key])
    assert report.keys == [] and report.present == [record.key]
    entry = json.loads((tmp_path / "shared" / "entries" / f"{record.key}.json").read_bytes())
    assert entry["aliases"] == ["chat-main"]
    assert remote.resolve("chat-main").aliases == ("chat-main",)
    # Pulled by id, the alias comes along; pulled by the alias, too.
    assert "chat-main" in remote.pull(b, record.key).aliases
    assert b.resolve("chat-main").key == record.key
    with Store(tmp_path / "c") as c:
        assert remote.pull(c, "chat-main").key == record.key
        assert c.resolve("chat-main").key == record.key
