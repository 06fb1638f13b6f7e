"""``rmbuild checkout REF DIR``: put an artifact's files in a folder, for a tool outside rmbuild.

What a vendor's server takes (``furiosa-llm serve DIR``, ``vllm serve DIR``, ``trtexec
--loadEngine DIR/model.plan``) is a folder of files; the store keeps them as blobs. The folder
is laid out by :meth:`artifact_store.Store.materialize`: read-only hard links to the store's
blobs (no bytes copied), copies where a link cannot be made (another filesystem, executables),
built beside DIR and renamed into place, so DIR is whole or absent. The artifact is checked
against its manifest first: a damaged blob is refused, not handed out.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import click

from rmbuild.cli._output import emit_json, human_size


@click.command("checkout")
@click.argument("ref")
@click.argument("directory", metavar="DIR", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_obj
def command(app: Any, ref: str, directory: Path, as_json: bool) -> None:
    """Lay out artifact REF's files in DIR (REF: an id, a unique prefix, an alias, or
    MODEL:TARGET for the newest).

    \b
    Files are read-only hard links into the store where DIR is on the store's filesystem
    (no bytes copied), copies elsewhere. Never make them writable and edit them: a hard
    link is the store's own copy. DIR must not exist or be an empty folder; a non-empty one
    is refused (exit 2), unless it already holds exactly this artifact.
    """
    from rmbuild.errors import DestinationNotEmpty, StoreCorrupt
    from rmbuild.storage.store import open_store, resolve, translate

    # Read-only: a serving host may mount the store read-only; checkout writes only DIR.
    store = open_store(app.store_path, app.index_url, read_only=True)
    record = resolve(store, ref)
    out = directory.absolute()
    manifest = store.get_manifest(record.manifest_digest)
    if _occupied(out) and not _holds(store, out, manifest):
        raise DestinationNotEmpty(
            f"{directory} is not empty; checkout does not overwrite",
            context=[f"artifact {record.key[:12]} ({record.model}:{record.target})"],
            hint="give a new or empty folder, or remove this one first",
        )
    # Only reads (repair=False): quarantining is `verify --repair`'s, on a writable store.
    problems = store.check(record, repair=False)
    if problems:
        raise StoreCorrupt(
            f"artifact {record.key[:12]} is corrupt; nothing was checked out",
            context=[str(p) for p in problems],
            hint="`rmbuild verify --repair` quarantines the damaged blobs, then "
            "`rmbuild compile` rebuilds (or `rmbuild pull` fetches it again)",
        )
    from artifact_store import StoreError

    try:
        with store.pin(record.key):
            store.materialize(record.key, out)
    except StoreError as exc:
        raise translate(exc) from None  # type: ignore[misc]
    linked = copied = size = 0
    for rel, entry in manifest.files.items():
        size += entry.size
        same = _same_inode(out / rel, store.blob_path(entry.digest))
        linked, copied = linked + same, copied + (not same)
    if as_json:
        emit_json(
            {
                "id": record.key,
                "model": record.model,
                "target": record.target,
                "dir": str(out),
                "files": len(manifest.files),
                "bytes": size,
                "linked": linked,
                "copied": copied,
            }
        )
        return
    how = f"{linked} hard-linked" + (f", {copied} copied" if copied else "")
    click.echo(
        f"{record.model}:{record.target} {record.key[:12]} -> {out}  "
        f"({len(manifest.files)} files, {human_size(size)}; {how}; read-only)"
    )


def _occupied(path: Path) -> bool:
    """Something is at ``path`` that checkout would have to replace."""
    if not os.path.lexists(path):
        return False
    if path.is_symlink() or not path.is_dir():
        return True
    return any(path.iterdir())


def _holds(store: Any, out: Path, manifest: Any) -> bool:
    """``out`` is already a complete checkout of ``manifest`` (running checkout twice is fine)."""
    from artifact_store.trees import tree_complete

    return tree_complete(out, manifest, store.blob_path)


def _same_inode(a: Path, b: Path) -> bool:
    try:
        sa, sb = os.stat(a), os.stat(b)
    except OSError:
        return False
    return (sa.st_ino, sa.st_dev) == (sb.st_ino, sb.st_dev)
