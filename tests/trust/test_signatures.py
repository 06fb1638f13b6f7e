"""`rmbuild sign` and `verify --signature`: OpenSSF Model Signing bundles kept beside the
artifact, and every way a signature can fail to hold, each refused with its reason.

The artifact is the stand-in compiler's (tests/conftest.py), built in milliseconds; keys and
certificates are made at test time (tests/trust/conftest.py).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

pytest.importorskip("model_signing", reason="model-signing not installed (extra: sign)")

from artifact_store import Store, attachments
from rmbuild.trust import oms, signatures

if TYPE_CHECKING:
    from conftest import Project

EXIT_USAGE = 2
EXIT_UNTRUSTED = 6
EXIT_REMOTE = 10


def _bundles(store_dir: Path, key: str, kind: str) -> list[attachments.Attachment]:
    with Store(store_dir) as store:
        record = store.get(key)
        assert record is not None
        return attachments.local(store, record.manifest_digest, kind)


def test_sign_keeps_a_model_signature_and_a_signed_provenance_that_verify(
    project: Project, cli, keys, build_artifact, tmp_path: Path
) -> None:  # noqa: ANN001
    ours, _ = keys
    artifact = build_artifact()
    signed = cli("sign", artifact[:12], "--key", str(ours.private), "--json")
    assert signed.code == 0, signed.err
    row = signed.json()["signed"][0]
    assert row["id"] == artifact and row["provenance_signed"] is True
    model = _bundles(project.store, artifact, signatures.KIND_MODEL)
    assert len(model) == 1
    bundle = json.loads(model[0].data)
    # OMS v1.0: a Sigstore bundle v0.3 whose DSSE payload is an in-toto Statement v1 with the
    # model signature predicate, one resource per file, sorted by name.
    assert bundle["mediaType"] == "application/vnd.dev.sigstore.bundle.v0.3+json"
    assert bundle["dsseEnvelope"]["payloadType"] == "application/vnd.in-toto+json"
    import base64

    statement = json.loads(base64.b64decode(bundle["dsseEnvelope"]["payload"]))
    assert statement["_type"] == "https://in-toto.io/Statement/v1"
    assert statement["predicateType"] == "https://model_signing/signature/v1.0"
    resources = statement["predicate"]["resources"]
    shown = cli("show", artifact, "--json").json()
    assert [r["name"] for r in resources] == sorted(shown["files"])
    assert all(r["algorithm"] == "sha256" for r in resources)
    assert {r["name"]: r["digest"] for r in resources} == {
        rel: f["digest"] for rel, f in shown["files"].items()
    }
    assert statement["subject"][0]["name"] == artifact
    assert shown["signatures"] and all(n.endswith(".sigstore.json") for n in shown["signatures"])

    verified = cli("verify", artifact, "--signature", "--key", str(ours.public), "--json")
    assert verified.code == 0, verified.err
    result = verified.json()["signatures"][artifact]
    assert result["ok"] is True and result["provenance_signed"] is True
    assert "ours.pub" in result["signer"]
    text = cli("verify", artifact, "--signature", "--key", str(ours.public))
    assert "signature ok" in text.out and "provenance: signed" in text.out


def test_a_wrong_key_is_refused_naming_the_signer(
    project: Project, cli, keys, build_artifact
) -> None:  # noqa: ANN001
    ours, theirs = keys
    artifact = build_artifact()
    assert cli("sign", artifact, "--key", str(ours.private)).code == 0
    refused = cli("verify", artifact, "--signature", "--key", str(theirs.public))
    refused.assert_failure(EXIT_UNTRUSTED)
    assert "signed by another key" in refused.err and "theirs.pub" in refused.err


def test_an_unsigned_artifact_fails_verify_signature(
    project: Project, cli, keys, build_artifact
) -> None:  # noqa: ANN001
    ours, _ = keys
    artifact = build_artifact()
    refused = cli("verify", artifact, "--signature", "--key", str(ours.public))
    refused.assert_failure(EXIT_UNTRUSTED)
    assert "is not signed" in refused.err


def test_a_swapped_signature_is_refused(project: Project, cli, keys, build_artifact) -> None:  # noqa: ANN001
    """The model bundle's DSSE signature replaced by another valid signature of the same key
    (the provenance bundle's): the statement it claims to sign is not what was signed."""
    ours, _ = keys
    artifact = build_artifact()
    assert cli("sign", artifact, "--key", str(ours.private)).code == 0
    model = _bundles(project.store, artifact, signatures.KIND_MODEL)[0]
    prov = _bundles(project.store, artifact, signatures.KIND_PROVENANCE)[0]
    doc = json.loads(model.data)
    doc["dsseEnvelope"]["signatures"] = json.loads(prov.data)["dsseEnvelope"]["signatures"]
    folder = project.store / "attachments" / model.subject
    (folder / model.name).chmod(0o644)
    (folder / model.name).unlink()
    with Store(project.store) as store:
        swapped = attachments.Attachment(model.subject, model.kind, json.dumps(doc).encode())
        attachments.put(store, swapped)
    refused = cli("verify", artifact, "--signature", "--key", str(ours.public))
    refused.assert_failure(EXIT_UNTRUSTED)
    assert "does not match the signed statement" in refused.err


def test_a_signature_for_another_artifact_is_refused(
    project: Project, cli, keys, build_artifact
) -> None:  # noqa: ANN001
    ours, _ = keys
    first = build_artifact(name="first")
    second = build_artifact(name="second")
    assert first != second
    assert cli("sign", second, "--key", str(ours.private)).code == 0
    theirs = _bundles(project.store, second, signatures.KIND_MODEL)[0]
    with Store(project.store) as store:
        record = store.get(first)
        assert record is not None
        # The second artifact's signature, put beside the first: it verifies, but it is not
        # about these files.
        attachments.put(
            store, attachments.Attachment(record.manifest_digest, theirs.kind, theirs.data)
        )
    refused = cli("verify", first, "--signature", "--key", str(ours.public))
    refused.assert_failure(EXIT_UNTRUSTED)
    assert "is for another artifact" in refused.err and second[:12] in refused.err


def test_an_expired_certificate_is_refused_at_sign_and_at_verify(
    project: Project, cli, pki, build_artifact
) -> None:  # noqa: ANN001
    artifact = build_artifact()
    at_sign = cli(
        "sign", artifact, "--key", str(pki.expired_key), "--cert", str(pki.expired),
        "--chain", str(pki.intermediate),
    )  # fmt: skip
    at_sign.assert_failure(EXIT_USAGE)
    assert "is not valid now" in at_sign.err
    # A bundle made while it was valid (the library does not look at the date): verify sees
    # the leaf past its validity period.
    from model_signing._signing import sign_certificate

    signer = sign_certificate.Signer(pki.expired_key, pki.expired, [pki.intermediate])
    with Store(project.store) as store:
        record = store.get(artifact)
        assert record is not None
        files = signatures.files_of(store.get_manifest(record.manifest_digest))
        data = oms.sign_files(signer, artifact, files)
        kind = signatures.KIND_MODEL
        attachments.put(store, attachments.Attachment(record.manifest_digest, kind, data))
    refused = cli("verify", artifact, "--signature", "--cert", str(pki.root))
    refused.assert_failure(EXIT_UNTRUSTED)
    assert "expired on" in refused.err and "retired signer" in refused.err


def test_certificate_signing_with_a_chain_verifies_against_the_root(
    project: Project, cli, pki, keys, build_artifact
) -> None:  # noqa: ANN001
    artifact = build_artifact()
    signed = cli(
        "sign", artifact, "--key", str(pki.leaf_key), "--cert", str(pki.leaf),
        "--chain", str(pki.intermediate),
    )  # fmt: skip
    assert signed.code == 0, signed.err
    ok = cli("verify", artifact, "--signature", "--cert", str(pki.root), "--json")
    assert ok.code == 0, ok.err
    assert "ci signer" in ok.json()["signatures"][artifact]["signer"]
    # A certificate signature does not pass for a key, nor a root that did not issue it.
    ours, _ = keys
    as_key = cli("verify", artifact, "--signature", "--key", str(ours.public))
    as_key.assert_failure(EXIT_UNTRUSTED)
    assert "certificate method" in as_key.err
    other = cli("verify", artifact, "--signature", "--cert", str(pki.leaf))
    other.assert_failure(EXIT_UNTRUSTED)
    assert "does not chain" in other.err


def test_one_changed_byte_in_a_stored_file_fails_verify_naming_it(
    project: Project, cli, keys, build_artifact
) -> None:  # noqa: ANN001
    ours, _ = keys
    artifact = build_artifact()
    assert cli("sign", artifact, "--key", str(ours.private)).code == 0
    shown = cli("show", artifact, "--json").json()
    for rel, entry in shown["files"].items():
        blob = project.store / "objects" / entry["digest"][:2] / entry["digest"][2:]
        original = blob.read_bytes()
        blob.chmod(0o644)
        blob.write_bytes(bytes([original[0] ^ 1]) + original[1:])
        try:
            refused = cli("verify", artifact, "--signature", "--key", str(ours.public))
            refused.assert_failure(EXIT_UNTRUSTED)
            assert f"{rel}: its digest differs from the signed one" in refused.out, refused.out
        finally:
            blob.write_bytes(original)
    assert cli("verify", artifact, "--signature", "--key", str(ours.public)).code == 0


def test_keyless_without_a_network_is_exit_10_saying_to_use_a_key(
    project: Project, cli, build_artifact, monkeypatch: pytest.MonkeyPatch
) -> None:  # noqa: ANN001
    artifact = build_artifact()
    monkeypatch.setenv("RMBUILD_OFFLINE", "1")
    refused = cli("sign", artifact, "--keyless")
    refused.assert_failure(EXIT_REMOTE)
    assert "needs the network" in refused.err and "--key" in refused.err
    # Where the variable is not set, the services are probed first; a probe that fails is
    # the same refusal (no OIDC flow is started).
    monkeypatch.delenv("RMBUILD_OFFLINE")
    monkeypatch.setattr(oms, "sigstore_reachable", lambda timeout=3.0: "no route (test)")
    probed = cli("sign", artifact, "--keyless")
    probed.assert_failure(EXIT_REMOTE)
    assert "no route (test)" in probed.err


def test_sign_refuses_a_key_it_cannot_use(
    project: Project, cli, build_artifact, tmp_path: Path
) -> None:  # noqa: ANN001
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519

    artifact = build_artifact()
    missing = cli("sign", artifact, "--key", str(tmp_path / "nope.pem"))
    missing.assert_failure(EXIT_USAGE)
    ed = tmp_path / "ed.pem"
    ed.write_bytes(
        ed25519.Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    wrong_type = cli("sign", artifact, "--key", str(ed))
    wrong_type.assert_failure(EXIT_USAGE)
    assert "elliptic-curve" in wrong_type.err
    assert cli("sign", artifact).code == EXIT_USAGE  # neither --key nor --keyless


def test_a_bundle_rmbuild_wrote_verifies_with_model_signing_on_a_checkout(
    project: Project, cli, keys, build_artifact, tmp_path: Path
) -> None:  # noqa: ANN001
    """Interoperability: the OMS bundle is the library's own format over the same files."""
    ours, _ = keys
    artifact = build_artifact()
    bundle = tmp_path / "model.sig"
    assert cli("sign", artifact, "--key", str(ours.private), "--output", str(bundle)).code == 0
    folder = tmp_path / "checkout"
    assert cli("checkout", artifact, str(folder)).code == 0
    import model_signing

    config = model_signing.verifying.Config().use_elliptic_key_verifier(public_key=ours.public)
    config.verify(folder, bundle)  # raises on any mismatch
    (folder / "model.bin").chmod(0o644)
    (folder / "model.bin").write_bytes(b"changed")
    with pytest.raises(ValueError, match="model.bin"):
        config.verify(folder, bundle)
