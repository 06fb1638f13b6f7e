"""OpenSSF Model Signing (OMS v1.0) bundles, made and checked through the ``model-signing``
library.

A bundle is a Sigstore bundle (media type ``application/vnd.dev.sigstore.bundle.v0.3+json``)
holding a DSSE envelope whose payload is an in-toto Statement v1. For the model signature the
statement's predicate (``https://model_signing/signature/v1.0``) lists every file of the
artifact as ``{name, algorithm: sha256, digest}``, sorted by name, under a ``files``
serialization; its subject is the artifact's id with the root digest over those digests. The
digests are the store's own: an artifact's files were hashed when they were stored (and on pull),
so signing reads no file again. The SLSA provenance statement is signed the same way into a
second bundle (:func:`sign_statement`), by the same key.

Methods: ``key`` (an elliptic-curve private key, P-256/384/521, as the OMS key method takes),
``certificate`` (that key with its certificate and chain) and Sigstore keyless, which needs the
network. Verification checks the signature with a trusted public key or CA certificates, then
(certificates) the leaf's validity period *now*: an offline signature carries no trusted time,
and the OMS specification requires the leaf to be within its validity period.

``model-signing`` is imported lazily: a machine without the ``sign`` extra runs everything else.
"""

from __future__ import annotations

import base64
import contextlib
import io
import json
import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rmbuild.trust.errors import KeylessUnavailable, SigningKeyError, SigningUnavailable

BUNDLE_MEDIA_TYPE = "application/vnd.dev.sigstore.bundle.v0.3+json"
PAYLOAD_TYPE = "application/vnd.in-toto+json"
STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
OMS_PREDICATE = "https://model_signing/signature/v1.0"
# Where Sigstore's public-good instance is reached for keyless signing.
SIGSTORE_HOSTS = ("oauth2.sigstore.dev", "fulcio.sigstore.dev", "rekor.sigstore.dev")


def _lib() -> Any:
    try:
        import model_signing  # noqa: F401
        from model_signing._signing import sign_sigstore_pb  # noqa: F401
    except ImportError as exc:
        raise SigningUnavailable(
            f"signing needs the model-signing library ({exc.name} is not installed)",
            hint="pip install 'rmbuild[sign]'",
        ) from None
    import model_signing

    return model_signing


class BadSignature(Exception):
    """A bundle that does not hold for a trust root; ``why`` is one of ``malformed``,
    ``wrong-key``, ``bad-signature``, ``untrusted-chain``, ``expired``, ``wrong-predicate``."""

    def __init__(self, why: str, reason: str) -> None:
        super().__init__(reason)
        self.why = why
        self.reason = reason


# ---- keys and trust roots -------------------------------------------------------------------


