"""A TensorRT plan's header, read without TensorRT.

``deserialize_cuda_engine`` on a plan from another TensorRT version fails with "engine plan
file is not compatible with this version of TensorRT" or returns None; rmbuild reads the
building version from the plan's first bytes instead and refuses before any load.

The layout is the one NVIDIA's own ``trtexec --getPlanVersionOnly`` reads (``printPlanVersion``
in https://github.com/NVIDIA/TensorRT/blob/main/samples/common/sampleEngines.cpp): the
little-endian uint32 at offset 0 is the plan tag ``0x74727466`` (the bytes ``f t r t``); the
uint32 at offset 4 is a layout number, and for layout 0 (the only one trtexec knows) bytes
24, 25, 26 and 27 hold the building TensorRT's major, minor, patch and build numbers, one
unsigned byte each. Any other layout number is refused here as trtexec refuses it ("Serialization
version is not supported"), rather than guessed.

Checked against a real plan: ``cookbook/05-Plugin/BasicExample-V2-deprecated/model-Dim1.plan``
in https://github.com/NVIDIA/trt-samples-for-hackathon-cn (commit 3cd77c57e34f, May 2024, when
that cookbook moved to TensorRT 10.0 GA) starts ``66 74 72 74 | 00 00 00 00 | 01 00 00 00 | 00
00 00 00 | <uint64 file size> | 0a 00 01 06``: tag, layout 0, version 10.0.1.6.
Plans from before TensorRT 8.6 have no such header: the same repository's 2022 plan
``cookbook/old-cookbook/TRT-DynamicShape/02-int8/engine-int8-3-2.trt`` starts with ``p t r t``
(the tag a 10.0 plan carries further in, at offset 56), and no version field rmbuild could read.
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass
from pathlib import Path

MAGIC = 0x74727466
# The tag of plans from before TensorRT 8.6 (``p t r t``), which carry no version field.
OLD_MAGIC = 0x74727470
LAYOUT_OFFSET = 4
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
    tag = struct.unpack_from("<I", data, 0)[0] if len(data) >= 4 else None
    if tag == OLD_MAGIC:
        raise PlanHeaderError(
            "a TensorRT plan from before TensorRT 8.6 (its first bytes are 'ptrt'): such plans "
            "carry no version field to check"
        )
    if tag != MAGIC:
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
    layout = struct.unpack_from("<I", data, LAYOUT_OFFSET)[0]
    if layout != 0:
        # trtexec --getPlanVersionOnly refuses these too: the version may lie elsewhere.
        raise PlanHeaderError(
            f"TensorRT plan header layout {layout} is not known (bytes 4-7; layout 0 keeps the "
            f"version at bytes {VERSION_OFFSET}-{HEADER_BYTES - 1}): a TensorRT newer than "
            "this rmbuild knows?"
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
