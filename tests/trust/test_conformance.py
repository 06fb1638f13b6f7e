"""The OpenSSF Model Signing conformance cases that apply to key and certificate signing
(vendored under tests/trust/conformance/, see its README): rmbuild's verifier takes the valid
bundles (signature, chain, and the signed files against the files on disk), refuses the invalid
ones with a reason, and the bundles rmbuild writes validate against the specification's schemas.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

pytest.importorskip("model_signing", reason="model-signing not installed (extra: sign)")

from artifact_store.attachments import Attachment  # noqa: E402
from rmbuild.trust import oms, signatures  # noqa: E402

HERE = Path(__file__).resolve().parent / "conformance"
SPEC = HERE / "oms-spec"
VECTORS = SPEC / "test-vectors" / "v1.0"
MT = HERE / "model-transparency"
KEY = MT / "keys" / "signing-key-pub.pem"
CA = MT / "keys" / "ca-cert.pem"
SUBJECT = "0" * 64  # any content digest: judging compares files, not this name


def _files(folder: Path, ignore: set[str]) -> dict[str, str]:
    """The model's files as the OMS `files` serialization sees them: every regular file but
    the signature and the ignored paths; a single-file model as model-signing before 1.1 named
    it, "." (those cases sign one file, as the upstream scripts verify them)."""
    if folder.is_file():
        return {".": hashlib.sha256(folder.read_bytes()).hexdigest()}
    out = {}
    for path in sorted(folder.rglob("*")):
        rel = path.relative_to(folder).as_posix()
        if path.is_file() and rel != "model.sig" and rel.split("/")[0] not in ignore:
            out[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def _judge(bundle: bytes, folder: Path, root: oms.TrustRoot, ignore: set[str]):  # noqa: ANN202
    found = [Attachment(SUBJECT, signatures.KIND_MODEL, bundle)]
    # The model's name is its path's basename (OMS 6.5), as rmbuild names an artifact by its id.
    return signatures.judge(folder.name, _files(folder, ignore), found, root)


# The signed model of each case: its folder, or (older key cases) its one file, signme-1.
SINGLE_FILE = {"v0.3.1-elliptic-key", "v1.0.0-elliptic-key"}
VERIFY_CASES = [
    ("v0.3.1-elliptic-key", "key"),
    ("v1.0.0-elliptic-key", "key"),
    ("v1.0.1-elliptic-key", "key"),
    ("v1.1.0-elliptic-key", "key"),
    ("v0.3.1-certificate", "certificate"),
    ("v1.0.0-certificate", "certificate"),
    ("v1.0.1-certificate", "certificate"),
    ("v1.1.0-certificate", "certificate"),
]


@pytest.mark.parametrize(("case", "method"), VERIFY_CASES)
def test_reference_signatures_verify_against_their_files(case: str, method: str) -> None:
    folder = MT / case
    model = folder / "signme-1" if case in SINGLE_FILE else folder
    root = oms.TrustRoot.load(KEY if method == "key" else CA)
    judgement = _judge((folder / "model.sig").read_bytes(), model, root, {"ignore-me"})
    trusted = judgement.trusted
    assert trusted is not None, [f.reason for f in judgement.findings]
    if method == "certificate":
        assert "intermediate-ca" in trusted.signer  # the leaf's subject, as upstream made it


@pytest.mark.parametrize(("case", "method"), VERIFY_CASES)
def test_reference_signatures_refuse_a_changed_file(case: str, method: str, tmp_path: Path) -> None:
    folder = tmp_path / case
    folder.mkdir()
    for path in (MT / case).iterdir():
        (folder / path.name).write_bytes(path.read_bytes())
    (folder / "signme-1").write_bytes((folder / "signme-1").read_bytes() + b"\n")
    model = folder / "signme-1" if case in SINGLE_FILE else folder
    root = oms.TrustRoot.load(KEY if method == "key" else CA)
    judgement = _judge((folder / "model.sig").read_bytes(), model, root, {"ignore-me"})
    assert judgement.trusted is None
    assert judgement.model[0].why == "changed"
    name = "." if case in SINGLE_FILE else "signme-1"
    assert judgement.model[0].reason.startswith(f"{name}: its digest differs")


def test_a_wrong_root_refuses_the_reference_signatures(tmp_path: Path) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    other = tmp_path / "other.pub"
    other.write_bytes(
        ec.generate_private_key(ec.SECP384R1())
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    folder = MT / "v1.1.0-elliptic-key"
    judgement = _judge(
        (folder / "model.sig").read_bytes(), folder, oms.TrustRoot.load(other), {"ignore-me"}
    )
    assert judgement.trusted is None and judgement.model[0].why == "wrong-key"
    # A certificate bundle checked against a root that did not issue it.
    folder = MT / "v1.1.0-certificate"
    leaf_only = oms.TrustRoot.load(MT / "keys" / "signing-key-cert.pem")
    judgement = _judge((folder / "model.sig").read_bytes(), folder, leaf_only, {"ignore-me"})
    assert judgement.trusted is None and judgement.model[0].why == "untrusted-chain"


def test_the_deprecated_v0_2_predicate_is_refused_with_its_reason() -> None:
    """The specification lets verifiers accept the pre-1.0 predicate (``Digests/v0.1``);
    rmbuild never wrote it and takes only v1.0 signatures as a trust decision."""
    folder = MT / "v0.2.0-certificate"
    judgement = _judge((folder / "model.sig").read_bytes(), folder, oms.TrustRoot.load(CA), set())
    assert judgement.trusted is None
    assert judgement.model[0].why == "wrong-predicate"
    assert "Digests/v0.1" in judgement.model[0].reason


@pytest.mark.parametrize(("name", "method"), [("key", "key"), ("certificate", "certificate")])
def test_the_specification_valid_vectors_verify(name: str, method: str) -> None:
    """The spec's valid key and certificate bundles sign the reference repo's signme-1/2."""
    bundle = (VECTORS / "valid" / f"{name}.bundle.json").read_bytes()
    root = oms.TrustRoot.load(KEY if method == "key" else CA)
    judgement = _judge(bundle, MT / "v1.1.0-elliptic-key", root, {"ignore-me"})
    assert judgement.trusted is not None, [f.reason for f in judgement.findings]


@pytest.mark.parametrize(
    ("vector", "why"),
    [
        ("invalid/empty.bundle.json", "malformed"),
        ("invalid/missing-envelope.bundle.json", "malformed"),
        ("invalid/missing-verification-material.bundle.json", "malformed"),
        # A Sigstore keyless bundle without its log entries: never a key or CA signature.
        ("invalid/missing-tlog-entries.bundle.json", "wrong-key"),
        # Its payload was rewritten to another predicate: the signature no longer holds.
        ("invalid-payload/wrong-predicate.bundle.json", "bad-signature"),
    ],
)
def test_the_specification_invalid_vectors_are_refused_with_a_reason(vector: str, why: str) -> None:
    bundle = (VECTORS / vector).read_bytes()
    judgement = _judge(bundle, MT / "v1.1.0-elliptic-key", oms.TrustRoot.load(KEY), {"ignore-me"})
    assert judgement.trusted is None
    assert judgement.model[0].why == why, judgement.model[0].reason
    assert judgement.model[0].reason


# ---- the specification's schemas ------------------------------------------------------------


def _validators():  # noqa: ANN202
    jsonschema = pytest.importorskip("jsonschema", reason="jsonschema not installed (dev)")
    referencing = pytest.importorskip("referencing", reason="referencing not installed (dev)")
    from referencing.jsonschema import DRAFT202012

    schemas = {
        p.name: json.loads(p.read_text()) for p in (SPEC / "schemas" / "v1.0").glob("*.json")
    }
    registry = referencing.Registry().with_resources(
        (s["$id"], referencing.Resource.from_contents(s, default_specification=DRAFT202012))
        for s in schemas.values()
    )
    validator = jsonschema.Draft202012Validator
    return (
        validator(schemas["bundle.schema.json"], registry=registry),
        validator(schemas["statement.schema.json"], registry=registry),
    )


def _statement(bundle: dict) -> dict:
    import base64

    raw = bundle["dsseEnvelope"]["payload"]
    return json.loads(base64.b64decode(raw + "=" * (-len(raw) % 4)))


def _conforms(data: bytes) -> bool:
    bundle_v, statement_v = _validators()
    try:
        bundle = json.loads(data)
        bundle_v.validate(bundle)
        statement_v.validate(_statement(bundle))
    except Exception:  # noqa: BLE001 - JSON, schema and base64 errors all mean "rejected"
        return False
    return True


def test_the_vectors_pass_and_fail_the_specification_schemas() -> None:
    for path in sorted((VECTORS / "valid").glob("*.json")):
        assert _conforms(path.read_bytes()), path.name
    for folder in ("invalid", "invalid-payload"):
        for path in sorted((VECTORS / folder).glob("*.json")):
            assert not _conforms(path.read_bytes()), path.name


def test_the_bundles_rmbuild_writes_conform_to_the_specification_schemas(
    keys, pki, tmp_path: Path
) -> None:  # noqa: ANN001
    files = {"model.bin": "ab" * 32, "tokenizer/config.json": "cd" * 32}
    ours, _ = keys
    by_key = oms.sign_files(oms.SigningKey(ours.private).signer(), "a" * 64, files)
    cert = oms.SigningKey(pki.leaf_key, pki.leaf, (pki.intermediate,))
    by_cert = oms.sign_files(cert.signer(), "a" * 64, files)
    for bundle in (by_key, by_cert):
        assert _conforms(bundle)
        statement = _statement(json.loads(bundle))
        names = [r["name"] for r in statement["predicate"]["resources"]]
        assert names == sorted(files)  # OMS 6.4: sorted by name
        digests = b"".join(bytes.fromhex(files[n]) for n in names)
        assert statement["subject"][0]["digest"]["sha256"] == hashlib.sha256(digests).hexdigest()
