"""``rmbuild verify [ID]``: re-hash artifacts against their manifests; with ``--signature``,
also check their signatures (see :mod:`rmbuild.trust`)."""

from __future__ import annotations

from typing import Any

import click

from rmbuild.cli._output import emit_json


@click.command("verify")
@click.argument("refs", nargs=-1)
@click.option(
    "--repair",
    is_flag=True,
    help="Move damaged blobs to the store's quarantine/ and mark their artifacts corrupt, so "
    "the next `rmbuild compile` rebuilds them.",
)
@click.option(
    "--signature",
    is_flag=True,
    help="Also check each artifact's signatures: one must verify with --key / --cert (or the "
    "trust policy's key) and list exactly the artifact's files.",
)
@click.option(
    "--key",
    "key_path",
    metavar="KEY.pub",
    help="Public key (PEM) signatures must verify with (key method).",
)
@click.option(
    "--cert",
    "cert_path",
    metavar="CA.pem",
    help="CA certificates (PEM) the signing certificate must chain to (certificate method).",
)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_obj
def command(
    app: Any,
    refs: tuple[str, ...],
    repair: bool,
    signature: bool,
    key_path: str | None,
    cert_path: str | None,
    as_json: bool,
) -> None:
    """Verify REFS (default: every artifact). Exits 6 if any is corrupt, or (--signature)
    has no signature that holds."""
    from rmbuild.errors import StoreCorrupt
    from rmbuild.storage.store import open_store, resolve

    root = _trust_root(signature, key_path, cert_path)

    # Without --repair verify only reads, so it works on a full disk.
    store = open_store(app.store_path, app.index_url, read_only=not repair)
    records = [resolve(store, r) for r in refs] if refs else store.list()
    report: dict[str, list[str]] = {}
    damaged: dict[str, list[str]] = {}  # files a re-hash found changed, by artifact
    # A shared index lists other stores' artifacts too: those whose files this store never
    # held are not corrupt, only not here (their own store verifies them).
    elsewhere: list[str] = []
    for r in records:
        problems = store.check(r.key, rehash=True, repair=repair)
        if problems and problems[0].absent:
            elsewhere.append(r.key)
        else:
            report[r.key] = [str(p) for p in problems]
            damaged[r.key] = [p.path for p in problems if p.path]
    bad = {k: v for k, v in report.items() if v}
    signed = _signatures(store, records, root, damaged) if root is not None else {}
    unsigned = {k: v for k, v in signed.items() if not v["ok"]}
    if as_json:
        out: dict[str, Any] = {"checked": len(report), "corrupt": bad}
        if elsewhere:
            out["not_in_this_store"] = elsewhere
        if repair:
            out["quarantined"] = bool(bad)
        if root is not None:
            out["signatures"] = signed
        emit_json(out)
    else:
        for key, problems in report.items():
            click.echo(f"{key[:12]}  {'ok' if not problems else 'CORRUPT'}")
            for problem in problems:
                click.echo(f"    {problem}")
            if key in signed:
                for line in signed[key]["lines"]:
                    click.echo(f"    {line}")
        for key in elsewhere:
            click.echo(f"{key[:12]}  not in this store (another store sharing the index has it)")
    if bad:
        if repair:
            hint = (
                "damaged blobs are in the store's quarantine/; `rmbuild compile` rebuilds "
                "the artifacts that used them"
            )
        else:
            hint = (
                "`rmbuild verify --repair` quarantines the damaged blobs, then `rmbuild "
                "compile` rebuilds (or `rmbuild compile --rebuild` at once)"
            )
        raise StoreCorrupt(f"{len(bad)} of {len(report)} artifacts are corrupt", hint=hint)
    if unsigned:
        from rmbuild.trust.errors import SignatureInvalid

        first = next(iter(unsigned.values()))
        raise SignatureInvalid(
            f"{len(unsigned)} of {len(signed)} artifacts have no signature that holds for "
            f"{root.describe()}: {first['reason']}",  # type: ignore[union-attr]
            context=[f"{k[:12]}: {v['reason']}" for k, v in unsigned.items()],
            hint="sign them (`rmbuild sign REF --key KEY.pem`), or pull the signed copies",
        )


def _trust_root(signature: bool, key_path: str | None, cert_path: str | None) -> Any:
    """What --signature checks against: --key / --cert, else the trust policy's root."""
    from rmbuild.errors import UsageError

    if not signature:
        if key_path or cert_path:
            raise UsageError("--key and --cert go with --signature")
        return None
    if key_path and cert_path:
        raise UsageError("give --key (a public key) or --cert (CA certificates), not both")
    from rmbuild.trust.oms import TrustRoot

    if key_path or cert_path:
        root = TrustRoot.load(str(key_path or cert_path))
        want = "key" if key_path else "certificate"
        if root.kind != want:
            flag = "--key" if key_path else "--cert"
            raise UsageError(f"{flag} {key_path or cert_path} does not hold a {want}")
        return root
    from rmbuild.trust.policy import resolve

    policy = resolve()
    if policy is None:
        raise UsageError(
            "--signature needs what to verify with",
            hint="give --key KEY.pub or --cert CA.pem, or set a trust policy (RMBUILD_TRUST)",
        )
    return policy.root()


def _signatures(
    store: Any, records: list[Any], root: Any, here: dict[str, list[str]]
) -> dict[str, Any]:
    """Each artifact of this store (``here``: key -> files the re-hash found changed) judged
    against ``root``: ok, the reason, lines to show."""
    from rmbuild.trust.signatures import judge_stored

    out: dict[str, Any] = {}
    for record in records:
        if record.key not in here:
            continue
        judgement = judge_stored(store, record, root, changed=here[record.key])
        trusted = judgement.trusted
        prov = judgement.provenance
        entry: dict[str, Any] = {
            "ok": trusted is not None,
            "signer": trusted.signer if trusted else None,
            "reason": "" if trusted else judgement.refusal("`verify --signature`").message,
            "signatures": [
                {"bundle": f.name, "kind": f.kind, "ok": f.ok, "why": f.why, "reason": f.reason}
                for f in judgement.findings
            ],
            "provenance_signed": bool(prov and prov.ok),
        }
        if trusted is not None:
            lines = [f"signature ok: {trusted.signer}"]
        else:
            lines = [f"SIGNATURE: {entry['reason']}"]
        if prov is None:
            lines.append("provenance: not signed")
        else:
            lines.append("provenance: signed" if prov.ok else f"provenance: {prov.reason}")
        entry["lines"] = lines
        out[record.key] = entry
    return out
