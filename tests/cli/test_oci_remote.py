"""`push`, `pull`, `ls --remote`, `compile --remote` and the trust policy with an OCI registry
as the remote (``oci://127.0.0.1:PORT/repo``): Debian's docker-registry on loopback, started
by the fixture (tests/artifact_store/oci_registry.py); the project is the stand-in compiler's.
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from artifact_store.oci import OCIRemote
from tests.artifact_store.oci_registry import Registry, docker_config, running

if TYPE_CHECKING:
    from conftest import Project

EXIT_USAGE = 2
EXIT_NOT_FOUND = 5
EXIT_UNTRUSTED = 6
EXIT_REMOTE = 10
PASSWORD = "cli-Pa55word-0b9c8d"


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    yield from running(tmp_path_factory.mktemp("registry"))


@pytest.fixture
def oci(registry: Registry, request: pytest.FixtureRequest, tmp_path: Path, monkeypatch) -> str:  # noqa: ANN001
    """A repository of its own for the test; no Docker credentials but the test's."""
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "no-docker-config"))
    monkeypatch.delenv("RMBUILD_REMOTE", raising=False)
    name = "".join(c if c.isalnum() else "-" for c in request.node.name.lower())
    return registry.url(f"cli/{name[:60].strip('-')}")


def _second_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str = "other") -> Path:
    other = tmp_path / f"{name}-store"
    monkeypatch.setenv("RMBUILD_STORE", str(other))
    return other


def _build(project: Project, cli, *extra: str) -> str:  # noqa: ANN001
    built = cli("compile", str(project.spec), "--target", "fake", "--json", *extra)
    assert built.code == 0, built.err
    return built.json()[0]["artifact"]


def test_push_ls_and_pull_by_tag_and_by_digest(
    project: Project, cli, oci: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:  # noqa: ANN001
    artifact = _build(project, cli, "--tag", "chat-main")
    pushed = cli("push", "chat-main", "--remote", oci, "--json")
    assert pushed.code == 0, pushed.err
    assert pushed.json()["pushed"] == [artifact] and pushed.json()["remote"] == oci
    assert pushed.json()["aliases"] == {"chat-main": artifact}
    again = cli("push", "--all", "--remote", oci)
    assert again.code == 0 and "pushed 0 artifact(s), 0 object(s)" in again.out
    assert "1 already" in again.out
    monkeypatch.setenv("RMBUILD_REMOTE", oci)  # the configured remote, as from a config file
    listing = cli("ls", "--remote", "--json")
    assert listing.code == 0, listing.err
    assert [(r["id"], r["model"], r["target"]) for r in listing.json()] == [
        (artifact, "tiny", "fake")
    ]
    monkeypatch.delenv("RMBUILD_REMOTE")
    _second_store(tmp_path, monkeypatch)
    assert cli("show", artifact).code == EXIT_NOT_FOUND
    pulled = cli("pull", "chat-main", "--remote", oci)
    assert pulled.code == 0, pulled.err
    assert f"chat-main -> {artifact}  (pulled: tiny:fake)" in pulled.out
    assert cli("verify", "chat-main").code == 0
    assert "already here" in cli("pull", artifact[:10], "--remote", oci).out
    # By the manifest's digest, into another empty store.
    digest = OCIRemote(oci).client.manifest_digest(artifact)
    assert digest and digest.startswith("sha256:")
    _second_store(tmp_path, monkeypatch, "third")
    by_digest = cli("pull", digest, "--remote", oci, "--json")
    assert by_digest.code == 0, by_digest.err
    assert by_digest.json()["artifacts"][0]["id"] == artifact
    assert cli("verify", artifact).code == 0


def test_compile_remote_pulls_instead_of_building(
    project: Project, cli, oci: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:  # noqa: ANN001
    counter = tmp_path / "runs.txt"
    project.set_flags(counter=str(counter))
    first = cli("compile", str(project.spec), "--all", "--remote", oci)
    assert first.code == 0 and f"pushed to {oci}" in first.err, first.err
    _second_store(tmp_path, monkeypatch)
    second = cli("compile", str(project.spec), "--all", "--remote", oci)
    assert second.code == 0, second.err
    assert len(counter.read_text().splitlines()) == 1  # the tool ran once: then it was pulled
    assert f"pulled from {oci}" in second.err


def test_a_corrupted_layer_is_exit_10_and_nothing_enters_the_store(
    project: Project, cli, oci: str, registry: Registry, tmp_path: Path, monkeypatch
) -> None:  # noqa: ANN001
    artifact = _build(project, cli)
    assert cli("push", artifact, "--remote", oci).code == 0
    digest = cli("show", artifact, "--json").json()["files"]["model.bin"]["digest"]
    stored = registry.blob_file(digest)
    os.chmod(stored, stat.S_IRUSR | stat.S_IWUSR)
    data = bytearray(stored.read_bytes())
    data[0] ^= 0xFF
    stored.write_bytes(bytes(data))
    other = _second_store(tmp_path, monkeypatch)
    r = cli("pull", artifact, "--remote", oci)
    r.assert_failure(EXIT_REMOTE)
    assert "remote-corrupt" in r.err and digest[:12] in r.err and oci in r.err
    assert cli("ls", "--json").json() == []
    assert [p for p in (other / "objects").rglob("*") if p.is_file()] == []


def test_auth_required_wrong_password_is_exit_10_and_never_printed(
    project: Project, cli, tmp_path: Path, tmp_path_factory, monkeypatch: pytest.MonkeyPatch
) -> None:  # noqa: ANN001
    artifact = _build(project, cli)
    for locked in running(tmp_path_factory.mktemp("locked"), users={"ci": PASSWORD}):
        url = locked.url("cli/auth")
        folder = docker_config(tmp_path / "docker", locked.host, "ci", PASSWORD)
        monkeypatch.setenv("DOCKER_CONFIG", str(folder))
        ok = cli("push", artifact, "--remote", url)
        assert ok.code == 0, ok.err
        docker_config(folder, locked.host, "ci", "not-" + PASSWORD)
        for args in (("push", artifact), ("ls",), ("pull", artifact)):
            r = cli(*args, "--remote", url, "--json")
            r.assert_failure(EXIT_REMOTE)
            assert "remote-auth" in r.err and "docker login" in r.err, r.err
            assert PASSWORD not in r.out + r.err
        monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "empty"))
        missing = cli("ls", "--remote", url)
        missing.assert_failure(EXIT_REMOTE)
        assert "has none for 127.0.0.1" in missing.err


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("oci://127.0.0.1:5000", "no repository"),
        ("oci://127.0.0.1:5000/Upper", "not a repository name"),
        ("oci://ci:hunter22@127.0.0.1:5000/repo", "user name or password"),
    ],
)
def test_a_malformed_oci_url_is_a_usage_error(cli, url: str, words: str) -> None:  # noqa: ANN001
    r = cli("ls", "--remote", url)
    r.assert_failure(EXIT_USAGE)
    assert words in r.err and "hunter22" not in r.err


