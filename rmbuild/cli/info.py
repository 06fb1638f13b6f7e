"""``rmbuild info``: what this machine has."""

from __future__ import annotations

import platform
from pathlib import Path
from typing import Any

import click

from rmbuild.cli._output import console, emit_json, styled


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
    # Every value here comes from the machine or a package (a GPU name, a pip extra such as
    # rmbuild[onnx]): printed as styled text, never read as markup (issue 6 #16).
    platform_ = info["platform"]
    out.print(
        styled(
            ("platform", "bold"),
            f" {platform_['system']} {platform_['release']}, python {platform_['python']}",
        )
    )
    out.print(
        styled(("cpu", "bold"), f"      {cpu['model']} ({cpu['arch']}, {cpu['cores']} cores)")
    )
    out.print(styled(("isa", "bold"), "      " + (" ".join(cpu["isa"]) or "-")))
    gpus = ", ".join(
        f"{g['name']} (cc {g['compute_capability']}, driver {g['driver']})" for g in info["gpus"]
    )
    out.print(styled(("gpus", "bold"), "     " + (gpus or "none found (nvidia-smi)")))
    npus = ", ".join(f"{n['vendor']} {n['device']}" for n in info["npus"])
    out.print(styled(("npus", "bold"), "     " + (npus or "none found")))
    out.print(styled(("toolchains", "bold")))
    for tc in info["toolchains"]:
        if "error" in tc:
            out.print(styled(f"  {tc['name']}: ", (str(tc["error"]), "red")))
            continue
        found = [f"{k} {v}" for k, v in tc["packages"].items() if v]
        missing = [k for k, v in tc["packages"].items() if not v]
        out.print(
            styled(f"  {tc['name']} (python {tc['python_version']}): {', '.join(found) or '-'}")
        )
        if missing:
            out.print(styled((f"    not installed: {', '.join(missing)}", "dim")))
    out.print(styled(("backends", "bold")))
    for name, b in info["backends"].items():
        if b["available"]:
            out.print(styled(f"  {name}: ", ("available", "green")))
        else:
            out.print(styled(f"  {name}: ", ("unavailable", "red"), f": {b['reason']}"))
