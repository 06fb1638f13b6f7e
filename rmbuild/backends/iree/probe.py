"""What IREE can use on this machine, and what ``iree-compile`` targets, found without importing
the compiler.

Two facts need the tools themselves rather than /proc:

* which LLVM CPU name and features ``--iree-llvmcpu-target-cpu=host`` means here, and which
  arch/PTX version a CUDA target name means: ``iree-compile`` resolves them into the executable
  target attribute of a tiny module compiled to the HAL phase (``--compile-to=hal``, ~0.3 s);
* which CUDA devices the IREE runtime's ``cuda`` driver sees (it needs ``libcuda``; without it the
  driver fails to load, which means "no CUDA device", not an error).
"""

from __future__ import annotations

import hashlib
import importlib.metadata as md
import importlib.util
import json
import os
import platform
import re
import shutil
import subprocess
import sys
from functools import cache
from pathlib import Path
from typing import Any

from rmbuild.backends.base import Resource
from rmbuild.host.hostinfo import cpu_info, gpus

RUNTIME_DIST = "iree-base-runtime"
COMPILER_DIST = "iree-base-compiler"

# A module with one dispatch: compiling it to the HAL phase materializes the executable target.
_PROBE_MLIR = """
func.func @f(%a: tensor<4xf32>, %b: tensor<4xf32>) -> tensor<4xf32> {
  %c = arith.addf %a, %b : tensor<4xf32>
  return %c : tensor<4xf32>
}
"""

# /proc/cpuinfo flag -> LLVM feature name, where they differ (x86 and aarch64). Used only when
# iree-compile is not installed (a runtime-only host); flags absent from this table and from
# LLVM's names are simply not checked.
_CPUINFO_TO_LLVM = {
    "pni": "sse3",
    "sse4_1": "sse4.1",
    "sse4_2": "sse4.2",
    "pclmulqdq": "pclmul",
    "bmi1": "bmi",
    "abm": "lzcnt",
    "sha_ni": "sha",
    "rdrand": "rdrnd",
    "lahf_lm": "sahf",
    "3dnowprefetch": "prfchw",
    "avx512_vnni": "avx512vnni",
    "avx512_bf16": "avx512bf16",
    "avx512_fp16": "avx512fp16",
    "avx512_vbmi2": "avx512vbmi2",
    "avx512_bitalg": "avx512bitalg",
    "avx512_vpopcntdq": "avx512vpopcntdq",
    "avx512vbmi": "avx512vbmi",
    "avx512ifma": "avx512ifma",
    "avx_vnni": "avxvnni",
    "amx_tile": "amx-tile",
    "amx_int8": "amx-int8",
    "amx_bf16": "amx-bf16",
    "asimd": "neon",
}
# LLVM x86/aarch64 features that /proc/cpuinfo reports under the same name.
_SAME_NAME = {
    "sse",
    "sse2",
    "ssse3",
    "sse4a",
    "avx",
    "avx2",
    "fma",
    "fma4",
    "xop",
    "f16c",
    "bmi2",
    "popcnt",
    "movbe",
    "adx",
    "aes",
    "cx16",
    "cx8",
    "fxsr",
    "mmx",
    "xsave",
    "xsaveopt",
    "xsavec",
    "xsaves",
    "fsgsbase",
    "gfni",
    "vaes",
    "vpclmulqdq",
    "clflushopt",
    "clwb",
    "clzero",
    "rdseed",
    "avx512f",
    "avx512cd",
    "avx512bw",
    "avx512dq",
    "avx512vl",
    "sve",
    "sve2",
    "crc32",
}


def _dist_version(dist: str) -> str | None:
    try:
        return md.version(dist)
    except md.PackageNotFoundError:
        return None


def runtime_version() -> str | None:
    """The installed IREE runtime version, or None, without importing it."""
    if importlib.util.find_spec("iree") is None or importlib.util.find_spec("iree.runtime") is None:
        return None
    return _dist_version(RUNTIME_DIST)


def compiler_version() -> str | None:
    """The installed IREE compiler version, or None, without importing it."""
    return _dist_version(COMPILER_DIST)


