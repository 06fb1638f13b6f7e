"""What Rebellions tooling and devices this machine has, found without importing the SDK here.

The SDK (rebel-compiler + optimum-rbln 0.12, which pins torch 2.13.0+cpu and transformers
5.15.1) lives only in the ``rbln`` toolchain: rmbuild's own environment cannot hold
it. Device facts for a load come from ``rebel`` itself, asked in that toolchain
(``rmbuild/tools/rbln_run.py devices``: ``rebel.device_count()``, ``rebel.get_npu_name(i)``);
``/dev/rbln*`` and ``rbln-smi`` (``rmbuild.host.resources.rebellions``) where it cannot answer.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rmbuild.backends.base import Resource
from rmbuild.config import PACKAGE_DIR

if TYPE_CHECKING:
    from rmbuild.toolrun.toolchains import Toolchain

TOOLCHAIN = "rbln"
OPTIMUM_DIST = "optimum-rbln"
COMPILER_DIST = "rebel-compiler"
RUN_SCRIPT = PACKAGE_DIR / "tools" / "rbln_run.py"
DEVICES_TIMEOUT_S = 60
# SKUs rebel-compiler targets (docs/toolchains.md); a form-factor suffix is the same SKU.
KNOWN_NPUS = ("RBLN-CA02", "RBLN-CA12", "RBLN-CA22", "RBLN-CA25", "RBLN-CR03")


def toolchain(start: Path | None = None) -> Toolchain:
    """The ``rbln`` toolchain definition (installed or not): project, user, built-in."""
    from rmbuild.toolrun.toolchains import find_toolchain

    return find_toolchain(TOOLCHAIN, start)


def normalize_npu(npu: str) -> str:
    """``RBLN-CA25``, ``rbln-ca25``, ``RBLN-CA25-xyz`` -> ``RBLN-CA25``."""
    match = re.match(r"(RBLN-C[AR]\d+)", npu.strip().upper())
    return match.group(1) if match else npu.strip()


def tool_env(tc: Toolchain) -> dict[str, str]:
    """The scrubbed environment rmbuild gives the toolchain's processes: the
    same builder as a compile's, with no profile of its own."""
    from rmbuild.toolrun.toolenv import tool_env as build_env

    return build_env(None, tc, None)


def sdk_devices(tc: Toolchain) -> dict[str, Any]:
    """``rebel``'s own answer in the toolchain: ``{"count", "names", "rebel_version"}``, or
    ``{"error": ...}`` (with the SDK's last lines) when it cannot say."""
    try:
        done = subprocess.run(  # noqa: S603 - the toolchain's own python, no shell
            [str(tc.python_path), str(RUN_SCRIPT), "devices"],
            capture_output=True,
            text=True,
            timeout=DEVICES_TIMEOUT_S,
            env=tool_env(tc),
            check=False,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        return {"error": f"{type(exc).__name__}: {exc}"}
    lines = done.stdout.strip().splitlines()
    try:
        data = json.loads(lines[-1])
    except (IndexError, ValueError):
        data = {"error": f"exit {done.returncode}"}
    if done.returncode != 0 or "error" in data:
        data["stderr"] = done.stderr.strip().splitlines()[-10:]
    return data


def devices() -> list[Resource]:
    """ATOM devices here from /dev/rbln* and rbln-smi (no process in the toolchain)."""
    from rmbuild.host.resources import rebellions

    return [
        Resource(
            type="npu", name=d["name"], vendor="rebellions", attributes={"driver": d["driver"]}
        )
        for d in rebellions()["devices"]
    ]
