"""Plan headers and trtexec banners, read without TensorRT (issue 8)."""

from __future__ import annotations

import struct

import pytest

from rmbuild.backends.tensorrt import planfile


def _header(version: tuple[int, int, int, int], magic: int = planfile.MAGIC) -> bytes:
    data = bytearray(28)
    struct.pack_into("<I", data, 0, magic)
    data[24:28] = bytes(version)
    return bytes(data)


def test_the_version_is_read_from_bytes_24_to_27() -> None:
    header = planfile.parse_header(_header((10, 13, 0, 35)) + b"engine bytes")
    assert header.version == "10.13.0" and header.full_version == "10.13.0.35"
    assert _header((1, 2, 3, 4))[:4] == b"ftrt"  # the magic as it lies on disk


def test_a_file_without_the_magic_is_no_plan() -> None:
    with pytest.raises(planfile.PlanHeaderError, match="not a TensorRT plan.*0x74727466"):
        planfile.parse_header(_header((10, 13, 0, 35), magic=0x12345678))


def test_a_header_too_short_for_the_version_says_so() -> None:
    with pytest.raises(planfile.PlanHeaderError, match="too short.*8.6"):
        planfile.parse_header(_header((10, 0, 0, 0))[:20])


@pytest.mark.parametrize(
    ("banner", "version"),
    [
        ("&&&& RUNNING TensorRT.trtexec [TensorRT v101300] [b35] # trtexec --help", "10.13.0"),
        ("&&&& RUNNING TensorRT.trtexec [TensorRT v110400] [b106] # trtexec", "11.4.0"),
        ("&&&& RUNNING TensorRT.trtexec [TensorRT v8601] # trtexec --help", "8.6.1"),
        ("usage: something else", None),
    ],
)
def test_the_trtexec_banner_names_the_version(banner: str, version: str | None) -> None:
    assert planfile.banner_version(banner) == version


def test_same_release_ignores_the_build_number() -> None:
    assert planfile.same_release("10.13.0", "10.13.0.35")
    assert not planfile.same_release("10.13.0", "10.13.1.1")
