"""artifact_store.oci against a real OCI registry (Debian's docker-registry on loopback).

The registry is the CNCF distribution registry 2.8: no referrers API, so attachments take the
OCI 1.1 tag fallback. The faults are those a shared registry meets: stopped mid-push, a layer
damaged in its storage, credentials missing or wrong (Basic through htpasswd, Bearer through a
token service in a proxy); each test checks the outcome and the message.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import pickle
import shutil
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from artifact_store import Store, attachments
from artifact_store.attachments import Attachment
from artifact_store.errors import (
    AmbiguousRef,
    ArtifactNotFound,
    InvalidAlias,
    RemoteAuthError,
    RemoteCorrupt,
    RemoteError,
)
from artifact_store.oci import OCIRemote
from artifact_store.oci_layout import INDEX, MANIFEST, parse_url
from artifact_store.results import ActionResult
from tests.artifact_store.oci_registry import Proxy, Registry, docker_config, running

KEY = "ab12" * 16
OTHER = "cd34" * 16


@pytest.fixture
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    """A registry of the test's own: the registry keeps one blob store for all repositories,
    so a test that damages a blob there must not reach the next test's pushes."""
    yield from running(tmp_path_factory.mktemp("registry"))


@pytest.fixture
def repo(registry: Registry, request: pytest.FixtureRequest) -> str:
    name = "".join(c if c.isalnum() else "-" for c in request.node.name.lower()).strip("-")
    # A repository per test and per parameter (the sqlite and postgres runs of one test push
    # the same keys): the cut name, then a digest of the whole one.
    tag = hashlib.sha256(request.node.name.encode()).hexdigest()[:8]
    return registry.url(f"t/{name[:50].strip('-')}-{tag}")


@pytest.fixture
def stores(tmp_path: Path) -> Iterator[tuple[Store, Store]]:
    with Store(tmp_path / "a") as a, Store(tmp_path / "b") as b:
        yield a, b


@pytest.fixture(autouse=True)
def no_docker_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The user's own Docker credentials stay out."""
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "no-docker-config"))


def _artifact(store: Store, tmp_path: Path, key: str = KEY, *, big: int = 0, **kw):  # noqa: ANN003, ANN202
    src = tmp_path / f"src-{key[:6]}"
    src.mkdir()
    (src / "model.bin").write_bytes(os.urandom(big or 50_000))
    (src / "sub").mkdir()
    (src / "sub" / "config.json").write_text('{"a": 1}')
    (src / "README.md").write_text("an engine")
    manifest = store.put_tree(src)
    log = store.put_bytes(b"the build log of " + key.encode())
    meta = {
        "blobs": [log],
        "log": log,
        "parents": kw.pop("parents", []),
        "profile": "p",
        "toolchain": {"name": "fake-tc", "python": "3.11", "packages": {}},
    }
    fields = {"model": "tiny", "target": "cpu", "backend": "onnxruntime", **kw}
    return store.commit(key, manifest, metadata=meta, **fields)


def _files(store: Store, key: str) -> dict[str, bytes]:
    tree = store.materialize(key)
    return {
        str(p.relative_to(tree)): p.read_bytes() for p in sorted(tree.rglob("*")) if p.is_file()
    }


def _oci_manifest(remote: OCIRemote, ref: str) -> dict:
    found = remote.client.get_manifest(ref)
    assert found is not None, ref
    return json.loads(found[0])


