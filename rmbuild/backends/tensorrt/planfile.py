"""A TensorRT plan's header, read without TensorRT (issue 8; USER-NEEDS 2).

``deserialize_cuda_engine`` on a plan from another TensorRT version fails with "engine plan
file is not compatible with this version of TensorRT" (NVIDIA/TensorRT #574) or returns None;
rmbuild reads the building version from the first bytes instead and refuses before any load.

Layout (TOOLCHAINS.md; NVIDIA/TensorRT #3073, as autoware_universe PR#10320 reads it with
``TRT_MAJOR_IDX = 24``): a little-endian uint32 magic ``0x74727466`` at offset 0 (the bytes
``f t r t``), and for plans built by TensorRT 8.6 and later, bytes 24, 25, 26, 27 hold the
building version's major, minor, patch and build numbers, one unsigned byte each.
``trtexec --getPlanVersionOnly`` reads the same field. Verified here against the stand-in only:
no GPU or TensorRT install was available when this was written.
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass
from pathlib import Path

MAGIC = 0x74727466
VERSION_OFFSET = 24
HEADER_BYTES = 28


class PlanHeaderError(ValueError):
    """The file is no TensorRT plan, or too short to carry a version."""


@dataclass(frozen=True)
class PlanHeader:
    """What a plan's first bytes say."""

    major: int
    minor: int
    patch: int
    build: int

    @property
    def version(self) -> str:
        """``10.13.0`` (the build number left out: releases compare on three numbers)."""
        return f"{self.major}.{self.minor}.{self.patch}"

    @property
    def full_version(self) -> str:
        return f"{self.version}.{self.build}"


def parse_header(data: bytes) -> PlanHeader:
    """The header of a plan from its first :data:`HEADER_BYTES` (or more) bytes."""
    if len(data) < 4 or struct.unpack_from("<I", data, 0)[0] != MAGIC:
        found = data[:4].hex() or "nothing"
        raise PlanHeaderError(
            f"not a TensorRT plan: the first 4 bytes are {found}, a plan starts with "
            f"{struct.pack('<I', MAGIC).hex()} (magic 0x{MAGIC:08x})"
        )
    if len(data) < HEADER_BYTES:
        raise PlanHeaderError(
            f"TensorRT plan header too short: {len(data)} bytes, the version is at bytes "
            f"{VERSION_OFFSET}-{HEADER_BYTES - 1} (plans from TensorRT 8.6 on)"
        )
    major, minor, patch, build = data[VERSION_OFFSET:HEADER_BYTES]
    return PlanHeader(major, minor, patch, build)


def read_header(path: Path) -> PlanHeader:
    """The header of the plan file at ``path`` (reads 28 bytes, never the engine)."""
    with open(path, "rb") as f:
        return parse_header(f.read(HEADER_BYTES))


# trtexec prints "&&&& RUNNING TensorRT.trtexec [TensorRT v101300] [b37] # trtexec ..." first
# on every run, --help included. The number is NV_TENSORRT_VERSION: major*10000 + minor*100 +
# patch from TensorRT 10 on, major*1000 + minor*100 + patch before (8601 = 8.6.1).
_BANNER = re.compile(r"TensorRT v(\d{4,6})\b")


def banner_version(text: str) -> str | None:
    """``10.13.0`` from trtexec's banner line, or None when there is none."""
    match = _BANNER.search(text)
    if match is None:
        # A version command that prints the module's version (`tensorrt 10.13.0.35`).
        plain = re.search(r"tensorrt\s+v?(\d+)\.(\d+)\.(\d+)", text, re.IGNORECASE)
        return ".".join(plain.groups()) if plain else None
    number = int(match.group(1))
    if number >= 100000:  # 10.x and later: MMmmpp
        major, rest = divmod(number, 10000)
    else:  # 8.x, 9.x: Mmpp
        major, rest = divmod(number, 1000)
    minor, patch = divmod(rest, 100)
    return f"{major}.{minor}.{patch}"


def same_release(a: str, b: str) -> bool:
    """Equal on major.minor.patch (``10.13.0`` and ``10.13.0.35`` are one release)."""
    return a.split(".")[:3] == b.split(".")[:3]