def find_iree_compile(toolchain: str | None = None) -> Path | None:
    """``iree-compile`` of ``toolchain`` (its bin dir first), or next to this Python, or on PATH."""
    if toolchain:
        try:
            from rmbuild.toolrun.toolchains import find_toolchain

            return find_toolchain(toolchain).which("iree-compile")
        except Exception:  # an unknown toolchain or a missing tool: fall back below
            pass
    here = Path(sys.executable).parent / "iree-compile"
    if here.is_file():
        return here
    found = shutil.which("iree-compile")
    return Path(found) if found else None


class TargetNotKnown(ValueError):
    """iree-compile ran but does not know the requested target."""


def _probe_cache_file(tool: Path, args: tuple[str, ...]) -> Path | None:
    """Where the answer of ``tool`` for ``args`` on this CPU is kept, or None.

    Keyed by the compiler's identity (path, inode, mtime, size: a new build of iree-compile
    is asked again) and the CPU (/proc/cpuinfo's flags and the machine: ``host`` means this
    CPU), so a cache hit does not start iree-compile (0.3-0.45 s) in every process.
    """
    try:
        from rmbuild.config import store_root
        from rmbuild.host.hostinfo import host_digest

        st = os.stat(tool)
        ident = [str(tool), st.st_ino, st.st_mtime_ns, st.st_size, list(args), host_digest()]
        digest = hashlib.sha256(json.dumps(ident).encode()).hexdigest()
        return store_root() / "probe-cache" / f"iree-{digest[:32]}.txt"
    except Exception:  # noqa: BLE001 - no cache is only slower
        return None


@cache
def _resolve(tool: Path, args: tuple[str, ...]) -> str:
    """The executable target attribute iree-compile derives from ``args`` (text); asked
    once per compiler build and CPU, then read from the probe cache."""
    cached = _probe_cache_file(tool, args)
    if cached is not None:
        try:
            return cached.read_text("utf-8")
        except OSError:
            pass
    text = _ask(tool, args)
    if cached is not None:
        try:
            cached.parent.mkdir(parents=True, exist_ok=True)
            tmp = cached.with_name(f".{cached.name}.{os.getpid()}.tmp")
            tmp.write_text(text, "utf-8")
            os.replace(tmp, cached)
        except OSError:
            pass
    return text


def _ask(tool: Path, args: tuple[str, ...]) -> str:
    from rmbuild.toolrun.toolenv import base_env, run_probe

    # The compiler's own dir on PATH (its Python wrapper finds its native binary), nothing of
    # the caller's environment.
    proc = run_probe(
        [str(tool), "-", "--compile-to=hal", "-o", "-", *args],
        base_env(tool.parent),
        input=_PROBE_MLIR,
        timeout=120,
    )
    text = (proc.stdout + proc.stderr).replace("\\22", '"')
    if "missing GPU target" in text:
        raise TargetNotKnown(" ".join(args))
    match = re.search(r"#hal\.executable\.target<[^\n]*", text)
    if proc.returncode != 0 or match is None:
        tail = "\n".join(text.strip().splitlines()[-5:])
        raise RuntimeError(f"iree-compile could not resolve {' '.join(args)}: {tail}")
    return match.group(0)


def _attr(text: str, name: str) -> str | None:
    found = re.search(rf'\b{name} = "([^"]*)"', text)
    return found.group(1) if found else None


def enabled_features(spec: str) -> list[str]:
    """``+a,+b,-a`` -> [b]: the features left on, last mention winning as in LLVM."""
    state: dict[str, bool] = {}
    for item in spec.split(","):
        item = item.strip()
        if len(item) > 1 and item[0] in "+-":
            state[item[1:]] = item[0] == "+"
    return sorted(name for name, on in state.items() if on)