def test_push_writes_one_oci_manifest_of_raw_layers_the_rmbuild_manifest_as_config(
    repo: str, stores, tmp_path: Path
) -> None:  # noqa: ANN001
    a, _ = stores
    record = _artifact(a, tmp_path)
    remote = OCIRemote(repo, describe=lambda e: {"dev.rmbuild.device-class": "cpu"})
    report = remote.push(a, [record.key])
    assert report.keys == [record.key] and report.blobs == 5  # 3 files, manifest, log
    doc = _oci_manifest(remote, record.key)
    assert doc["artifactType"] == "application/vnd.cncf.model.manifest.v1+json"
    assert doc["config"] == {
        "mediaType": "application/vnd.rmbuild.manifest.v1+json",
        "digest": f"sha256:{record.manifest_digest}",
        "size": len(a.get_manifest(record.manifest_digest).to_json()),
    }
    files = a.get_manifest(record.manifest_digest).files
    layers = {l["annotations"].get("org.cncf.model.filepath"): l for l in doc["layers"]}  # noqa: E741
    for rel, entry in files.items():
        # Raw: a layer's digest is the file's own SHA-256 (what a signature records).
        assert (
            layers[rel]["digest"] == f"sha256:{entry.digest}" and layers[rel]["size"] == entry.size
        )
        assert layers[rel]["annotations"]["org.opencontainers.image.title"] == rel
    assert layers["model.bin"]["mediaType"] == "application/vnd.cncf.model.weight.v1.raw"
    assert (
        layers["sub/config.json"]["mediaType"] == "application/vnd.cncf.model.weight.config.v1.raw"
    )
    assert layers["README.md"]["mediaType"] == "application/vnd.cncf.model.doc.v1.raw"
    assert layers[None]["annotations"] == {"dev.rmbuild.role": "log"}
    notes = doc["annotations"]
    assert notes["dev.rmbuild.key"] == record.key and notes["dev.rmbuild.model"] == "tiny"
    assert notes["dev.rmbuild.target"] == "cpu" and notes["dev.rmbuild.backend"] == "onnxruntime"
    assert notes["dev.rmbuild.toolchain"] == "fake-tc"
    assert notes["dev.rmbuild.device-class"] == "cpu"
    assert report.digests[record.key].startswith("sha256:")


def test_pull_by_tag_and_by_digest_into_empty_stores(repo: str, stores, tmp_path: Path) -> None:  # noqa: ANN001
    a, b = stores
    record = _artifact(a, tmp_path, big=3_000_000)
    a.tag("chat-main", record.key)
    remote = OCIRemote(repo)
    digest = remote.push(a, [record.key]).digests[record.key]
    # By tag (the alias): the alias comes along.
    fresh = OCIRemote(repo)
    entry = fresh.resolve("chat-main")
    assert entry.key == record.key and "chat-main" in entry.aliases
    pulled = fresh.pull(b, entry)
    assert pulled.key == record.key and pulled.aliases == ("chat-main",)
    assert b.verify(record.key) == [] and _files(b, record.key) == _files(a, record.key)
    # By digest, pinned to that manifest.
    with Store(tmp_path / "c") as c:
        by_digest = OCIRemote(repo).pull(c, digest)
        assert by_digest.key == record.key and c.verify(record.key) == []
        assert _files(c, record.key) == _files(a, record.key)
    with pytest.raises(ArtifactNotFound, match="no manifest sha256:0000"):
        OCIRemote(repo).resolve("sha256:" + "0" * 64)


def test_list_resolve_and_foreign_tags(repo: str, stores, tmp_path: Path) -> None:  # noqa: ANN001
    a, _ = stores
    one = _artifact(a, tmp_path, "abcd1" + "1" * 59)
    two = _artifact(a, tmp_path, "abcd0" + "0" * 59, target="gpu")
    a.tag("chat-main", one.key)
    remote = OCIRemote(repo)
    remote.push(a, [one.key, two.key])
    # Another tool's image in the same repository is not an artifact, and is skipped.
    empty = remote.ensure_blob(b"{}")
    blank = {
        "mediaType": "application/vnd.oci.empty.v1+json",
        "digest": f"sha256:{empty}",
        "size": 2,
    }
    foreign = {"schemaVersion": 2, "mediaType": MANIFEST, "config": blank, "layers": [blank]}
    remote.client.put_manifest("latest", json.dumps(foreign).encode())
    listed = {e.key: e for e in OCIRemote(repo).list()}
    assert set(listed) == {one.key, two.key}
    assert listed[one.key].aliases == ("chat-main",) and listed[two.key].aliases == ()
    assert remote.resolve("abcd0").key == two.key
    assert remote.resolve("tiny:gpu").key == two.key
    with pytest.raises(AmbiguousRef):
        remote.resolve("abcd")
    with pytest.raises(ArtifactNotFound, match=f"not on the remote {repo}"):
        remote.resolve("tiny:npu")
    with pytest.raises(RemoteCorrupt, match="not an artifact rmbuild pushed"):
        remote.resolve("latest")
    remote.tag("chat-next", two.key)
    assert remote.resolve("chat-next").key == two.key


