"""``rmbuild toolchain install|ls|rm|path NAME``: provisioned toolchain environments (issue 7)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from rmbuild.cli._output import Heartbeat, console, emit_json, human_size, plain, styled


def describe(start: Path | None = None) -> list[dict[str, Any]]:
    """Every toolchain visible from ``start``: kind, installed, path, identity, size, users."""
    from rmbuild import provision
    from rmbuild.keys import canonical_json
    from rmbuild.profiles import list_profiles
    from rmbuild.toolchains import list_toolchains

    users: dict[str, list[str]] = {}
    for loaded in list_profiles(start):
        if hasattr(loaded, "profile"):
            users.setdefault(loaded.profile.toolchain, []).append(loaded.profile.name)
    rows = []
    for tc in list_toolchains(start):
        st = provision.status(tc)
        row: dict[str, Any] = {
            "name": tc.name,
            "kind": st.kind,
            "installed": st.installed,
            "path": str(st.path),
            "reason": st.reason,
            "needed_by": sorted(users.get(tc.name, [])),
            "size": st.marker.get("size") if st.marker else None,
            "identity": None,
            "missing_system_tools": [],
        }
        if tc.provisioned:
            row["lock"] = tc.lock
            row["install"] = f"rmbuild toolchain install {tc.name}"
        if st.installed and tc.provisioned:
            import hashlib

            ident = tc.identity()
            row["identity"] = hashlib.sha256(canonical_json(ident)).hexdigest()[:12]
            row["python"] = ident["python"]
            row["missing_system_tools"] = [
                {"name": t.name, "install": t.install_hint()}
                for t in provision.missing_system_tools(tc)
            ]
        rows.append(row)
    return rows


@click.group("toolchain")
def command() -> None:
    """Provisioned toolchain environments: install, list, remove, locate.

    \b
    A toolchain file with a `lock:` is provisioned by rmbuild as a venv of its own under the
    data dir ($RMBUILD_DATA_DIR, default the user data dir, e.g. ~/.local/share/rmbuild).
    """


def _find(name: str) -> Any:
    from rmbuild.toolchains import find_toolchain

    return find_toolchain(name, Path.cwd())


@command.command("install")
@click.argument("name")
@click.option("--force", is_flag=True, help="Reinstall even if installed and current.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.pass_obj
def install_cmd(app: Any, name: str, force: bool, as_json: bool) -> None:
    """Create the environment of toolchain NAME (safe to interrupt and rerun)."""
    from rmbuild import provision

    tc = _find(name)
    live = sys.stderr.isatty() and not as_json
    status_line: Any = None
    # Piped (a CI log), an install of minutes would say nothing between its steps.
    beat = None if live else Heartbeat(f"toolchain {name}").start()
    if live:
        from rich.console import Console

        status_line = Console(stderr=True, highlight=False).status(f"toolchain {name}")
        status_line.start()

    def progress(line: str) -> None:
        if beat is not None:
            beat.line(line)
        if status_line is not None:
            status_line.update(plain(f"toolchain {name}: {line[:150]}"))
        elif app.verbose or line.startswith(("creating", "installing", "removing", "reading")):
            click.echo(f"toolchain {name}: {line}", err=True)

    try:
        result = provision.install(tc, force=force, on_line=progress)
    finally:
        if beat is not None:
            beat.stop()
        if status_line is not None:
            status_line.stop()
    missing = [{"name": t.name, "install": t.install_hint()} for t in result.missing_tools]
    if as_json:
        emit_json(
            {
                "name": name,
                "path": str(result.path),
                "reused": result.reused,
                "seconds": round(result.seconds, 1),
                "size": result.size,
                "missing_system_tools": missing,
            }
        )
    else:
        what = "already installed" if result.reused else f"installed in {result.seconds:.0f} s"
        click.echo(f"{name}: {what}, {human_size(result.size)} at {result.path}")
    for tool in missing:
        click.echo(
            f"warning: {name} needs the system tool {tool['name']}, not found: {tool['install']}",
            err=True,
        )


@command.command("ls")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def ls_cmd(as_json: bool) -> None:
    """Known toolchains: installed or not, where, identity, size, what needs them."""
    from rich.table import Table

    rows = describe(Path.cwd())
    if as_json:
        emit_json(rows)
        return
    table = Table(box=None, header_style="bold")
    for col in ("toolchain", "kind", "state", "identity", "size", "path", "needed by"):
        table.add_column(col)
    for row in rows:
        state = (
            styled(("installed", "green")) if row["installed"] else styled((row["reason"], "red"))
        )
        if row["missing_system_tools"]:
            names = ", ".join(t["name"] for t in row["missing_system_tools"])
            state = styled(("installed", "green"), "; ", (f"missing {names}", "yellow"))
        table.add_row(
            plain(row["name"]),
            plain(row["kind"]),
            state,
            plain(row["identity"] or "-"),
            plain(human_size(row["size"]) if row["size"] else "-"),
            plain(row["path"]),
            plain(", ".join(row["needed_by"]) or "-"),
        )
    console().print(table)


@command.command("rm")
@click.argument("name")
def rm_cmd(name: str) -> None:
    """Remove the environment of toolchain NAME."""
    from rmbuild import provision

    removed = provision.remove(_find(name))
    click.echo(f"{name}: {'removed' if removed else 'was not installed'}")


@command.command("path")
@click.argument("name")
def path_cmd(name: str) -> None:
    """Print the environment folder of toolchain NAME (exit 7 when not installed)."""
    from rmbuild import provision

    tc = _find(name)
    if tc.provisioned:
        provision.require(tc)
    click.echo(str(tc.prefix))
