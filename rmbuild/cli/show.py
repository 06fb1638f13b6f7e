"""``rmbuild show ID``: an artifact's provenance."""

from __future__ import annotations

import json
from typing import Any

import click

from rmbuild.cli._output import console, emit_json, human_size, record_summary


def describe(store: Any, record: Any) -> dict[str, Any]:
    """Everything known about an artifact, as one JSON-able dict."""
    meta = record.metadata
    manifest = store.get_manifest(record.manifest_digest)
    log = meta.get("log")
    return {
        **record_summary(record),
        "manifest": record.manifest_digest,
        "parents": meta.get("parents", []),
        "spec_file": meta.get("spec_file"),
        "argv": meta.get("argv", []),
        "flags": meta.get("flags", {}),
        "runtime_flags": meta.get("runtime_flags", {}),
        "tool": meta.get("tool", {}),
        "toolchain": meta.get("toolchain", {}),
        "fingerprint": meta.get("fingerprint", {}),
        "action_key": meta.get("action_key", {}),
        "durations": meta.get("durations", {}),
        "started_at": meta.get("started_at"),
        "host": meta.get("host", {}),
        "files": {
            rel: {"digest": e.digest, "size": e.size} for rel, e in sorted(manifest.files.items())
        },
        "log": str(store.blob_path(log)) if log else None,
        "provenance": meta.get("provenance"),
        "signatures": _signature_names(store, record.manifest_digest),
        "details": _backend_details(store, record, manifest),
    }


def _signature_names(store: Any, manifest_digest: str) -> list[str]:
    """The signature bundles kept beside the artifact (rmbuild.trust), by file name."""
    from artifact_store import attachments

    return [a.name for a in attachments.local(store, manifest_digest)]


def _backend_details(store: Any, record: Any, manifest: Any) -> dict[str, Any]:
    """Facts a backend reads from its artifact's files, e.g. an RNGD .fxb's manifest
    (:meth:`~rmbuild.backends.base.BackendPlugin.artifact_details`); none where the backend
    is not installed here."""
    from rmbuild.plugins import registry

    entry = registry().get(record.metadata.get("backend", ""))
    if entry is None or entry.plugin is None:
        return {}

    def read(rel: str) -> bytes:
        return store.blob_path(manifest.files[rel].digest).read_bytes()

    return entry.plugin.artifact_details(read)


@click.command("show")
@click.argument("ref")
@click.option(
    "--provenance",
    "slsa",
    is_flag=True,
    help="Print the SLSA provenance v1 statement recorded when REF was built (JSON).",
)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_obj
def command(app: Any, ref: str, slsa: bool, as_json: bool) -> None:
    """Show provenance of REF (id, unique prefix or alias)."""
    from rich.markup import escape

    from rmbuild.storage.store import open_store, resolve

    # Read-only index: show works on a full disk.
    store = open_store(app.store_path, app.index_url, read_only=True)
    if slsa:
        _print_provenance(store, resolve(store, ref))
        return
    info = describe(store, resolve(store, ref))
    if as_json:
        emit_json(info)
        return
    out = console()
    out.print(f"[bold]artifact[/] {escape(info['id'])}")
    rows = [
        ("model", info["model"]),
        ("target", info["target"]),
        ("profile", f"{info['profile']} ({info['stage']})"),
        ("backend", info["backend"]),
        ("aliases", ", ".join(info["aliases"]) or "-"),
        ("size", human_size(info["size"])),
        ("created", info["created_at"]),
        ("built on", ", ".join(info["host"].values())),
        ("model.yaml", info["spec_file"]),
        ("parents", ", ".join(info["parents"]) or "-"),
        ("manifest", info["manifest"]),
    ]
    for name, value in rows:
        out.print(f"  [bold]{name:<11}[/] {escape(str(value))}")
    out.print("[bold]command[/] (rendered argv, no shell)")
    out.print("  " + escape(" ".join(info["argv"])))
    out.print("[bold]flags[/]")
    for name, value in info["flags"].items():
        note = "  [dim](runtime-only, not in key)[/]" if name in info["runtime_flags"] else ""
        out.print(f"  {escape(name)} = {escape(repr(value))}{note}")
    out.print("[bold]versions[/]")
    tool = info["tool"]
    out.print(
        escape(
            f"  tool {tool.get('name')} {tool.get('package', '')} {tool.get('version', '')}"
            + (f" sha256:{tool['script_sha256'][:12]}" if "script_sha256" in tool else "")
        )
    )
    tc = info["toolchain"]
    out.print(escape(f"  toolchain {tc.get('name')} (python {tc.get('python')})"))
    for name, version in (tc.get("packages") or {}).items():
        out.print(escape(f"    {name} {version or '-'}"))
    out.print("[bold]fingerprint[/]")
    for name, value in (info["fingerprint"] or {"(none)": ""}).items():
        out.print(f"  {escape(name)} {escape(str(value))}")
    out.print("[bold]durations[/]")
    for name, value in info["durations"].items():
        out.print(escape(f"  {name} {value}"))
    out.print("[bold]files[/]")
    for rel, entry in info["files"].items():
        out.print(f"  {entry['digest'][:12]}  {human_size(entry['size']):>10}  {escape(rel)}")
    if info["details"]:
        out.print(f"[bold]{escape(info['backend'])} artifact[/]")
        for name, value in info["details"].items():
            text = json.dumps(value, sort_keys=True) if isinstance(value, dict | list) else value
            out.print(f"  {escape(name)} {escape(str(text))}")
    out.print(f"[bold]log[/] {escape(str(info['log']))}")
    signed = ", ".join(name[:12] for name in info["signatures"]) or "none"
    out.print(f"[bold]signatures[/] {escape(signed)}  [dim](rmbuild verify --signature)[/]")


def _print_provenance(store: Any, record: Any) -> None:
    """``show --provenance``: the statement as it is stored, indented."""
    from rmbuild.errors import ArtifactNotFound
    from rmbuild.trust import provenance

    statement = provenance.read(store, record)
    if statement is None:
        raise ArtifactNotFound(
            f"artifact {record.key[:12]} has no provenance statement (built by an rmbuild "
            "that recorded none)",
            hint=f"`rmbuild compile ... --rebuild` builds it again with one; `rmbuild show "
            f"{record.key[:12]}` shows what was recorded",
        )
    emit_json(statement)
