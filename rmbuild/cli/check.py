"""``rmbuild check <id>``: does this artifact fit this host, graded, without reading blobs."""

from __future__ import annotations

from typing import Any

import click

from rmbuild.cli._output import emit_json

WORDS = {
    "optimal": "optimal",
    "rebuild": "works, but a rebuild here would be better",
    "unsupported": "unsupported here",
}


@click.command("check")
@click.argument("ref")
@click.option(
    "--remote",
    "remote_url",
    metavar="URL",
    help="Grade the remote's entry (its manifest only, nothing downloaded) [env: RMBUILD_REMOTE].",
)
@click.option("--json", "as_json", is_flag=True, help="Print the verdict as JSON.")
@click.pass_obj
def command(app: Any, ref: str, remote_url: str | None, as_json: bool) -> None:
    """Grade artifact REF (id, prefix, alias) for this host: optimal, works but a rebuild would
    be better, or unsupported (exit 6), with the reason.

    Reads the index row and its metadata only (each backend's compatibility rules), never the
    artifact's files.
    """
    from rmbuild.errors import IncompatibleArtifact
    from rmbuild.planning.why import grade_artifact

    if remote_url:
        from rmbuild.storage import remotes

        remote = remotes.open_remote(remote_url, required=True)
        record = remotes.call(remote.resolve, ref).to_record()
    else:
        from rmbuild.storage.store import open_store, resolve

        store = open_store(app.store_path, app.index_url, read_only=True)
        record = resolve(store, ref)
    result = grade_artifact(record)
    if as_json:
        emit_json(result)
    else:
        click.echo(
            f"{record.key[:12]} {record.model}:{record.target} ({record.backend}): "
            f"{WORDS[result['verdict']]}"
        )
        for reason in result["reasons"]:
            click.echo(f"  {reason}")
    if result["verdict"] == "unsupported":
        # Exit 6, as `run` does for an artifact this host cannot take (scripts branch on it).
        raise IncompatibleArtifact(
            f"artifact {record.key[:12]} is unsupported on this host: {result['reasons'][0]}"
        )
