"""Resource discovery: the accelerators this machine has, by resource class.

Each vendor is asked the way it documents (docs/toolchains.md), and nothing here fails: a missing
tool or SDK means "none found", with where we looked.

* NVIDIA: NVML (``pynvml``) when importable, else ``nvidia-smi --query-gpu=name,driver_version,
  compute_cap``;
* OpenVINO: ``Core().available_devices`` with each device's ``FULL_DEVICE_NAME`` (when the
  openvino extra is installed);
* FuriosaAI RNGD: ``/dev/rngd*`` and ``furiosa_smi`` run inside the provisioned ``furiosa``
  toolchain (2026.4 ships no ``furiosa-smi`` executable), only when it is installed;
* Rebellions ATOM: ``/dev/rbln*`` and ``rbln-smi``;
* Intel NPU: ``/dev/accel/accel*`` and the ``intel_vpu`` driver version from ``/sys``.

Every found device is a dict with ``class`` (cpu|gpu|npu), ``vendor``, ``name``, ``driver``
and ``source`` (how it was found).
"""

from __future__ import annotations

import glob
import importlib.util
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

SMI_TIMEOUT_S = 15


def _read(path: str) -> str | None:
    try:
        return Path(path).read_text().strip() or None
    except OSError:
        return None


def nvidia() -> list[dict[str, Any]]:
    """NVIDIA GPUs: NVML first (no process), nvidia-smi otherwise."""
    if importlib.util.find_spec("pynvml") is not None:
        try:
            import pynvml

            pynvml.nvmlInit()
            try:
                driver = pynvml.nvmlSystemGetDriverVersion()
                found = []
                for i in range(pynvml.nvmlDeviceGetCount()):
                    handle = pynvml.nvmlDeviceGetHandleByIndex(i)
                    major, minor = pynvml.nvmlDeviceGetCudaComputeCapability(handle)
                    found.append(
                        {
                            "class": "gpu",
                            "vendor": "nvidia",
                            "name": pynvml.nvmlDeviceGetName(handle),
                            "driver": str(driver),
                            "compute_capability": f"{major}.{minor}",
                            "source": "nvml",
                        }
                    )
                return found
            finally:
                pynvml.nvmlShutdown()
        except Exception:  # noqa: BLE001 - NVML absent or no driver: try the CLI
            pass
    from rmbuild.host.hostinfo import gpus

    return [{"class": "gpu", **g, "source": "nvidia-smi"} for g in gpus()]


def openvino() -> list[dict[str, Any]]:
    """OpenVINO's devices with their full names (CPU here; GPU, NPU where present)."""
    if importlib.util.find_spec("openvino") is None:
        return []
    try:
        from openvino import Core

        core = Core()
        found = []
        for device in core.available_devices:
            try:
                full = str(core.get_property(device, "FULL_DEVICE_NAME"))
            except Exception:  # noqa: BLE001 - a plugin without the property
                full = device
            kind = device.split(".")[0].lower()
            found.append(
                {
                    "class": {"cpu": "cpu", "gpu": "gpu", "npu": "npu"}.get(kind, kind),
                    "vendor": "intel" if kind in ("gpu", "npu") else "",
                    "name": f"{device}: {full}",
                    "device": device,
                    "driver": None,
                    "source": "openvino",
                }
            )
        return found
    except Exception:  # noqa: BLE001 - a broken install is "no devices", never a crash
        return []


_FURIOSA_SMI = (
    "import json\n"
    "out={'devices':[], 'driver': None, 'error': None}\n"
    "try:\n"
    "    import furiosa_smi as s\n"
    "    try: s.init()\n"
    "    except Exception: pass\n"
    "    for d in s.list_devices():\n"
    "        try: i=d.device_info(); out['devices'].append({'name': str(i.name()), "
    "'arch': str(i.arch()), 'firmware': str(i.firmware_version())})\n"
    "        except Exception as e: out['devices'].append({'name': str(d)})\n"
    "    try: out['driver']=str(s.driver_info())\n"
    "    except Exception as e: out['error']=type(e).__name__+': '+str(e)\n"
    "except Exception as e:\n"
    "    out['error']=type(e).__name__+': '+str(e)\n"
    "print(json.dumps(out))\n"
)


