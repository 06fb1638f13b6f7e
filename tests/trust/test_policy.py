"""The trust policy (`trust = "signed-by:KEY.pub"`, RMBUILD_TRUST, --trust): run, rmbuild.load
and pull refuse what is unsigned, signed by another key, or changed since signing (exit 6),
before any byte reaches a runtime or enters the store; signatures travel with push and pull.

Remotes are file:// folders here (the S3 protocol has its own suite); the artifact is the
stand-in compiler's.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

pytest.importorskip("model_signing", reason="model-signing not installed (extra: sign)")

from artifact_store import Store

if TYPE_CHECKING:
    from conftest import Project

EXIT_USAGE = 2
EXIT_SPEC = 3
EXIT_UNTRUSTED = 6


def _remote(tmp_path: Path) -> tuple[str, Path]:
    folder = tmp_path / "remote"
    folder.mkdir(parents=True)
    return f"file://{folder}", folder


def _other_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    other = tmp_path / "other-store"
    monkeypatch.setenv("RMBUILD_STORE", str(other))
    return other


def _not_refused_for_trust(result) -> None:  # noqa: ANN001 - CliResult
    """The run got past the trust check: what the stand-in's bytes do in a runtime next is
    not this test's business (exit 7 where onnxruntime is missing, 6 artifact-unloadable)."""
    assert "artifact-untrusted" not in result.err, result.err
    assert result.code != 1, result.err


def test_run_refuses_an_unsigned_artifact_before_laying_out_a_file(
    project: Project, cli, keys, build_artifact
) -> None:  # noqa: ANN001
    ours, _ = keys
    artifact = build_artifact()
    refused = cli("run", "-a", artifact, "-n", "1", "--trust", f"signed-by:{ours.public}")
    refused.assert_failure(EXIT_UNTRUSTED)
    assert "artifact-untrusted" in refused.err and "is not signed" in refused.err
    assert f"rmbuild sign {artifact[:12]}" in refused.err
    # Refused before materializing: no file of it was handed to anything.
    assert not (project.store / "trees" / artifact).exists()


def test_run_takes_a_signed_artifact_and_refuses_another_key(
    project: Project, cli, keys, build_artifact, monkeypatch: pytest.MonkeyPatch
) -> None:  # noqa: ANN001
    ours, theirs = keys
    artifact = build_artifact()
    assert cli("sign", artifact, "--key", str(ours.private)).code == 0
    monkeypatch.setenv("RMBUILD_TRUST", f"signed-by:{ours.public}")
    _not_refused_for_trust(cli("run", "-a", artifact, "-n", "1"))
    monkeypatch.setenv("RMBUILD_TRUST", f"signed-by:{theirs.public}")
    refused = cli("run", "-a", artifact, "-n", "1")
    refused.assert_failure(EXIT_UNTRUSTED)
    assert "signed by another key" in refused.err and "RMBUILD_TRUST" in refused.err
    # The flag wins over the variable; "none" turns the policy off for one command.
    _not_refused_for_trust(cli("run", "-a", artifact, "-n", "1", "--trust", "none"))


def test_the_policy_in_rmbuild_toml_reads_a_path_relative_to_the_file(
    project: Project, cli, keys, build_artifact, monkeypatch: pytest.MonkeyPatch
) -> None:  # noqa: ANN001
    ours, theirs = keys
    artifact = build_artifact()
    assert cli("sign", artifact, "--key", str(theirs.private)).code == 0
    keys_dir = project.root / "trusted"
    keys_dir.mkdir()
    (keys_dir / "team.pub").write_bytes(ours.public.read_bytes())
    (project.root / "rmbuild.toml").write_text('trust = "signed-by:trusted/team.pub"\n')
    monkeypatch.chdir(project.root / "model")  # the nearest rmbuild.toml above the cwd
    refused = cli("run", "-a", artifact, "-n", "1")
    refused.assert_failure(EXIT_UNTRUSTED)
    assert "signed by another key" in refused.err and "rmbuild.toml" in refused.err
    (project.root / "rmbuild.toml").write_text("trust = 7\n")
    bad = cli("run", "-a", artifact, "-n", "1")
    bad.assert_failure(EXIT_SPEC)
    assert "rmbuild.toml: field 'trust'" in bad.err
    bad_flag = cli("run", "-a", artifact, "-n", "1", "--trust", "anyone")
    bad_flag.assert_failure(EXIT_USAGE)
    assert "signed-by:PATH" in bad_flag.err


