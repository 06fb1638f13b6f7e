"""``rmbuild verify [ID]``: re-hash artifacts against their manifests."""

from __future__ import annotations

from typing import Any

import click

from rmbuild.cli._output import emit_json


@click.command("verify")
@click.argument("refs", nargs=-1)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_obj
def command(app: Any, refs: tuple[str, ...], as_json: bool) -> None:
    """Verify REFS (default: every artifact). Exits 6 if any is corrupt."""
    from rmbuild.errors import StoreCorrupt
    from rmbuild.store import resolve

    store = app.store()
    records = [resolve(store, r) for r in refs] if refs else store.list()
    report = {r.key: store.verify(r.key) for r in records}
    bad = {k: v for k, v in report.items() if v}
    if as_json:
        emit_json({"checked": len(report), "corrupt": bad})
    else:
        for key, problems in report.items():
            click.echo(f"{key[:12]}  {'ok' if not problems else 'CORRUPT'}")
            for problem in problems:
                click.echo(f"    {problem}")
    if bad:
        raise StoreCorrupt(
            f"{len(bad)} of {len(report)} artifacts are corrupt",
            hint="rebuild them with `rmbuild compile`; `rmbuild gc` drops strays",
        )
