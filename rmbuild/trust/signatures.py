"""Signing stored artifacts, and judging their signatures.

A signature is kept beside the artifact as an attachment of its content (its manifest digest;
:mod:`artifact_store.attachments`): the OMS model signature (kind :data:`KIND_MODEL`) and, where
the artifact has a provenance statement, that statement signed by the same key (kind
:data:`KIND_PROVENANCE`). Push and pull carry them; signing again (another key, a renewed
certificate) adds one, and any signature the trust root accepts is enough.

Judging one compares the files a valid signature lists with the artifact's files: both are
SHA-256 digests, the signed ones from the signature, the artifact's from its manifest, which
the store ties to the bytes (every load checks each file's stat against its ingest record and
re-hashes one that moved; ``verify`` and ``run --verify`` re-hash all; a pull hashes every
file as it arrives). So a file changed since signing is named, whichever way it was changed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from artifact_store import attachments
from rmbuild.trust import oms, provenance
from rmbuild.trust.errors import UntrustedArtifact

if TYPE_CHECKING:
    from collections.abc import Iterable

    from artifact_store import ArtifactRecord, Manifest, Store
    from artifact_store.attachments import Attachment

KIND_MODEL = "oms.sigstore.json"
KIND_PROVENANCE = "slsa.sigstore.json"
# Most telling first: the reason a refusal names when no signature holds.
_PRIORITY = (
    "changed",
    "other-artifact",
    "bad-signature",
    "expired",
    "untrusted-chain",
    "wrong-key",
    "wrong-predicate",
    "malformed",
)


def files_of(manifest: Manifest) -> dict[str, str]:
    """An artifact's files as a signature lists them: relpath -> SHA-256 hex."""
    return {rel: entry.digest for rel, entry in manifest.files.items()}


@dataclass
class SignReport:
    """What ``rmbuild sign`` kept: the attachments and who signed."""

    key: str
    signer: str
    kept: list[Attachment] = field(default_factory=list)
    provenance: bool = False


def sign(
    store: Store,
    record: ArtifactRecord,
    *,
    key: oms.SigningKey | None = None,
    keyless: bool = False,
    identity_token: str | None = None,
) -> SignReport:
    """Sign ``record``'s files (and its provenance statement) and keep the bundles beside it.

    The artifact must pass the store's integrity check first: a signature over damaged bytes
    would vouch for them. Keyless (Sigstore) signing signs the model signature only.
    """
    from rmbuild.errors import ArtifactNotFound, StoreCorrupt

    problems = store.check(record)
    if problems and problems[0].absent:
        raise ArtifactNotFound(
            f"artifact {record.key[:12]} is in the index, but its files are not in this store",
            hint=f"`rmbuild pull {record.key[:12]} --remote URL` fetches it; sign where it is",
        )
    if problems:
        raise StoreCorrupt(
            f"artifact {record.key[:12]} cannot be signed: its files are not intact here",
            context=[str(p) for p in problems],
            hint="`rmbuild verify --repair` then rebuild, or pull an intact copy",
        )
    signer = oms.keyless_signer(identity_token) if keyless else _key_signer(key)
    manifest = store.get_manifest(record.manifest_digest)
    model = oms.sign_files(signer, record.key, files_of(manifest))
    kept = [attachments.Attachment(manifest.digest, KIND_MODEL, model)]
    statement = provenance.read(store, record)
    if statement is not None and not keyless:
        signed = oms.sign_statement(signer, statement)
        kept.append(attachments.Attachment(manifest.digest, KIND_PROVENANCE, signed))
    attachments.put_all(store, kept)
    who = "Sigstore keyless" if keyless else (key.description() if key else "?")
    return SignReport(record.key, who, kept, provenance=len(kept) > 1)


def _key_signer(key: oms.SigningKey | None) -> Any:
    from rmbuild.errors import UsageError

    if key is None:
        raise UsageError("nothing to sign with", hint="give --key KEY.pem, or --keyless")
    return key.signer()


# ---- judging -----------------------------------------------------------------------------


@dataclass
class Finding:
    """One signature of an artifact, judged: ``ok``, or ``why`` not and the ``reason``."""

    name: str
    kind: str
    ok: bool
    why: str = ""
    reason: str = ""
    signer: str = ""
    context: list[str] = field(default_factory=list)