def test_rmbuild_load_refuses_under_a_policy(project: Project, keys, build_artifact) -> None:  # noqa: ANN001
    import rmbuild
    from rmbuild.trust.errors import UntrustedArtifact

    ours, _ = keys
    artifact = build_artifact()
    with pytest.raises(UntrustedArtifact, match="is not signed"):
        rmbuild.load(artifact, store=project.store, trust=f"signed-by:{ours.public}")


def test_serve_loads_through_the_policy(project: Project, keys, build_artifact) -> None:  # noqa: ANN001
    """`serve` loads its candidates through the loader: an untrusted one is not served, and
    the reason says why."""
    from rmbuild.errors import BackendUnavailable
    from rmbuild.serve.model import load_first, resolve_model

    ours, _ = keys
    build_artifact()
    with Store(project.store) as store:
        model = resolve_model(store, str(project.spec))
        with pytest.raises(BackendUnavailable) as refused:
            load_first(model, store=store, options={"trust": f"signed-by:{ours.public}"})
    assert "is not signed" in "\n".join(refused.value.context)


def test_pull_refuses_an_unsigned_artifact_before_anything_enters_the_store(
    project: Project, cli, keys, build_artifact, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:  # noqa: ANN001
    ours, _ = keys
    url, _ = _remote(tmp_path)
    artifact = build_artifact()
    assert cli("push", artifact, "--remote", url).code == 0
    other = _other_store(tmp_path, monkeypatch)
    refused = cli("pull", artifact, "--remote", url, "--trust", f"signed-by:{ours.public}")
    refused.assert_failure(EXIT_UNTRUSTED)
    assert "is not signed" in refused.err and "nothing of it entered" in refused.err
    assert cli("ls", "--json").json() == []
    blobs = [p for p in (other / "objects").rglob("*") if p.is_file()]
    assert blobs == []


def test_signatures_made_after_a_push_travel_with_the_next_push_and_the_pull(
    project: Project, cli, keys, build_artifact, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:  # noqa: ANN001
    ours, _ = keys
    url, folder = _remote(tmp_path)
    artifact = build_artifact()
    assert cli("push", artifact, "--remote", url).code == 0
    assert cli("sign", artifact, "--key", str(ours.private)).code == 0
    again = cli("push", artifact, "--remote", url)
    assert again.code == 0, again.err
    assert len(list((folder / "attachments").rglob("*.sigstore.json"))) == 2
    _other_store(tmp_path, monkeypatch)
    pulled = cli("pull", artifact, "--remote", url, "--trust", f"signed-by:{ours.public}")
    assert pulled.code == 0, pulled.err
    checked = cli("verify", artifact, "--signature", "--key", str(ours.public), "--json")
    assert checked.code == 0, checked.err
    assert checked.json()["signatures"][artifact]["provenance_signed"] is True
    provenance = cli("show", artifact, "--provenance")
    assert provenance.code == 0 and "https://slsa.dev/provenance/v1" in provenance.out
    monkeypatch.setenv("RMBUILD_TRUST", f"signed-by:{ours.public}")
    _not_refused_for_trust(cli("run", "-a", artifact, "-n", "1"))


def _tamper(folder: Path, key: str, rel: str) -> None:
    """What an attacker with write access to the remote does: change one byte of ``rel`` and
    rewrite the manifest and the entry to match, so every digest a pull checks holds; the
    signature is copied to the new content's attachments."""

    def obj(digest: str) -> Path:
        return folder / "objects" / digest[:2] / digest[2:]

    entry_path = folder / "entries" / f"{key}.json"
    entry = json.loads(entry_path.read_bytes())
    old_manifest = entry["manifest_digest"]
    manifest = json.loads(obj(old_manifest).read_bytes())
    data = bytearray(obj(manifest["files"][rel]["digest"]).read_bytes())
    data[0] ^= 1
    digest = hashlib.sha256(bytes(data)).hexdigest()
    obj(digest).parent.mkdir(parents=True, exist_ok=True)
    obj(digest).write_bytes(bytes(data))
    manifest["files"][rel]["digest"] = digest
    raw = json.dumps(manifest, sort_keys=True, separators=(",", ":")).encode()
    new_manifest = hashlib.sha256(raw).hexdigest()
    obj(new_manifest).parent.mkdir(parents=True, exist_ok=True)
    obj(new_manifest).write_bytes(raw)
    entry["manifest_digest"] = new_manifest
    entry_path.write_bytes(json.dumps(entry).encode())
    signed = folder / "attachments" / old_manifest
    forged = folder / "attachments" / new_manifest
    forged.mkdir(parents=True, exist_ok=True)
    for bundle in signed.iterdir():
        (forged / bundle.name).write_bytes(bundle.read_bytes())


def test_pull_refuses_one_changed_byte_in_any_file_naming_it(
    project: Project, cli, keys, build_artifact, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:  # noqa: ANN001
    ours, _ = keys
    artifact = build_artifact()
    assert cli("sign", artifact, "--key", str(ours.private)).code == 0
    files = sorted(cli("show", artifact, "--json").json()["files"])
    assert len(files) >= 2
    for i, rel in enumerate(files):
        url, folder = _remote(tmp_path / f"r{i}")
        monkeypatch.setenv("RMBUILD_STORE", str(project.store))
        assert cli("push", artifact, "--remote", url).code == 0
        _tamper(folder, artifact, rel)
        other = _other_store(tmp_path / f"r{i}", monkeypatch)
        refused = cli("pull", artifact, "--remote", url, "--trust", f"signed-by:{ours.public}")
        refused.assert_failure(EXIT_UNTRUSTED)
        assert "was changed since it was signed" in refused.err
        assert f"{rel}: its digest differs from the signed one" in refused.err
        assert cli("ls", "--json").json() == []
        assert not [p for p in (other / "objects").rglob("*") if p.is_file()]
        # Without a policy the same pull succeeds: every digest it checks holds.
        assert cli("pull", artifact, "--remote", url).code == 0
        shown = cli("verify", artifact, "--signature", "--key", str(ours.public))
        shown.assert_failure(EXIT_UNTRUSTED)
        assert rel in shown.err


def test_rmbuild_serve_trust_refuses_every_unsigned_candidate(
    project: Project, cli, keys, build_artifact
) -> None:  # noqa: ANN001
    pytest.importorskip("fastapi", reason="fastapi not installed (extra: serve)")
    ours, _ = keys
    build_artifact()
    refused = cli("serve", str(project.spec), "--port", "0", "--trust", f"signed-by:{ours.public}")
    assert refused.code == 7, refused.err  # no candidate can be served here
    assert "is not signed" in refused.err


def test_signatures_travel_through_an_s3_remote(
    project: Project,
    cli,
    keys,
    build_artifact,
    s3_remote: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # noqa: ANN001
    """The same over a real S3 protocol (moto's server on loopback), whose listings the
    filesystem caches: a signature uploaded after the artifact is still found."""
    ours, _ = keys
    artifact = build_artifact()
    assert cli("push", artifact, "--remote", s3_remote).code == 0
    assert cli("sign", artifact, "--key", str(ours.private)).code == 0
    assert cli("push", artifact, "--remote", s3_remote).code == 0
    _other_store(tmp_path, monkeypatch)
    pulled = cli("pull", artifact, "--remote", s3_remote, "--trust", f"signed-by:{ours.public}")
    assert pulled.code == 0, pulled.err
    assert cli("verify", artifact, "--signature", "--key", str(ours.public)).code == 0
