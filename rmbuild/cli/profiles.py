"""``rmbuild profiles``: the build profiles visible from here."""

from __future__ import annotations

from pathlib import Path

import click

from rmbuild.cli._output import console, emit_json, plain, styled


@click.command("profiles")
@click.option(
    "--from",
    "start",
    type=click.Path(file_okay=False, path_type=Path),
    help="Project folder to search from (default: the current folder).",
)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def command(start: Path | None, as_json: bool) -> None:
    """List profiles: project profiles/ first, then user config, then plugin packages and
    built-ins; FROM says where each comes from (project, user, env, or the package)."""
    from rmbuild.declare.profiles import list_profiles, profile_origins
    from rmbuild.errors import SpecError
    from rmbuild.plugins import registry

    folder = (start or Path.cwd()).resolve()
    backends = registry()
    origins = profile_origins(folder)
    rows = []
    for loaded in list_profiles(folder):
        if isinstance(loaded, SpecError):
            path = str(loaded.file)
            origin = origins.get(Path(path).stem)
            rows.append(
                {
                    "name": Path(path).stem,
                    "origin": origin.origin if origin else "",
                    "package": origin.package if origin else "",
                    "backend": "",
                    "stage": "",
                    "resource": "",
                    "input": "",
                    "output": "",
                    "depends_on": None,
                    "toolchain": "",
                    "tool": "",
                    "path": path,
                    "available": False,
                    "reason": f"invalid: {loaded.message}",
                }
            )
            continue
        p = loaded.profile
        entry = backends.get(p.backend)
        avail = entry.availability() if entry else None
        origin = origins.get(p.name)
        rows.append(
            {
                "name": p.name,
                "origin": origin.origin if origin else "",
                "package": origin.package if origin else "",
                "backend": p.backend,
                "stage": p.stage,
                "resource": p.resource,
                "input": p.input_format,
                "output": p.output_format,
                "depends_on": p.depends_on,
                "toolchain": p.toolchain,
                "tool": p.tool.name,
                "path": str(loaded.path),
                "available": bool(avail and avail.ok),
                "reason": ""
                if avail and avail.ok
                else (avail.reason if avail else f"no backend {p.backend!r}"),
            }
        )
    if as_json:
        emit_json(rows)
        return
    from rich.table import Table

    table = Table(box=None, pad_edge=False, header_style="bold")
    for column in ("PROFILE", "STAGE", "FLOW", "BACKEND", "TOOL", "FROM", "STATUS", "FILE"):
        table.add_column(column)
    for r in rows:
        flow = f"{r['input']} -> {r['output']}"
        status = (
            styled(("ok", "green"))
            if r["available"]
            else styled(("unavailable", "red"), ": ", r["reason"])
        )
        cells = (r["name"], r["stage"], flow, r["backend"], r["tool"], r["package"] or r["origin"])
        table.add_row(*map(plain, cells), status, plain(r["path"]))
    console().print(table)
