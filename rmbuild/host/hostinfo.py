"""Facts about this machine: CPU model and ISA features, accelerators, toolchains.

Read from /proc, /dev and vendor CLIs; no SDK is imported, so ``rmbuild info`` works anywhere.
"""

from __future__ import annotations

import hashlib
import os
import platform
from functools import cache
from pathlib import Path
from typing import Any

# ISA extensions that change what a compiler may emit for this CPU (ORT level-all layouts, IREE
# llvm-cpu host features). Other cpuinfo flags (e.g. virtualization) do not matter.
RELEVANT_ISA = (
    "sse4_1",
    "sse4_2",
    "avx",
    "avx2",
    "fma",
    "f16c",
    "bmi2",
    "avx512f",
    "avx512bw",
    "avx512cd",
    "avx512dq",
    "avx512vl",
    "avx512_vnni",
    "avx512_bf16",
    "avx512_fp16",
    "avx_vnni",
    "amx_bf16",
    "amx_int8",
    "amx_tile",
    "neon",
    "asimd",
    "sve",
    "sve2",
)


def host_digest() -> str:
    """The first CPU's flags and model and the machine type: what an answer computed for this
    CPU depends on (the plan cache's fast path, the IREE backend's probe cache)."""
    flags = ""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith(("flags", "Features", "model name", "CPU part")):
                    flags += line
                if line.strip() == "":
                    break  # the first CPU tells it
    except OSError:
        pass
    return hashlib.sha256(f"{os.uname().machine}\n{flags}".encode()).hexdigest()


@cache
def cpu_info() -> dict[str, Any]:
    """CPU model, vendor, core count and the relevant ISA features."""
    model, vendor, flags = platform.machine(), "", set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            key = key.strip()
            if key in ("model name", "Model"):
                model = value.strip()
            elif key == "vendor_id":
                vendor = value.strip()
            elif key in ("flags", "Features") and not flags:
                flags = set(value.split())
    except OSError:
        pass
    return {
        "model": model,
        "vendor": vendor,
        "arch": platform.machine(),
        "cores": os.cpu_count() or 1,
        "isa": sorted(f for f in flags if f in RELEVANT_ISA),
    }


def gpus() -> list[dict[str, str]]:
    """NVIDIA GPUs through nvidia-smi (name, driver, compute capability), if present."""
    # Imported here: the plan cache's hit path imports this module for host_digest and starts
    # no process.
    import shutil
    import subprocess

    smi = shutil.which("nvidia-smi")
    if smi is None:
        return []
    from rmbuild.toolrun.toolenv import base_env, run_probe

    try:
        out = run_probe(
            [smi, "--query-gpu=name,driver_version,compute_cap", "--format=csv,noheader"],
            base_env(),  # the driver's tool needs nothing of the caller's environment
            timeout=10,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    found = []
    for line in out.strip().splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) == 3:
            found.append(
                {
                    "vendor": "nvidia",
                    "name": parts[0],
                    "driver": parts[1],
                    "compute_capability": parts[2],
                }
            )
    return found


def npus() -> list[dict[str, str]]:
    """NPUs visible as device nodes (Rebellions /dev/rbln*, FuriosaAI /dev/rngd/*)."""
    found = []
    for node in sorted(Path("/dev").glob("rbln[0-9]*")):
        found.append({"vendor": "rebellions", "device": str(node)})
    rngd = Path("/dev/rngd")
    if rngd.is_dir():
        for node in sorted(rngd.iterdir()):
            found.append({"vendor": "furiosa", "device": str(node)})
    return found
