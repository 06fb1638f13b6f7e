"""What FuriosaAI tooling and devices this machine has, found without importing the SDK.

The SDK (furiosa-llm 2026.4, torch 2.10) lives only in the provisioned ``furiosa`` toolchain
(issue 7); this module reads its install marker and the device nodes, and asks ``furiosa_smi``
through ``rmbuild.resources`` (a subprocess in that toolchain).
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
    from rmbuild.toolchains import find_toolchain

    return find_toolchain(TOOLCHAIN, start)


def npu_target(tp: int, pp: int = 1) -> str:
    """The RNGD compile target implied by tensor parallelism (TOOLCHAINS.md: there is no target
    option; ``renegade`` is one PE, ``renegade-{2,4,8}pe`` a PE group of one chip,
    ``renegade-8pe-{N}chip`` N whole chips). ``pp`` splits stages over devices of that target."""
    if tp <= 1:
        return "renegade"
    if tp < PES_PER_CHIP:
        return f"renegade-{tp}pe"
    chips = tp // PES_PER_CHIP
    return "renegade-8pe" if chips == 1 else f"renegade-8pe-{chips}chip"


def devices() -> list[Resource]:
    """RNGD devices here (furiosa_smi in the toolchain, else /dev/rngd*)."""
    from rmbuild.resources import furiosa

    return [
        Resource(type="npu", name=d["name"], vendor="furiosa", attributes={"driver": d["driver"]})
        for d in furiosa()["devices"]
    ]