def test_a_repush_uploads_no_layer_bytes(registry: Registry, stores, tmp_path: Path) -> None:  # noqa: ANN001
    a, _ = stores
    record = _artifact(a, tmp_path, big=2_000_000)
    proxy = Proxy(registry.host)
    try:
        remote = OCIRemote(proxy.url("t/repush"))
        first = remote.push(a, [record.key])
        sent = proxy.uploaded
        assert first.blobs == 5 and sent >= 2_000_000 and first.bytes == sent
        proxy.uploaded = 0
        again = OCIRemote(proxy.url("t/repush")).push(a, [record.key])
        assert again.keys == [] and again.present == [record.key]
        assert proxy.uploaded == 0 and again.bytes == 0  # counted at the proxy, not by us
        # A new artifact sharing the big file uploads only what the registry lacks.
        src = tmp_path / "next"
        shutil.copytree(a.materialize(record.key), src)
        (src / "extra.txt").write_text("one more file")
        manifest = a.put_tree(src)
        a.commit(OTHER, manifest, model="tiny", target="gpu", backend="onnxruntime", metadata={})
        third = OCIRemote(proxy.url("t/repush")).push(a, [OTHER])
        # The new file and the new rmbuild manifest: not the big file again.
        assert third.keys == [OTHER] and third.blobs == 2 and 0 < proxy.uploaded < 2_000
    finally:
        proxy.close()


def test_registry_stopped_mid_push_then_the_retry_completes(tmp_path: Path, stores) -> None:  # noqa: ANN001
    a, b = stores
    record = _artifact(a, tmp_path, big=4_000_000)
    registry = Registry(tmp_path / "own-registry")
    registry.start()
    try:
        remote = OCIRemote(registry.url("t/stopped"), jobs=1)
        stopped = []

        def cut(done: int, total: int) -> None:
            if done and not stopped:
                stopped.append(done)
                registry.stop()  # the registry goes away during the first upload

        with pytest.raises(RemoteError) as info:
            remote.push(a, [record.key], on_progress=cut)
        assert stopped and str(info.value).startswith(f"remote {registry.url('t/stopped')}: ")
        assert "cannot reach the registry" in str(info.value)
        registry.start()
        direct = OCIRemote(registry.url("t/stopped"))
        # Half a push is never visible: no tag, nothing listed, nothing to pull.
        assert direct.get(record.key) is None and direct.list() == []
        assert a.check(a.get(record.key)) == [] and a.verify(record.key) == []
        report = OCIRemote(registry.url("t/stopped")).push(a, [record.key])
        assert report.keys == [record.key]
        assert direct.pull(b, record.key).key == record.key
        assert _files(b, record.key) == _files(a, record.key)
    finally:
        registry.stop()


