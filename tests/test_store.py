"""rmbuild's view of artifact_store errors: each becomes a user error with its exit code."""

from __future__ import annotations

import pytest

import artifact_store as st
from rmbuild.errors import (
    EXIT_INCOMPATIBLE,
    EXIT_NOT_FOUND,
    EXIT_STORE,
    EXIT_TOOL,
    EXIT_USAGE,
)
from rmbuild.store import translate


@pytest.mark.parametrize(
    ("error", "code", "says"),
    [
        (st.InvalidAlias("x y", "no spaces"), EXIT_USAGE, "x y"),
        (st.ArtifactNotFound("abcd"), EXIT_NOT_FOUND, "abcd"),
        (st.LockTimeout("k" * 64, "/s/locks/k.lock", 5.0), EXIT_TOOL, "still held"),
        (st.CorruptObject("a" * 64, "digest mismatch"), EXIT_INCOMPATIBLE, "digest mismatch"),
        (st.StoreUnavailable("cannot use /x as a store"), EXIT_STORE, "/x"),
        (st.StoreError("something else"), EXIT_STORE, "something else"),
    ],
)
def test_store_errors_become_user_errors(error: Exception, code: int, says: str) -> None:
    translated = translate(error)
    assert translated is not None and translated.exit_code == code
    assert says in translated.message and translated.hint


def test_other_exceptions_are_not_translated() -> None:
    assert translate(ValueError("a bug")) is None
