"""What FuriosaAI tooling and devices this machine has, found without importing the SDK.

The SDK (furiosa-llm 2026.4, torch 2.10) lives only in the provisioned ``furiosa`` toolchain;
this module reads its install marker and the device nodes, and asks ``furiosa_smi``
through ``rmbuild.host.resources`` (a subprocess in that toolchain).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rmbuild.backends.base import Resource

TOOLCHAIN = "furiosa"
LLM_DIST = "furiosa-llm"
TCC_DIST = "furiosa-tcc"
PES_PER_CHIP = 8


def toolchain(start: Path | None = None) -> Any:
    """The ``furiosa`` toolchain definition (installed or not)."""
    from rmbuild.toolrun.toolchains import find_toolchain

    return find_toolchain(TOOLCHAIN, start)


def npu_target(tp: int, pp: int = 1) -> str:
    """The RNGD compile target implied by tensor parallelism (there is no target option).

    Seen with furiosa-llm 2026.4: at ``-tp 1`` fxb runs ``furiosa-tcc --target-npu
    renegade-8pe``: a kernel occupies one whole chip (8 PEs) up to 8, and N chips
    (``renegade-8pe-{N}chip``) beyond. ``pp`` places pipeline stages on more devices of the
    same target. The target actually used is also read back from the .fxb (``rngd.json``).
    """
    chips = max(1, -(-int(tp) // PES_PER_CHIP))
    return "renegade-8pe" if chips == 1 else f"renegade-8pe-{chips}chip"


def devices() -> list[Resource]:
    """RNGD devices here (furiosa_smi in the toolchain, else /dev/rngd*)."""
    from rmbuild.host.resources import furiosa

    return [
        Resource(type="npu", name=d["name"], vendor="furiosa", attributes={"driver": d["driver"]})
        for d in furiosa()["devices"]
    ]
