"""Keys, a certificate authority and a built artifact for the trust tests.

Everything is made at test time with the ``cryptography`` library: elliptic-curve key pairs
(P-256, what the OpenSSF Model Signing key method takes), a root CA, an intermediate and code
signing leaves, one of them expired. The tests that sign skip where the ``sign`` extra
(model-signing) is not installed; provenance needs none of it.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

import pytest

cryptography = pytest.importorskip("cryptography", reason="cryptography not installed")

from cryptography import x509  # noqa: E402
from cryptography.hazmat.primitives import hashes, serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec  # noqa: E402
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID  # noqa: E402


@dataclass
class KeyPair:
    private: Path
    public: Path


def write_key_pair(folder: Path, name: str) -> KeyPair:
    key = ec.generate_private_key(ec.SECP256R1())
    private = folder / f"{name}.pem"
    public = folder / f"{name}.pub"
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
    return KeyPair(private, public)


@pytest.fixture
def keys(tmp_path: Path) -> tuple[KeyPair, KeyPair]:
    """Two unrelated key pairs: ``ours`` signs, ``theirs`` is another party's."""
    folder = tmp_path / "keys"
    folder.mkdir()
    return write_key_pair(folder, "ours"), write_key_pair(folder, "theirs")


@dataclass
class Pki:
    """A root CA (what verifiers trust), an intermediate, and two code-signing leaves."""

    root: Path
    intermediate: Path
    leaf_key: Path
    leaf: Path  # valid now
    expired_key: Path
    expired: Path  # expired yesterday


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _cert(
    subject: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: str,
    issuer_key: ec.EllipticCurvePrivateKey,
    *,
    ca: bool,
    not_before: dt.datetime,
    not_after: dt.datetime,
) -> x509.Certificate:
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(_name(issuer))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if ca:
        builder = builder.add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
    else:
        builder = builder.add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        ).add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CODE_SIGNING]), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    folder = tmp_path / "pki"
    folder.mkdir()
    now = dt.datetime.now(dt.UTC)
    year = dt.timedelta(days=365)
    root_key = ec.generate_private_key(ec.SECP384R1())
    root = _cert(
        "rmbuild test root", root_key, "rmbuild test root", root_key,
        ca=True, not_before=now - 2 * year, not_after=now + 10 * year,
    )  # fmt: skip
    int_key = ec.generate_private_key(ec.SECP384R1())
    inter = _cert(
        "rmbuild test intermediate", int_key, "rmbuild test root", root_key,
        ca=True, not_before=now - 2 * year, not_after=now + 5 * year,
    )  # fmt: skip
    leaf_key = ec.generate_private_key(ec.SECP256R1())
    leaf = _cert(
        "ci signer", leaf_key, "rmbuild test intermediate", int_key,
        ca=False, not_before=now - dt.timedelta(days=1), not_after=now + year,
    )  # fmt: skip
    old_key = ec.generate_private_key(ec.SECP256R1())
    old = _cert(
        "retired signer", old_key, "rmbuild test intermediate", int_key,
        ca=False, not_before=now - year, not_after=now - dt.timedelta(days=1),
    )  # fmt: skip
    paths = {}
    for name, data in {
        "root.pem": _pem(root),
        "intermediate.pem": _pem(inter),
        "leaf.key": _key_pem(leaf_key),
        "leaf.pem": _pem(leaf),
        "expired.key": _key_pem(old_key),
        "expired.pem": _pem(old),
    }.items():
        (folder / name).write_bytes(data)
        paths[name] = folder / name
    return Pki(
        root=paths["root.pem"],
        intermediate=paths["intermediate.pem"],
        leaf_key=paths["leaf.key"],
        leaf=paths["leaf.pem"],
        expired_key=paths["expired.key"],
        expired=paths["expired.pem"],
    )


@pytest.fixture(autouse=True)
def _no_trust_policy(monkeypatch: pytest.MonkeyPatch) -> None:
    """A policy of the developer's own environment never applies to these tests."""
    monkeypatch.delenv("RMBUILD_TRUST", raising=False)
    monkeypatch.delenv("RMBUILD_OFFLINE", raising=False)


@pytest.fixture
def build_artifact(project, cli):  # noqa: ANN001, ANN201 - fixtures of tests/conftest.py
    """Compile the stand-in project's target (with ``flags``); returns the artifact's id."""

    def build(**flags: object) -> str:
        if flags:
            project.set_flags(**flags)
        built = cli("compile", str(project.spec), "--target", "fake", "--json")
        assert built.code == 0, built.err
        return built.json()[0]["artifact"]

    return build
