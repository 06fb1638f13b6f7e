"""``rmbuild toolchain install|ls|rm|path NAME``: provisioned toolchain environments."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from rmbuild.cli._output import Heartbeat, console, emit_json, human_size, plain, styled


def describe(start: Path | None = None) -> list[dict[str, Any]]:
    """Every toolchain visible from ``start``: kind, installed, path, identity, size, users.

    ``installed``: its environment and the packages it declares are there; ``ready``: nothing
    is missing, system tools included; ``missing``: each gap with the command that gets it.
    All three come from :func:`rmbuild.planning.policy.toolchain_gaps`, the function ``compile``,
    ``--plan``/``--explain`` and ``info`` ask too, so no two commands disagree.
    """
    from rmbuild.declare.profiles import list_profiles
    from rmbuild.keys import canonical_json
    from rmbuild.planning import policy
    from rmbuild.toolrun import provision
    from rmbuild.toolrun.toolchains import list_toolchains

    users: dict[str, list[str]] = {}
    for loaded in list_profiles(start):
        if hasattr(loaded, "profile"):
            users.setdefault(loaded.profile.toolchain, []).append(loaded.profile.name)
    rows = []
    for tc in list_toolchains(start):
        st = provision.status(tc)
        tools = provision.missing_system_tools(tc)
        environment = policy.toolchain_gaps(tc, system_tools=False)
        missing = [*policy.system_tool_gaps(tools), *environment]
        row: dict[str, Any] = {
            "name": tc.name,
            "kind": st.kind,
            "installed": not environment,
            "ready": not missing,
            "path": str(st.path),
            "reason": "; ".join(g["what"] for g in missing),
            "missing": missing,
            "needed_by": sorted(users.get(tc.name, [])),
            "size": st.marker.get("size") if st.marker else None,
            "identity": None,
            "missing_system_tools": [{"name": t.name, "install": t.install_hint()} for t in tools],
        }
        if tc.provisioned:
            row["lock"] = tc.lock
            row["install"] = tc.install_hint()
        if st.installed and tc.provisioned:
            import hashlib

            ident = tc.identity()
            row["identity"] = hashlib.sha256(canonical_json(ident)).hexdigest()[:12]
            row["python"] = ident["python"]
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
    from rmbuild.toolrun.toolchains import find_toolchain

    return find_toolchain(name, Path.cwd())


@command.command("install")
@click.argument("name")
@click.option("--force", is_flag=True, help="Reinstall even if installed and current.")
@click.option(
    "--without-system-tools",
    is_flag=True,
    help="Install although system tools it needs (e.g. a cross gcc) are missing; compiles "
    "refuse until they are there.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.pass_obj
def install_cmd(
    app: Any, name: str, force: bool, as_json: bool, without_system_tools: bool = False
) -> None:
    """Create the environment of toolchain NAME (safe to interrupt and rerun).

    Every system tool the toolchain needs is checked first: one missing stops the install
    before anything is downloaded (exit 7), naming each with the command that installs it.
    """
    from rmbuild.toolrun import provision

    tc = _find(name)
    if not without_system_tools and (force or not provision.status(tc).installed):
        _require_system_tools(tc)
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


def _require_system_tools(tc: Any) -> None:
    """Exit 7 naming every missing system tool of ``tc`` (see ``install``)."""
    from rmbuild.errors import BackendUnavailable
    from rmbuild.planning import policy
    from rmbuild.toolrun import provision

    if not tc.provisioned:
        return  # not ours to install: `install` says so itself
    missing = policy.system_tool_gaps(provision.missing_system_tools(tc))
    if missing:
        raise BackendUnavailable(
            f"toolchain {tc.name!r} needs {len(missing)} system tool(s) not found here; "
            "nothing was downloaded",
            context=policy.gap_lines(missing),
            hint=f"{policy.gap_hint(missing)}; then rerun `rmbuild toolchain install {tc.name}` "
            "(--without-system-tools installs now)",
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
        # "installed" only where a compile would find everything; else what is missing.
        prefix = f"toolchain {row['name']}: "
        gaps = sorted(
            (g["what"].removeprefix(prefix) for g in row["missing"]),
            key=lambda what: what.startswith("system tool"),  # the environment first
        )
        state = (
            styled(("installed", "green"))
            if row["ready"]
            else styled(("; ".join(gaps), "yellow" if row["installed"] else "red"))
        )
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
    from rmbuild.toolrun import provision

    removed = provision.remove(_find(name))
    click.echo(f"{name}: {'removed' if removed else 'was not installed'}")


@command.command("path")
@click.argument("name")
def path_cmd(name: str) -> None:
    """Print the environment folder of toolchain NAME (exit 7 when not installed)."""
    from rmbuild.toolrun import provision

    tc = _find(name)
    if tc.provisioned:
        provision.require(tc)
    click.echo(str(tc.prefix))