def resolve_llvmcpu(
    tool: Path, cpu: str = "host", features: str | None = None, triple: str | None = None
) -> dict[str, Any]:
    """LLVM CPU name, enabled features and executable format iree-compile targets."""
    args = [
        "--iree-hal-target-device=local",
        "--iree-hal-local-target-device-backends=llvm-cpu",
        f"--iree-llvmcpu-target-cpu={cpu}",
    ]
    if features:
        args.append(f"--iree-llvmcpu-target-cpu-features={features}")
    if triple:
        args.append(f"--iree-llvmcpu-target-triple={triple}")
    text = _resolve(tool, tuple(args))
    fmt = re.search(r'"llvm-cpu", "([^"]+)"', text)
    return {
        "target_device": "local",
        "backend": "llvm-cpu",
        "format": fmt.group(1) if fmt else None,
        "cpu": _attr(text, "cpu"),
        "cpu_features": enabled_features(_attr(text, "cpu_features") or ""),
    }


def resolve_cuda(tool: Path, target: str, features: str | None = None) -> dict[str, Any]:
    """The sm_XX arch and PTX features iree-compile uses for a CUDA target name."""
    args = ["--iree-hal-target-device=cuda", f"--iree-cuda-target={target}"]
    if features:
        args.append(f"--iree-cuda-target-features={features}")
    text = _resolve(tool, tuple(args))
    return {
        "target_device": "cuda",
        "arch": _attr(text, "arch"),
        "features": _attr(text, "features"),
    }


def host_llvm_features() -> set[str]:
    """This CPU's features in LLVM's names: iree-compile's own view of ``host`` when the
    compiler is installed, else /proc/cpuinfo mapped to LLVM names."""
    tool = find_iree_compile()
    if tool is not None:
        try:
            return set(resolve_llvmcpu(tool)["cpu_features"])
        except (RuntimeError, OSError, subprocess.SubprocessError):
            pass
    return cpuinfo_llvm_features()


@cache
def cpuinfo_llvm_features() -> set[str]:
    flags: set[str] = set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() in ("flags", "Features"):
                flags = set(value.split())
                break
    except OSError:
        pass
    return {_CPUINFO_TO_LLVM.get(f, f) for f in flags if f in _CPUINFO_TO_LLVM or f in _SAME_NAME}


def checkable_features() -> set[str] | None:
    """Features whose absence we can see without iree-compile (None: all, with it)."""
    if find_iree_compile() is not None:
        return None
    return set(_CPUINFO_TO_LLVM.values()) | _SAME_NAME


def host_format() -> str:
    """The llvm-cpu executable format a host build here gets (embedded-elf-<arch>)."""
    arch = {"amd64": "x86_64", "arm64": "arm_64", "aarch64": "arm_64"}.get(
        platform.machine().lower(), platform.machine().lower()
    )
    return f"embedded-elf-{arch}"


def cuda_devices() -> tuple[list[dict[str, Any]], str]:
    """CUDA devices the IREE runtime sees, with compute capability where nvidia-smi tells it;
    and, when there are none, why."""
    if runtime_version() is None:
        return [], "the IREE runtime is not installed"
    try:
        import iree.runtime as rt

        found = rt.get_driver("cuda").query_available_devices()
    except Exception as exc:  # no libcuda, no driver: no device
        reason = str(exc).split("UNAVAILABLE;")[-1].strip() or type(exc).__name__
        return [], reason
    smi = gpus()
    devices = []
    for index, info in enumerate(found):
        device = {
            "device_id": info.get("device_id"),
            "path": info.get("path", ""),
            "name": info.get("name", ""),
        }
        if index < len(smi) and smi[index].get("compute_capability"):
            cc = smi[index]["compute_capability"]
            device["compute_capability"] = cc
            device["arch"] = "sm_" + cc.replace(".", "")
            device["driver"] = smi[index].get("driver", "")
        devices.append(device)
    return devices, "" if devices else "the cuda driver found no device"


def probe() -> list[Resource]:
    if runtime_version() is None:
        return []
    cpu = cpu_info()
    resources = [
        Resource(
            type="cpu",
            name=cpu["model"],
            vendor=cpu["vendor"],
            attributes={"driver": "local-task", "cores": cpu["cores"], "isa": cpu["isa"]},
        )
    ]
    devices, _ = cuda_devices()
    for device in devices:
        resources.append(
            Resource(
                type="gpu",
                name=device["name"],
                vendor="nvidia",
                attributes={"driver": "cuda", **device},
            )
        )
    return resources