def furiosa(smi: bool = True) -> dict[str, Any]:
    """RNGD: device nodes, and furiosa_smi inside the furiosa toolchain when installed (and
    ``smi``: compile's policy passes False, so a cache hit starts nothing in that toolchain)."""
    nodes = sorted({*glob.glob("/dev/rngd*"), *glob.glob("/dev/rngd/*")})
    nodes = [n for n in nodes if n != "/dev/rngd"]
    result: dict[str, Any] = {"nodes": nodes, "smi": None, "devices": []}
    try:
        from rmbuild.toolrun import provision
        from rmbuild.toolrun.toolchains import find_toolchain

        tc = find_toolchain("furiosa", Path.cwd())
        if smi and provision.status(tc).installed:
            from rmbuild.toolrun.toolenv import python_argv, run_probe, tool_env

            # Isolated, in the toolchain's scrubbed environment: the vendor's native module
            # sees what its compiler would, never the caller's secrets.
            out = run_probe(
                python_argv(tc.python_path, _FURIOSA_SMI),
                tool_env(None, tc, None),
                timeout=SMI_TIMEOUT_S,
            ).stdout
            result["smi"] = json.loads(out.strip().splitlines()[-1])
    except Exception:  # noqa: BLE001 - no toolchain, or smi broken: nodes only
        pass
    smi_devices = (result["smi"] or {}).get("devices") or []
    driver = (result["smi"] or {}).get("driver")
    for i, dev in enumerate(smi_devices):
        result["devices"].append(
            {
                "class": "npu",
                "vendor": "furiosa",
                "name": f"RNGD {dev.get('name', i)}",
                "driver": driver,
                "source": "furiosa_smi",
            }
        )
    if not smi_devices:
        for node in nodes:
            result["devices"].append(
                {
                    "class": "npu",
                    "vendor": "furiosa",
                    "name": node,
                    "driver": None,
                    "source": "/dev",
                }
            )
    return result


def rebellions() -> dict[str, Any]:
    """ATOM: /dev/rbln* and rbln-smi (its output kept as text)."""
    nodes = sorted(glob.glob("/dev/rbln[0-9]*"))
    smi = shutil.which("rbln-smi") or shutil.which("rbln-stat")
    text = None
    if smi:
        from rmbuild.toolrun.toolenv import base_env, run_probe

        try:
            text = run_probe([smi], base_env(), timeout=SMI_TIMEOUT_S).stdout.strip()[:2000]
        except (OSError, subprocess.SubprocessError):
            text = None
    driver = _read("/sys/module/rebellions/version") or _read("/sys/module/rbln/version")
    devices = [
        {"class": "npu", "vendor": "rebellions", "name": n, "driver": driver, "source": "/dev"}
        for n in nodes
    ]
    return {"nodes": nodes, "smi": smi, "smi_output": text, "devices": devices}


def intel_npu() -> dict[str, Any]:
    """Intel NPU: /dev/accel/accel* bound to the intel_vpu driver."""
    nodes = sorted(glob.glob("/dev/accel/accel*"))
    driver = _read("/sys/module/intel_vpu/version")
    devices = []
    for node in nodes:
        name = Path(node).name
        drv = Path(f"/sys/class/accel/{name}/device/driver")
        bound = drv.resolve().name if drv.exists() else None
        if bound and bound != "intel_vpu":
            continue  # another vendor's accel node (e.g. Habana)
        devices.append(
            {"class": "npu", "vendor": "intel", "name": node, "driver": driver, "source": "/dev"}
        )
    return {"nodes": nodes, "devices": devices}


def discover(smi: bool = True) -> dict[str, Any]:
    """Every vendor's view plus one flat ``devices`` list (cpu entries from OpenVINO excluded:
    the CPU is described by ``hostinfo.cpu_info``)."""
    found = {
        "nvidia": nvidia(),
        "openvino": openvino(),
        "furiosa": furiosa(smi),
        "rebellions": rebellions(),
        "intel_npu": intel_npu(),
    }
    devices = [*found["nvidia"]]
    devices += [d for d in found["openvino"] if d["class"] != "cpu"]
    devices += found["furiosa"]["devices"] + found["rebellions"]["devices"]
    devices += found["intel_npu"]["devices"]
    found["devices"] = devices
    return found


def devices_of(resource_class: str) -> list[dict[str, Any]]:
    """Devices of one class here (``cpu`` is always present)."""
    if resource_class == "cpu":
        from rmbuild.host.hostinfo import cpu_info

        return [{"class": "cpu", "vendor": "", "name": cpu_info()["model"], "source": "/proc"}]
    return [d for d in discover()["devices"] if d["class"] == resource_class]
