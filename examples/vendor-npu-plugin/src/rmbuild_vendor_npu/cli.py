"""``rmbuild vnpu-smi``: the VN devices of this host, through the runtime library (a command
the plugin package adds through the entry-point group ``rmbuild.commands``)."""

from __future__ import annotations

import json

import click


@click.command("vnpu-smi")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def command(as_json: bool) -> None:
    """List the VN-series NPUs of this host and the runtime's version."""
    from rmbuild.errors import BackendUnavailable

    from rmbuild_vendor_npu import capi
    from rmbuild_vendor_npu.plugin import INSTALL

    try:
        lib = capi.load()
    except capi.VnpuError as exc:
        raise BackendUnavailable(f"the VN runtime is not usable here: {exc}", hint=INSTALL) from exc
    devices = [{"index": i, "name": f"vnpu{i}", "sku": s} for i, s in enumerate(lib.devices())]
    if as_json:
        click.echo(
            json.dumps({"runtime": lib.version, "library": str(lib.path), "devices": devices})
        )
        return
    click.echo(f"libvnpu {lib.version} ({lib.path})")
    for device in devices:
        click.echo(f"  {device['name']}  {device['sku']}")
    if not devices:
        click.echo("  no VN device (VNPU_DEVICES is empty)")
