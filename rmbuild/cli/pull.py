"""``rmbuild pull <id|alias|model:target> --remote URL``: fetch artifacts.

Every object is checked against its digest before it enters the store; an artifact whose
remote copy is damaged is refused whole (exit 10, ``remote-corrupt``).
"""

from __future__ import annotations

from typing import Any

import click

from rmbuild.cli._output import emit_json
from rmbuild.cli.push import REMOTE_HELP, progress_bar


@click.command("pull")
@click.argument("refs", nargs=-1, required=True)
@click.option("--remote", "remote_url", metavar="URL", help=REMOTE_HELP)
@click.option(
    "--trust",
    metavar="POLICY",
    help='Trust policy: "signed-by:KEY.pub" refuses (exit 6, before anything enters the '
    'store) an artifact without a signature by that key that holds; "none" turns a '
    "configured one off [env: RMBUILD_TRUST; config: trust].",
)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_obj
def command(
    app: Any, refs: tuple[str, ...], remote_url: str | None, trust: str | None, as_json: bool
) -> None:
    """Download REFS (full ids, unique prefixes, aliases, or MODEL:TARGET for the newest)
    from the remote cache into the local store. The remote's aliases of each artifact are set
    here too (an alias pulled by name moves here if it pointed elsewhere)."""
    from rmbuild.storage import remotes
    from rmbuild.trust.policy import pull_admission

    remote = remotes.open_remote(remote_url, required=True)
    assert remote is not None
    admit = pull_admission(trust)
    store = app.store()
    done = []
    for ref in refs:
        entry = remotes.call(remote.resolve, ref)
        had = store.get(entry.key)
        fresh = had is None or bool(store.check(had))
        with progress_bar(f"pull {entry.key[:12]}", quiet=as_json) as on_progress:
            record = remotes.call(remote.pull, store, entry, on_progress=on_progress, admit=admit)
        if ref in entry.aliases:  # pulled by an alias: it points here now, moved if need be
            remotes.call(store.tag, ref, record.key)
        aliases = list((store.get(record.key) or record).aliases)
        done.append({"ref": ref, "id": record.key, "pulled": fresh, "aliases": aliases})
        if not as_json:
            state = "pulled" if fresh else "already here"
            click.echo(f"{ref} -> {record.key}  ({state}: {record.model}:{record.target})")
    if as_json:
        emit_json({"remote": remote.display, "artifacts": done})


def remote_records(remote_url: str | None, **filters: str | None) -> list[Any]:
    """``ls --remote``: what the remote holds, as records, filtered like ``ls``."""
    from rmbuild.storage import remotes

    remote = remotes.open_remote(remote_url or None, required=True)
    assert remote is not None
    records = [e.to_record() for e in remotes.call(remote.list)]
    for name in ("model", "target", "backend"):
        want = filters.get(name)
        if want is not None:
            if name == "target":
                records = [r for r in records if want in {r.target, *(t for _, t in r.uses)}]
            else:
                records = [r for r in records if getattr(r, name) == want]
    return records