def _read(path: Path, what: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise SigningKeyError(
            f"cannot read the {what} {str(path)!r}: {exc.strerror or exc}",
            hint=f"give the path of a PEM {what}",
        ) from None


def key_fingerprint(pem_public: bytes) -> str:
    """What a key-method bundle records as its key hint: SHA-256 of the public key's PEM."""
    import hashlib

    return hashlib.sha256(pem_public).hexdigest()


@dataclass(frozen=True)
class SigningKey:
    """A private key (PEM), with a certificate and its chain for the certificate method."""

    key: Path
    cert: Path | None = None
    chain: tuple[Path, ...] = ()
    password: str | None = None

    def signer(self) -> Any:
        """The model-signing signer; SigningKeyError for a key it cannot take."""
        _lib()
        from model_signing._signing import sign_certificate, sign_ec_key

        _read(self.key, "private key")
        for path in (self.cert, *self.chain):
            if path is not None:
                _read(path, "certificate")
        if self.cert is not None:
            _check_cert_dates(_read(self.cert, "certificate"), self.cert)
        try:
            if self.cert is None:
                return sign_ec_key.Signer(Path(self.key), self.password)
            return sign_certificate.Signer(Path(self.key), Path(self.cert), list(self.chain))
        except (ValueError, TypeError, AttributeError) as exc:
            raise SigningKeyError(
                f"cannot sign with {str(self.key)!r}: {exc}",
                hint="the OpenSSF Model Signing key method takes an elliptic-curve key "
                "(P-256, P-384 or P-521) in PEM, e.g. `openssl ecparam -name prime256v1 "
                "-genkey -noout -out key.pem`; a certificate must be that key's",
            ) from None

    def description(self) -> str:
        if self.cert is not None:
            return f"certificate {self.cert}"
        return f"key {self.key}"


def _check_cert_dates(pem: bytes, where: Path | str) -> None:
    from cryptography import x509

    try:
        cert = x509.load_pem_x509_certificate(pem)
    except ValueError as exc:
        raise SigningKeyError(f"{str(where)!r} is not a PEM certificate: {exc}") from None
    now = datetime.now(UTC)
    if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
        raise SigningKeyError(
            f"certificate {str(where)!r} is not valid now: valid from "
            f"{cert.not_valid_before_utc:%Y-%m-%d %H:%M} to "
            f"{cert.not_valid_after_utc:%Y-%m-%d %H:%M} UTC",
            hint="sign with a certificate within its validity period",
        )


@dataclass(frozen=True)
class TrustRoot:
    """What a signature must verify with: a public key (``key``) or CA certificates
    (``certificate``), read from ``path``."""

    kind: str
    path: Path
    fingerprint: str = ""

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> TrustRoot:
        """A PEM file holding a public key, or one or more certificates (a CA chain)."""
        p = Path(path)
        data = _read(p, "public key or CA certificate")
        if b"-----BEGIN CERTIFICATE-----" in data:
            return cls("certificate", p)
        from cryptography.hazmat.primitives import serialization

        try:
            public = serialization.load_pem_public_key(data)
        except ValueError:
            raise SigningKeyError(
                f"{str(p)!r} holds neither a PEM public key nor PEM certificates",
                hint="give the public key (e.g. `openssl ec -in key.pem -pubout -out "
                "key.pub`) or the CA certificates that issued the signing certificate",
            ) from None
        pem = public.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        return cls("key", p, key_fingerprint(pem))

    def describe(self) -> str:
        if self.kind == "key":
            return f"key {self.path} (sha256:{self.fingerprint[:12]})"
        return f"CA certificates {self.path}"

    def verifier(self) -> Any:
        _lib()
        from model_signing._signing import sign_certificate, sign_ec_key

        try:
            if self.kind == "key":
                return sign_ec_key.Verifier(self.path)
            return sign_certificate.Verifier([self.path])
        except (ValueError, TypeError, AttributeError) as exc:
            raise SigningKeyError(
                f"cannot verify with {str(self.path)!r}: {exc}",
                hint="the key method takes elliptic-curve keys (P-256, P-384, P-521)",
            ) from None


# ---- signing -------------------------------------------------------------------------------


def oms_payload(name: str, files: Mapping[str, str]) -> Any:
    """The OMS in-toto payload over ``files`` (relpath -> sha256 hex), read from no file."""
    lib = _lib()
    from model_signing._hashing import hashing as _hashing
    from model_signing._signing import signing as _signing

    serialization = lib.manifest._FileSerialization("sha256", allow_symlinks=False)
    items = [
        serialization.new_item(rel, _hashing.Digest("sha256", bytes.fromhex(digest)))
        for rel, digest in sorted(files.items())
    ]
    return _signing.Payload(lib.manifest.Manifest(name, items, serialization))


def sign_files(signer: Any, name: str, files: Mapping[str, str]) -> bytes:
    """An OMS bundle (JSON bytes) signing ``files`` under subject ``name``."""
    signature = signer.sign(oms_payload(name, files))
    return _bundle_json(signature)


def sign_statement(signer: Any, statement: Mapping[str, Any]) -> bytes:
    """A bundle whose DSSE payload is ``statement`` (an in-toto Statement, e.g. SLSA
    provenance) as canonical JSON, signed with the key or certificate ``signer`` holds."""
    _lib()
    from cryptography.hazmat.primitives.asymmetric import ec
    from model_signing._signing import sign_ec_key, sign_sigstore_pb
    from sigstore_models import intoto as intoto_pb
    from sigstore_models.bundle import v1 as bundle_pb

    raw = json.dumps(statement, sort_keys=True, separators=(",", ":")).encode()
    # The same envelope the library's key signer builds for the model signature; the key is
    # the signer's own (model-signing 1.1 keeps it in _private_key).
    private = signer._private_key  # noqa: SLF001
    sig = private.sign(
        sign_sigstore_pb.pae(raw), ec.ECDSA(sign_ec_key.get_ec_key_hash(private.public_key()))
    )
    envelope = intoto_pb.Envelope(
        payload=base64.b64encode(raw),
        payload_type=PAYLOAD_TYPE,
        signatures=[intoto_pb.Signature(sig=base64.b64encode(sig), keyid="")],
    )
    bundle = bundle_pb.Bundle(
        media_type=BUNDLE_MEDIA_TYPE,
        verification_material=signer._get_verification_material(),  # noqa: SLF001
        dsse_envelope=envelope,
    )
    return _bundle_json(sign_sigstore_pb.Signature(bundle))


def _bundle_json(signature: Any) -> bytes:
    bundle = getattr(signature, "bundle", None)
    if bundle is not None and hasattr(bundle, "to_json"):
        text = bundle.to_json()
    else:  # sigstore-python's Bundle (keyless)
        text = signature.bundle.to_json()
    return json.dumps(json.loads(text), sort_keys=True, indent=1).encode() + b"\n"


def sigstore_reachable(timeout: float = 3.0) -> str | None:
    """None if Sigstore's public-good services answer a TCP connection, else why not.
    ``RMBUILD_OFFLINE=1`` says there is no network without trying."""
    if os.environ.get("RMBUILD_OFFLINE", "") not in ("", "0"):
        return "RMBUILD_OFFLINE is set"
    for host in SIGSTORE_HOSTS:
        try:
            with socket.create_connection((host, 443), timeout=timeout):
                pass
        except OSError as exc:
            return f"{host}:443 cannot be reached ({exc.strerror or exc})"
    return None


def keyless_signer(identity_token: str | None = None) -> Any:
    """Sigstore's keyless signer (OIDC, Fulcio, Rekor); KeylessUnavailable without network."""
    _lib()
    why = sigstore_reachable()
    if why is not None:
        raise KeylessUnavailable(
            f"Sigstore keyless signing needs the network: {why}",
            hint="sign offline with a key: `rmbuild sign REF --key KEY.pem` (and `--cert` "
            "with its chain)",
        )
    from model_signing._signing import sign_sigstore

    try:
        return sign_sigstore.Signer(identity_token=identity_token, use_ambient_credentials=True)
    except Exception as exc:  # noqa: BLE001 - sigstore's network stack raises its own trees
        raise KeylessUnavailable(
            f"Sigstore keyless signing failed: {type(exc).__name__}: {exc}",
            hint="sign offline with a key: `rmbuild sign REF --key KEY.pem`",
        ) from None


# ---- verifying -----------------------------------------------------------------------------


@dataclass
class Verified:
    """A bundle whose signature held: its statement, and who signed it."""

    statement: dict[str, Any]
    signer: str
    method: str
    subject: str = ""
    # OMS only: every signed file, relpath -> digest (the predicate's resources).
    files: dict[str, str] = field(default_factory=dict)
    algorithm: str = "sha256"

    @property
    def predicate_type(self) -> str:
        return str(self.statement.get("predicateType", ""))


def bundle_method(doc: Mapping[str, Any]) -> str:
    """``key``, ``certificate`` or ``sigstore``, from the verification material."""
    material = doc.get("verificationMaterial") or {}
    if "publicKey" in material:
        return "key"
    if "x509CertificateChain" in material:
        return "certificate"
    if "certificate" in material:
        return "sigstore"
    return "unknown"


def _parse(data: bytes) -> tuple[dict[str, Any], Any]:
    from model_signing._signing import sign_sigstore_pb
    from sigstore_models.bundle import v1 as bundle_pb

    try:
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadSignature("malformed", f"not a JSON bundle ({exc})") from None
    if not isinstance(doc, dict) or not doc:
        raise BadSignature("malformed", "not a Sigstore bundle (empty)")
    if doc.get("mediaType") != BUNDLE_MEDIA_TYPE:
        raise BadSignature(
            "malformed", f"media type {doc.get('mediaType')!r}, expected {BUNDLE_MEDIA_TYPE}"
        )
    if not isinstance(doc.get("verificationMaterial"), dict):
        raise BadSignature("malformed", "the bundle has no verificationMaterial")
    if not isinstance(doc.get("dsseEnvelope"), dict):
        raise BadSignature("malformed", "the bundle has no DSSE envelope")
    # As model-signing's reader adjusts older bundles (Signature.read), from bytes.
    fixed = json.loads(json.dumps(doc))
    material = fixed["verificationMaterial"]
    material.setdefault("tlogEntries", [])
    if "publicKey" in material:
        material["publicKey"].setdefault("hint", None)
        for k in ("rawBytes", "keyDetails"):
            material["publicKey"].pop(k, None)
    try:
        bundle = bundle_pb.Bundle.from_dict(fixed)
    except Exception as exc:  # noqa: BLE001 - the models' validation raises several types
        raise BadSignature("malformed", f"not a valid Sigstore bundle ({exc})") from None
    return doc, sign_sigstore_pb.Signature(bundle)


def verify_bundle(data: bytes, root: TrustRoot, *, now: datetime | None = None) -> Verified:
    """Check bundle ``data`` against ``root``: its signature, then its statement.

    Raises :class:`BadSignature` saying why it does not hold. A model signature's files come
    back in :attr:`Verified.files`; comparing them with the artifact is the caller's part.
    """
    _lib()
    from cryptography import exceptions as crypto_exc

    doc, signature = _parse(data)
    method = bundle_method(doc)
    if method == "sigstore":
        raise BadSignature(
            "wrong-key", "a Sigstore keyless signature; this check trusts a key or CA certificates"
        )
    if method != root.kind:
        raise BadSignature(
            "wrong-key",
            f"signed with the {method} method; {root.describe()} takes {root.kind} signatures",
        )
    verifier = root.verifier()
    try:
        # model-signing prints a warning on stdout for hint-less bundles: keep stdout ours.
        with contextlib.redirect_stdout(io.StringIO()):
            payload_type, payload = verifier._verify_signed_content(signature)  # noqa: SLF001
    except crypto_exc.InvalidSignature:
        raise BadSignature(
            "bad-signature",
            "the signature does not match the signed statement (the bundle was altered, or "
            f"signed by another key than {root.describe()})",
        ) from None
    except ValueError as exc:
        if "Key mismatch" in str(exc):
            hint = (doc["verificationMaterial"].get("publicKey") or {}).get("hint") or "?"
            raise BadSignature(
                "wrong-key",
                f"signed by another key (sha256:{str(hint)[:12]}), not {root.describe()}",
            ) from None
        raise BadSignature("malformed", f"cannot verify: {exc}") from None
    except Exception as exc:  # noqa: BLE001 - OpenSSL's chain errors and the like
        if type(exc).__name__ == "X509StoreContextError":
            raise BadSignature(
                "untrusted-chain",
                f"the signing certificate does not chain to {root.describe()} ({exc})",
            ) from None
        raise BadSignature("malformed", f"cannot verify: {type(exc).__name__}: {exc}") from None
    signer = root.describe()
    if method == "certificate":
        signer = _check_leaf(doc, now or datetime.now(UTC))
    if payload_type != PAYLOAD_TYPE:
        raise BadSignature("malformed", f"payload type {payload_type!r}, expected {PAYLOAD_TYPE}")
    try:
        statement = json.loads(payload)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadSignature("malformed", f"the signed payload is not JSON ({exc})") from None
    if not isinstance(statement, dict) or statement.get("_type") != STATEMENT_TYPE:
        raise BadSignature("malformed", f"the signed payload is not an in-toto {STATEMENT_TYPE}")
    verified = Verified(statement=statement, signer=signer, method=method)
    subjects = statement.get("subject") or []
    if subjects and isinstance(subjects[0], dict):
        verified.subject = str(subjects[0].get("name", ""))
    if verified.predicate_type == OMS_PREDICATE:
        _read_oms(statement, verified)
    return verified


def _read_oms(statement: dict[str, Any], verified: Verified) -> None:
    from model_signing._signing import signing as _signing

    try:
        manifest = _signing.dsse_payload_to_manifest(statement)
    except (ValueError, KeyError, TypeError) as exc:
        raise BadSignature("malformed", f"the signed manifest is not valid: {exc}") from None
    algorithms = {rd.digest.algorithm for rd in manifest.resource_descriptors()}
    verified.algorithm = ",".join(sorted(algorithms)) or "sha256"
    verified.files = {rd.identifier: rd.digest.digest_hex for rd in manifest.resource_descriptors()}


def _check_leaf(doc: Mapping[str, Any], now: datetime) -> str:
    """The leaf certificate must be valid now (OMS v1.0 section 8.2); its subject, for
    messages."""
    from cryptography import x509

    chain = doc["verificationMaterial"]["x509CertificateChain"]["certificates"]
    leaf = x509.load_der_x509_certificate(base64.b64decode(chain[0]["rawBytes"]))
    subject = leaf.subject.rfc4514_string() or "(no subject)"
    if now > leaf.not_valid_after_utc:
        raise BadSignature(
            "expired",
            f"the signing certificate ({subject}) expired on "
            f"{leaf.not_valid_after_utc:%Y-%m-%d %H:%M} UTC",
        )
    if now < leaf.not_valid_before_utc:
        raise BadSignature(
            "expired",
            f"the signing certificate ({subject}) is not valid before "
            f"{leaf.not_valid_before_utc:%Y-%m-%d %H:%M} UTC",
        )
    return f"certificate {subject}"
