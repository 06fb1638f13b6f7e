"""Plan headers and trtexec banners, read without TensorRT."""

from __future__ import annotations

import struct

import pytest

from rmbuild.backends.tensorrt import planfile


def test_a_real_tensorrt_10_plan_reads_as_the_release_that_built_it(kit) -> None:  # noqa: ANN001
    # NVIDIA's own model-Dim1.plan (see conftest): built by TensorRT 10.0 GA = 10.0.1.6.
    header = planfile.parse_header(kit.REAL_PLAN_10_0 + b"rtrtNGNE")
    assert header.version == "10.0.1" and header.full_version == "10.0.1.6"
    assert kit.REAL_PLAN_10_0[:4] == b"ftrt"  # the tag as it lies on disk


def test_the_version_bytes_are_read_where_the_real_plan_has_them(kit) -> None:  # noqa: ANN001
    header = planfile.parse_header(kit.real_header((10, 13, 0, 35)) + b"engine bytes")
    assert header.version == "10.13.0" and header.full_version == "10.13.0.35"


def test_a_plan_from_before_8_6_is_named_as_such(kit) -> None:  # noqa: ANN001
    with pytest.raises(planfile.PlanHeaderError, match="before TensorRT 8.6.*no version field"):
        planfile.parse_header(kit.REAL_PLAN_8_4)


def test_a_file_without_the_tag_is_no_plan(kit) -> None:  # noqa: ANN001
    data = struct.pack("<I", 0x12345678) + kit.REAL_PLAN_10_0[4:]
    with pytest.raises(planfile.PlanHeaderError, match="not a TensorRT plan.*0x74727466"):
        planfile.parse_header(data)


def test_another_header_layout_is_refused_not_guessed(kit) -> None:  # noqa: ANN001
    # trtexec --getPlanVersionOnly reads the version only where bytes 4-7 are 0.
    data = kit.REAL_PLAN_10_0[:4] + struct.pack("<I", 1) + kit.REAL_PLAN_10_0[8:]
    with pytest.raises(planfile.PlanHeaderError, match="layout 1 is not known"):
        planfile.parse_header(data)


def test_a_header_too_short_for_the_version_says_so(kit) -> None:  # noqa: ANN001
    with pytest.raises(planfile.PlanHeaderError, match="too short.*8.6"):
        planfile.parse_header(kit.REAL_PLAN_10_0[:20])


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
