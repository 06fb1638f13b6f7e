"""``rmbuild sign REF --key KEY.pem``: sign an artifact (OpenSSF Model Signing) and its
provenance, offline; the bundles are kept beside it in the store, and push and pull carry them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from rmbuild.cli._output import emit_json


@click.command("sign")
@click.argument("refs", nargs=-1, required=True)
@click.option(
    "--key",
    "key_path",
    metavar="KEY.pem",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Elliptic-curve private key (P-256/384/521, PEM) to sign with, offline.",
)
@click.option(
    "--cert",
    "cert_path",
    metavar="CERT.pem",
    type=click.Path(dir_okay=False, path_type=Path),
    help="The key's signing certificate (certificate method; with --key).",
)
@click.option(
    "--chain",
    "chain",
    metavar="PEM",
    multiple=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Intermediate certificates up to the root (repeatable; with --cert).",
)
@click.option(
    "--key-password-env",
    metavar="VAR",
    help="Environment variable holding the key's password (never a flag: it would show in `ps`).",
)
@click.option(
    "--keyless",
    is_flag=True,
    help="Sigstore keyless signing (OIDC + Fulcio + Rekor): needs the network; exit 10 "
    "without one.",
)
@click.option(
    "--output",
    "output",
    metavar="FILE",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Also write the model signature bundle to FILE (one REF only), for verifiers outside "
    "rmbuild (model_signing verify ... on a `rmbuild checkout`).",
)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_obj
def command(
    app: Any,
    refs: tuple[str, ...],
    key_path: Path | None,
    cert_path: Path | None,
    chain: tuple[Path, ...],
    key_password_env: str | None,
    keyless: bool,
    output: Path | None,
    as_json: bool,
) -> None:
    """Sign REFS (ids, unique prefixes or aliases) with a key, offline.

    \b
    The signature is an OpenSSF Model Signing bundle (Sigstore bundle v0.3, DSSE, in-toto
    Statement v1) over every file's SHA-256; the artifact's SLSA provenance is signed by the
    same key into a second bundle. `rmbuild verify --signature --key KEY.pub` checks them.
    """
    import os

    from rmbuild.errors import UsageError
    from rmbuild.storage.store import resolve
    from rmbuild.trust import oms, signatures

    if keyless == (key_path is not None):
        raise UsageError(
            "give --key KEY.pem (offline) or --keyless (Sigstore, needs the network)",
            hint="e.g. `rmbuild sign REF --key key.pem`",
        )
    if (cert_path is not None or chain) and key_path is None:
        raise UsageError("--cert and --chain go with --key (the certificate's private key)")
    if chain and cert_path is None:
        raise UsageError("--chain needs --cert")
    if output is not None and len(refs) != 1:
        raise UsageError("--output writes one bundle: give one REF")
    password = None
    if key_password_env:
        password = os.environ.get(key_password_env)
        if password is None:
            raise UsageError(f"--key-password-env names {key_password_env}, which is not set")
    key = None
    if key_path is not None:
        key = oms.SigningKey(key_path, cert_path, tuple(chain), password)
    store = app.store()
    done = []
    for ref in refs:
        record = resolve(store, ref)
        report = signatures.sign(store, record, key=key, keyless=keyless)
        if output is not None:
            output.write_bytes(report.kept[0].data)
        done.append(
            {
                "id": record.key,
                "signer": report.signer,
                "provenance_signed": report.provenance,
                "bundles": [a.name for a in report.kept],
            }
        )
        if not as_json:
            what = "files and provenance" if report.provenance else "files (no provenance)"
            click.echo(f"{record.key[:12]}  signed: {what}, by {report.signer}")
    if as_json:
        emit_json({"signed": done})