def test_gc_remote_says_the_registry_collects_its_own(cli, oci: str) -> None:  # noqa: ANN001
    r = cli("gc", "--remote", oci)
    r.assert_failure(EXIT_REMOTE)
    assert "garbage-collect" in r.err


def test_sign_push_pull_verify_run(
    project: Project, cli, oci: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:  # noqa: ANN001
    """The artifact and its signatures travel through the registry; the pulling side's trust
    policy admits it, and refuses it under another key."""
    pytest.importorskip("model_signing", reason="model-signing not installed (extra: sign)")
    ours, theirs = _key_pair(tmp_path, "ours"), _key_pair(tmp_path, "theirs")
    artifact = _build(project, cli)
    signed = cli("sign", artifact, "--key", str(ours[0]))
    assert signed.code == 0, signed.err
    assert cli("push", artifact, "--remote", oci).code == 0
    # The signature is a referrer of the artifact's manifest (the OCI 1.1 tag fallback here).
    remote = OCIRemote(oci)
    digest = remote.client.manifest_digest(artifact).removeprefix("sha256:")
    index = remote.client.get_manifest(
        f"sha256-{digest}", accept="application/vnd.oci.image.index.v1+json"
    )
    kinds = {
        m["annotations"]["dev.rmbuild.attachment.kind"] for m in json.loads(index[0])["manifests"]
    }
    assert "oms.sigstore.json" in kinds
    other = _second_store(tmp_path, monkeypatch)
    refused = cli("pull", artifact, "--remote", oci, "--trust", f"signed-by:{theirs[1]}")
    refused.assert_failure(EXIT_UNTRUSTED)
    assert "nothing of it entered" in refused.err
    assert [p for p in (other / "objects").rglob("*") if p.is_file()] == []
    pulled = cli("pull", artifact, "--remote", oci, "--trust", f"signed-by:{ours[1]}")
    assert pulled.code == 0, pulled.err
    checked = cli("verify", artifact, "--signature", "--key", str(ours[1]))
    assert checked.code == 0, checked.err
    monkeypatch.setenv("RMBUILD_TRUST", f"signed-by:{ours[1]}")
    ran = cli("run", "-a", artifact, "-n", "1")
    assert "artifact-untrusted" not in ran.err and ran.code != 1, ran.err


def _key_pair(folder: Path, name: str) -> tuple[Path, Path]:
    """A P-256 key pair (PEM): what the OpenSSF Model Signing key method takes."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    private, public = folder / f"{name}.pem", folder / f"{name}.pub"
    private.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    public.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return private, public
