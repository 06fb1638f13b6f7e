"""The ONNX Runtime session's thread count: the profile's, else a server's, else ORT's own."""

from __future__ import annotations

import pytest

pytest.importorskip("numpy")

from rmbuild.backends.onnxruntime.runtime import session_threads  # noqa: E402


def test_the_profiles_count_wins_over_the_servers() -> None:
    assert session_threads({"intra_op_threads": 4, "serve_threads": 1}) == 4


def test_a_server_sets_the_count_where_the_profile_leaves_it_to_the_runtime() -> None:
    assert session_threads({"intra_op_threads": 0, "serve_threads": 1}) == 1


def test_without_either_ort_chooses() -> None:
    assert session_threads({}) == 0