@pytest.mark.parametrize("what", ["file", "manifest"])
def test_a_layer_corrupted_in_the_registry_never_enters_the_store(
    registry: Registry, stores, tmp_path: Path, what: str
) -> None:  # noqa: ANN001
    a, b = stores
    record = _artifact(a, tmp_path, KEY if what == "file" else OTHER, big=1_000_000)
    url = registry.url(f"t/corrupt-{what}")
    OCIRemote(url).push(a, [record.key])
    manifest = a.get_manifest(record.manifest_digest)
    digest = manifest.files["model.bin"].digest if what == "file" else manifest.digest
    stored = registry.blob_file(digest)
    os.chmod(stored, stat.S_IRUSR | stat.S_IWUSR)
    bad = bytearray(stored.read_bytes())
    bad[len(bad) // 2] ^= 0xFF  # same size: only the digest can tell
    stored.write_bytes(bytes(bad))
    with pytest.raises(RemoteCorrupt) as info:
        OCIRemote(url).pull(b, record.key)
    message = str(info.value)
    assert message.startswith(f"remote {url}: ") and digest[:12] in message
    assert "nothing entered the local store" in message
    assert b.get(record.key) is None
    assert list(b.iter_blobs()) == []  # not the bad blob, nor the good ones beside it
    assert list((b.root / "tmp").iterdir()) == []


def test_attachments_travel_as_referrers_with_the_tag_fallback(
    repo: str, stores, tmp_path: Path
) -> None:  # noqa: ANN001
    a, b = stores
    record = _artifact(a, tmp_path)
    subject = record.manifest_digest
    first = Attachment(subject, "oms.sigstore.json", b'{"bundle": 1}')
    attachments.put(a, first)
    remote = OCIRemote(repo)
    digest = remote.push(a, [record.key]).digests[record.key].removeprefix("sha256:")
    # distribution 2.8 has no referrers API: the fallback tag's index lists the referrer.
    index = json.loads(remote.client.get_manifest(f"sha256-{digest}", accept=INDEX)[0])
    assert [m["artifactType"] for m in index["manifests"]] == [
        "application/vnd.dev.sigstore.bundle.v0.3+json"
    ]
    referrer = _oci_manifest(remote, index["manifests"][0]["digest"])
    assert referrer["subject"]["digest"] == f"sha256:{digest}"
    assert referrer["layers"][0]["digest"] == f"sha256:{first.digest}"
    # One made after the first push reaches the registry with the next push.
    later = Attachment(subject, "slsa.sigstore.json", b'{"bundle": 2}')
    attachments.put(a, later)
    remote.push(a, [record.key])
    seen: list[list[str]] = []
    OCIRemote(repo).pull(
        b, record.key, admit=lambda e, m, found: seen.append(sorted(x.kind for x in found))
    )
    assert seen == [["oms.sigstore.json", "slsa.sigstore.json"]]
    assert {x.name for x in attachments.local(b, subject)} == {first.name, later.name}


def test_a_refused_admission_leaves_nothing(repo: str, stores, tmp_path: Path) -> None:  # noqa: ANN001
    a, b = stores
    record = _artifact(a, tmp_path)
    OCIRemote(repo).push(a, [record.key])

    def refuse(*_: object) -> None:
        raise ArtifactNotFound(record.key, "refused by the test's policy")

    with pytest.raises(ArtifactNotFound, match="refused by the test's policy"):
        OCIRemote(repo).pull(b, record.key, admit=refuse)
    assert b.get(record.key) is None and list(b.iter_blobs()) == []


def test_action_results_travel_without_their_files(repo: str, stores, tmp_path: Path) -> None:  # noqa: ANN001
    a, b = stores
    parent = "ef56" * 16
    export = ActionResult(parent, "9" * 64)
    a.record_results([export])  # a's store knows the export's result, not its files
    record = _artifact(a, tmp_path, parents=[parent])
    remote = OCIRemote(repo)
    remote.push(a, [record.key])
    assert remote.read_result(parent) == export and remote.read_result(KEY[::-1]) is None
    assert remote.get(parent) is None  # a result is not an artifact
    assert [e.key for e in remote.list()] == [record.key]
    OCIRemote(repo).pull(b, record.key)
    assert b.result(parent) == export


def test_url_errors_say_what_is_wrong() -> None:
    assert parse_url("oci://127.0.0.1:5000/team/models").plain_http is True
    assert parse_url("oci://localhost/x").plain_http is True
    assert parse_url("oci://registry.example.com/x").plain_http is False
    for url, words in [
        ("oci://host", "no repository"),
        ("oci:///repo", "no registry host"),
        ("oci://host/Repo", "not a repository name"),
        ("oci://host/repo:v1", "names a tag or digest"),
        ("oci://u:pw@host/repo", "no user, password"),
    ]:
        with pytest.raises(ValueError, match=words):
            parse_url(url)


def test_aliases_oci_cannot_hold_are_refused_before_any_upload(
    repo: str, stores, tmp_path: Path
) -> None:  # noqa: ANN001
    a, _ = stores
    record = _artifact(a, tmp_path)
    a.tag("x" * 130, record.key)
    remote = OCIRemote(repo)
    with pytest.raises(InvalidAlias, match="cannot be an OCI tag"):
        remote.push(a, [record.key])
    assert remote.client.tags() == []


def test_picklable_for_build_workers(repo: str) -> None:
    remote = OCIRemote(repo, options={"timeout": 5}, jobs=3)
    copy = pickle.loads(pickle.dumps(remote))
    assert copy.display == repo and copy.jobs == 3 and copy.client.timeout == 5


# ---- auth ------------------------------------------------------------------------------------

PASSWORD = "s3cret-Pa55word-7f1e"


@pytest.fixture(scope="module")
def locked(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    """A registry that needs a user and password (htpasswd, Basic auth)."""
    yield from running(tmp_path_factory.mktemp("locked"), users={"ci": PASSWORD})


def test_basic_auth_from_the_docker_config(
    locked: Registry, stores, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:  # noqa: ANN001
    a, b = stores
    record = _artifact(a, tmp_path)
    url = locked.url("t/basic")
    with pytest.raises(RemoteAuthError) as missing:
        OCIRemote(url).push(a, [record.key])
    assert "docker login 127.0.0.1" in str(missing.value)
    monkeypatch.setenv(
        "DOCKER_CONFIG", str(docker_config(tmp_path / "dc", locked.host, "ci", PASSWORD))
    )
    OCIRemote(url).push(a, [record.key])
    assert OCIRemote(url).pull(b, record.key).key == record.key
    docker_config(tmp_path / "dc", locked.host, "ci", "wrong-" + PASSWORD)
    with pytest.raises(RemoteAuthError) as wrong:
        OCIRemote(url).list()
    message = str(wrong.value)
    assert "refused the credentials" in message and str(tmp_path / "dc") in message
    assert PASSWORD not in message
    assert base64.b64encode(f"ci:wrong-{PASSWORD}".encode()).decode() not in message


def test_bearer_token_auth_through_the_challenge(
    registry: Registry, stores, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:  # noqa: ANN001
    a, b = stores
    record = _artifact(a, tmp_path)
    proxy = Proxy(registry.host, token_user=("ci", PASSWORD))
    try:
        url = proxy.url("t/bearer")
        monkeypatch.setenv(
            "DOCKER_CONFIG", str(docker_config(tmp_path / "dc", proxy.host, "ci", PASSWORD))
        )
        OCIRemote(url).push(a, [record.key])
        assert proxy.token_requests >= 1
        assert OCIRemote(url).pull(b, record.key).key == record.key
        docker_config(tmp_path / "dc", proxy.host, "ci", "nope")
        with pytest.raises(RemoteAuthError) as wrong:
            OCIRemote(url).get(record.key)
        assert "access denied" in str(wrong.value) and PASSWORD not in str(wrong.value)
    finally:
        proxy.close()


def test_credential_helper_named_in_the_docker_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from artifact_store.oci_auth import find_credentials

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    helper = bin_dir / "docker-credential-fake"
    helper.write_text(
        "#!/bin/sh\nread host\n"
        '[ "$host" = "reg.example:5000" ] || exit 1\n'
        'echo \'{"Username": "robot", "Secret": "helper-secret"}\'\n'
    )
    helper.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    folder = tmp_path / "dc"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"credHelpers": {"reg.example:5000": "fake"}}))
    monkeypatch.setenv("DOCKER_CONFIG", str(folder))
    found = find_credentials("reg.example:5000", "oci://reg.example:5000/x")
    assert found is not None and (found.username, found.secret) == ("robot", "helper-secret")
    assert "helper-secret" not in repr(found)
    assert find_credentials("other.example", "oci://other.example/x") is None
