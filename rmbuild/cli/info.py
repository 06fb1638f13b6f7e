"""``rmbuild info``: what this machine has."""

from __future__ import annotations

import platform
from pathlib import Path
from typing import Any

import click

from rmbuild.cli._output import console, emit_json


def machine_info() -> dict[str, Any]:
    """CPU, accelerators, toolchains and backends of this machine (imports no SDK)."""
    from rmbuild.hostinfo import cpu_info, gpus, npus
    from rmbuild.plugins import registry
    from rmbuild.toolchains import list_toolchains

    toolchains = []
    for tc in list_toolchains(Path.cwd()):  # the project's own toolchains too
        try:
            identity = tc.identity()
            toolchains.append(
                {
                    "name": tc.name,
                    "python": str(tc.python_path),
                    "python_version": identity["python"],
                    "packages": identity["packages"],
                }
            )
        except Exception as exc:  # a broken toolchain is reported, not fatal
            toolchains.append({"name": tc.name, "python": str(tc.python_path), "error": str(exc)})
    backends = {}
    for name, entry in registry().items():
        avail = entry.availability()
        backends[name] = {"available": avail.ok, "reason": avail.reason, "versions": avail.versions}
    return {
        "platform": {
            "system": platform.system(),
            "release": platform.release(),
            "python": platform.python_version(),
        },
        "cpu": cpu_info(),
        "gpus": gpus(),
        "npus": npus(),
        "toolchains": toolchains,
        "backends": backends,
    }


@click.command("info")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def command(as_json: bool) -> None:
    """Show CPU features, GPUs/NPUs found, toolchains with versions."""
    info = machine_info()
    if as_json:
        emit_json(info)
        return
    out = console()
    cpu = info["cpu"]
    out.print(
        f"[bold]platform[/] {info['platform']['system']} {info['platform']['release']}, "
        f"python {info['platform']['python']}"
    )
    out.print(f"[bold]cpu[/]      {cpu['model']} ({cpu['arch']}, {cpu['cores']} cores)")
    out.print(f"[bold]isa[/]      {' '.join(cpu['isa']) or '-'}")
    out.print(
        "[bold]gpus[/]     "
        + (
            ", ".join(
                f"{g['name']} (cc {g['compute_capability']}, driver {g['driver']})"
                for g in info["gpus"]
            )
            or "none found (nvidia-smi)"
        )
    )
    out.print(
        "[bold]npus[/]     "
        + (", ".join(f"{n['vendor']} {n['device']}" for n in info["npus"]) or "none found")
    )
    out.print("[bold]toolchains[/]")
    for tc in info["toolchains"]:
        if "error" in tc:
            out.print(f"  {tc['name']}: [red]{tc['error']}[/]")
            continue
        found = [f"{k} {v}" for k, v in tc["packages"].items() if v]
        missing = [k for k, v in tc["packages"].items() if not v]
        out.print(f"  {tc['name']} (python {tc['python_version']}): {', '.join(found) or '-'}")
        if missing:
            out.print(f"    [dim]not installed: {', '.join(missing)}[/]")
    out.print("[bold]backends[/]")
    for name, b in info["backends"].items():
        state = "[green]available[/]" if b["available"] else f"[red]unavailable[/]: {b['reason']}"
        out.print(f"  {name}: {state}")