@dataclass
class Judgement:
    """Every signature of an artifact against one trust root."""

    key: str
    root: oms.TrustRoot
    findings: list[Finding] = field(default_factory=list)
    damaged: list[str] = field(default_factory=list)

    @property
    def model(self) -> list[Finding]:
        return [f for f in self.findings if f.kind == KIND_MODEL]

    @property
    def trusted(self) -> Finding | None:
        return next((f for f in self.model if f.ok), None)

    @property
    def provenance(self) -> Finding | None:
        """The provenance signature that holds, else the first one found."""
        found = [f for f in self.findings if f.kind == KIND_PROVENANCE]
        return next((f for f in found if f.ok), found[0] if found else None)

    def refusal(self, policy: str) -> UntrustedArtifact:
        """The error that refuses the artifact, naming the most telling reason."""
        short = self.key[:12]
        if not self.model:
            extra = [f"ignored: attachment {n} does not match its digest" for n in self.damaged]
            return UntrustedArtifact(
                f"artifact {short} is not signed; {policy} accepts only artifacts signed by "
                f"{self.root.describe()}",
                context=extra,
                hint=f"sign it (`rmbuild sign {short} --key KEY.pem`, by the holder of the "
                "key), or pull a signed copy",
            )
        worst = min(self.model, key=lambda f: _PRIORITY.index(f.why) if f.why in _PRIORITY else 99)
        context = [*worst.context]
        for other in self.model:
            if other is not worst:
                context.append(f"another signature ({other.name[:12]}): {other.reason}")
        lead = {
            "changed": f"artifact {short} was changed since it was signed: {worst.reason}",
            "other-artifact": f"the signature of artifact {short} is for {worst.reason}",
        }.get(worst.why, f"artifact {short} has no signature that holds: {worst.reason}")
        return UntrustedArtifact(
            lead,
            context=context,
            hint=f"{policy}; rebuild or pull the artifact as it was signed, or have it signed "
            f"again by {self.root.describe()}",
        )


def judge(
    key: str,
    files: dict[str, str],
    found: Iterable[Attachment],
    root: oms.TrustRoot,
    *,
    statement: dict[str, Any] | None = None,
) -> Judgement:
    """Judge every signature in ``found`` of the artifact ``key`` whose files are ``files``
    (relpath -> digest) against ``root``. ``statement`` is the artifact's provenance, which a
    provenance signature must hold to count."""
    judgement = Judgement(key, root)
    for attachment in found:
        if attachment.kind not in (KIND_MODEL, KIND_PROVENANCE):
            continue
        finding = Finding(attachment.digest, attachment.kind, ok=False)
        judgement.findings.append(finding)
        try:
            verified = oms.verify_bundle(attachment.data, root)
        except oms.BadSignature as exc:
            finding.why, finding.reason = exc.why, exc.reason
            continue
        finding.signer = verified.signer
        if attachment.kind == KIND_MODEL:
            _judge_files(finding, verified, key, files)
        else:
            _judge_provenance(finding, verified, files, statement)
    return judgement


def _judge_files(finding: Finding, verified: oms.Verified, key: str, files: dict[str, str]) -> None:
    if verified.predicate_type != oms.OMS_PREDICATE:
        finding.why = "wrong-predicate"
        finding.reason = f"a {verified.predicate_type!r} statement, not a model signature"
        return
    signed = verified.files
    if signed == files:
        finding.ok = True
        return
    shared = {rel for rel in signed.keys() & files.keys() if signed[rel] == files[rel]}
    if not shared and verified.subject != key:
        finding.why = "other-artifact"
        finding.reason = (
            f"another artifact ({verified.subject[:40] or 'unnamed'}): none of its "
            f"{len(signed)} signed files is a file of this one"
        )
        return
    lines = []
    for rel in sorted(signed.keys() | files.keys()):
        if rel not in files:
            lines.append(f"{rel}: signed, but not in the artifact")
        elif rel not in signed:
            lines.append(f"{rel}: in the artifact, but not signed")
        elif signed[rel] != files[rel]:
            lines.append(
                f"{rel}: its digest differs from the signed one (signed sha256:"
                f"{signed[rel][:16]}…, now sha256:{files[rel][:16]}…)"
            )
    finding.why = "changed"
    finding.reason = lines[0]
    finding.context = lines


def _judge_provenance(
    finding: Finding,
    verified: oms.Verified,
    files: dict[str, str],
    statement: dict[str, Any] | None,
) -> None:
    if verified.predicate_type != provenance.SLSA_PREDICATE:
        finding.why = "wrong-predicate"
        finding.reason = f"a {verified.predicate_type!r} statement, not SLSA provenance"
        return
    subjects = {
        str(s.get("name")): str((s.get("digest") or {}).get("sha256"))
        for s in verified.statement.get("subject") or []
        if isinstance(s, dict)
    }
    if subjects != files:
        finding.why = "changed"
        finding.reason = "the signed provenance names other files than the artifact's"
        return
    if statement is not None and verified.statement != statement:
        finding.why = "changed"
        finding.reason = "the signed provenance differs from the one recorded with the artifact"
        return
    finding.ok = True


def judge_stored(
    store: Store,
    record: ArtifactRecord,
    root: oms.TrustRoot,
    *,
    changed: Iterable[str] = (),
) -> Judgement:
    """:func:`judge` for an artifact of ``store``, with the signatures kept beside it.

    ``changed``: files a re-hash found damaged (``verify``); their digests are taken from
    their bytes as they are now, so the judgement names the file that differs from the
    signed one."""
    from artifact_store.hashing import hash_path

    manifest = store.get_manifest(record.manifest_digest)
    files = files_of(manifest)
    for rel in changed:
        if rel in files:
            try:
                files[rel] = hash_path(store.blob_path(files[rel]))
            except OSError:  # gone (quarantined): no content can match a signed digest
                files[rel] = "0" * 64
    found = attachments.local(store, manifest.digest)
    judgement = judge(record.key, files, found, root, statement=provenance.read(store, record))
    judgement.damaged = attachments.damaged(store, manifest.digest)
    return judgement
