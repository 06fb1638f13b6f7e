"""``rmbuild info``: what this machine has."""

from __future__ import annotations

import platform
from pathlib import Path
from typing import Any

import click

from rmbuild.cli._output import console, emit_json, styled


def machine_info() -> dict[str, Any]:
    """CPU, accelerators, toolchains and backends of this machine. The one SDK imported is
    OpenVINO's, where installed: its device list is asked of it (rmbuild.host.resources)."""
    from rmbuild.host.hostinfo import cpu_info
    from rmbuild.host.resources import discover
    from rmbuild.planning import policy
    from rmbuild.plugins import registry
    from rmbuild.toolrun import provision
    from rmbuild.toolrun.toolchains import list_toolchains

    toolchains = []
    for tc in list_toolchains(Path.cwd()):  # the project's own toolchains too
        # What it lacks, as `toolchain ls`, compile and --plan say it (one function decides).
        missing = policy.toolchain_gaps(tc)
        try:
            identity = tc.identity()
            entry = {
                "name": tc.name,
                "python": str(tc.python_path),
                "python_version": identity["python"],
                "packages": identity["packages"],
                "ready": not missing,
                "missing": missing,
            }
            if tc.provisioned:  # Rmbuild's own venv under the data dir
                entry["provisioned"] = str(tc.prefix)
                entry["lock"] = identity.get("lock")
            toolchains.append(entry)
        except Exception as exc:  # a broken or missing toolchain is reported, not fatal
            error = str(exc)
            if tc.provisioned and not provision.status(tc).installed:
                error = f"{provision.status(tc).reason}: rmbuild toolchain install {tc.name}"
            toolchains.append(
                {
                    "name": tc.name,
                    "python": str(tc.python_path),
                    "error": error,
                    "ready": False,
                    "missing": missing,
                }
            )
    found = discover()
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
        # Every vendor asked its documented way (rmbuild.host.resources); gpus/npus keep
        # their old shape for scripts that read them.
        "gpus": [d for d in found["devices"] if d["class"] == "gpu"],
        "npus": [{**d, "device": d["name"]} for d in found["devices"] if d["class"] == "npu"],
        "resources": found,
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
    # rmbuild[onnx]): printed as styled text, never read as markup.
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
        f"{g['name']} (cc {g.get('compute_capability') or '-'}, driver {g.get('driver') or '?'})"
        for g in info["gpus"]
    )
    out.print(
        styled(("gpus", "bold"), "     " + (gpus or "none found (NVML, nvidia-smi, OpenVINO)"))
    )
    npus = ", ".join(
        f"{n['vendor']} {n['device']}" + (f" (driver {n['driver']})" if n.get("driver") else "")
        for n in info["npus"]
    )
    where = "/dev/rngd*, furiosa_smi, /dev/rbln*, rbln-smi, /dev/accel/accel*, OpenVINO"
    out.print(styled(("npus", "bold"), "     " + (npus or f"none found ({where})")))
    resources = info.get("resources") or {}
    if resources.get("openvino"):
        names = ", ".join(d["name"] for d in resources["openvino"])
        out.print(styled(("openvino", "bold"), " " + names))
    smi = (resources.get("furiosa") or {}).get("smi")
    if smi is not None:
        seen = f"{len(smi.get('devices') or [])} RNGD device(s)"
        if smi.get("error"):
            seen += f" ({smi['error']})"
        out.print(styled(("furiosa", "bold"), "  furiosa_smi (furiosa toolchain): " + seen))
    out.print(styled(("toolchains", "bold")))
    for tc in info["toolchains"]:
        if "error" in tc:
            if not tc.get("missing"):
                out.print(styled(f"  {tc['name']}: ", (str(tc["error"]), "red")))
                continue
            out.print(styled(f"  {tc['name']}: ", ("not usable here", "red")))
            for gap in tc["missing"]:
                out.print(styled((_gap_line(tc["name"], gap), "red")))
            continue
        found = [f"{k} {v}" for k, v in tc["packages"].items() if v]
        out.print(
            styled(f"  {tc['name']} (python {tc['python_version']}): {', '.join(found) or '-'}")
        )
        if tc.get("provisioned"):
            out.print(styled((f"    provisioned at {tc['provisioned']}", "dim")))
        if "missing" not in tc:  # an entry from before rmbuild.planning.policy said what one lacks
            absent = [k for k, v in tc["packages"].items() if not v]
            if absent:
                out.print(styled((f"    not installed: {', '.join(absent)}", "dim")))
            continue
        for gap in tc["missing"]:
            out.print(styled((_gap_line(tc["name"], gap), "yellow")))
    out.print(styled(("backends", "bold")))
    for name, b in info["backends"].items():
        if b["available"]:
            out.print(styled(f"  {name}: ", ("available", "green")))
        else:
            out.print(styled(f"  {name}: ", ("unavailable", "red"), f": {b['reason']}"))


def _gap_line(name: str, gap: dict[str, str]) -> str:
    """``    missing: WHAT -> COMMAND`` for one gap of toolchain ``name``."""
    what = gap["what"].removeprefix(f"toolchain {name}: ")
    install = f" -> {gap['install']}" if gap["install"] else ""
    return f"    missing: {what}{install}"
