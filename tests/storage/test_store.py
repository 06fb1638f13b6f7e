"""rmbuild's view of artifact_store errors: each becomes the rmbuild error of its real class,
never a blanket "store unavailable"."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

import artifact_store as st
from rmbuild.errors import (
    EXIT_DISK_FULL,
    EXIT_INCOMPATIBLE,
    EXIT_INTERNAL,
    EXIT_NOT_FOUND,
    EXIT_STORE,
    EXIT_TOOL,
    EXIT_USAGE,
    DiskFull,
    InternalError,
    StoreCorrupt,
    ToolError,
)
from rmbuild.storage.store import translate


def _record(key: str) -> st.ArtifactRecord:
    now = datetime.now(UTC)
    return st.ArtifactRecord(key, "b" * 64, "m", "t", "onnxruntime", now, now, 1)


@pytest.mark.parametrize(
    ("error", "code", "says"),
    [
        (st.InvalidAlias("x y", "no spaces"), EXIT_USAGE, "x y"),
        (st.ArtifactNotFound("abcd"), EXIT_NOT_FOUND, "abcd"),
        (st.AmbiguousRef("ab", [_record("ab12"), _record("ab34")]), EXIT_NOT_FOUND, "ab"),
        (st.LockTimeout("k" * 64, "/s/locks/k.lock", 5.0), EXIT_TOOL, "still held"),
        (st.CorruptObject("a" * 64, "digest mismatch"), EXIT_INCOMPATIBLE, "digest mismatch"),
        (st.CorruptManifest("a" * 64, "not JSON"), EXIT_INCOMPATIBLE, "not JSON"),
        (st.ArtifactCorrupt("c" * 64, ["file 'x': bad"]), EXIT_INCOMPATIBLE, "cccccccccccc"),
        (st.StoreUnavailable("cannot use /x as a store"), EXIT_STORE, "/x"),
        (st.UnsafeTree("/out", "link", "points outside it"), EXIT_TOOL, "points outside"),
        (st.DiskFull("/s/objects", needed=10), EXIT_DISK_FULL, "/s/objects"),
        (st.InvalidArgument("invalid key '../x'"), EXIT_INTERNAL, "invalid key"),
        (st.DestinationExists("/d exists"), EXIT_USAGE, "/d exists"),  # checkout DIR
        (st.StoreError("something else"), EXIT_INTERNAL, "something else"),
    ],
)
def test_store_errors_become_their_real_class(error: Exception, code: int, says: str) -> None:
    translated = translate(error)
    assert translated is not None and translated.exit_code == code
    assert says in translated.message and translated.hint


def test_each_class_maps_to_the_right_family() -> None:
    assert isinstance(translate(st.UnsafeTree("/o", "l", "p")), ToolError)
    assert isinstance(translate(st.InvalidArgument("bad")), InternalError)
    assert isinstance(translate(st.ArtifactCorrupt("k" * 64, ["p"])), StoreCorrupt)
    full = translate(st.DiskFull("/s/objects", needed=123))
    assert isinstance(full, DiskFull)
    assert full.needed == 123 and full.free is not None and "rmbuild gc" in (full.hint or "")
    assert "bytes needed: 123" in full.context and any("bytes free" in c for c in full.context)


def test_a_tool_output_link_out_of_its_folder_is_a_tool_error(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "leak").symlink_to("/etc/hostname")
    with st.Store(tmp_path / "store") as store, pytest.raises(st.UnsafeTree) as info:
        store.put_tree(out)
    translated = translate(info.value)
    assert translated is not None and translated.exit_code == EXIT_TOOL
    assert "leak" in translated.message and "outside" in translated.message


def test_a_caller_bug_is_an_internal_error_not_store_unavailable(tmp_path: Path) -> None:
    with st.Store(tmp_path / "store") as store, pytest.raises(st.InvalidArgument) as info:
        store.lock("../escape").__enter__()
    translated = translate(info.value)
    assert translated is not None and translated.exit_code == EXIT_INTERNAL
    assert translated.code == "internal-error"


def test_other_exceptions_are_not_translated() -> None:
    assert translate(ValueError("a bug")) is None


def test_model_target_names_the_newest_result_not_the_stage_it_was_built_from(
    tmp_path: Path,
) -> None:
    from rmbuild.errors import ArtifactNotFound as NotFound
    from rmbuild.storage.store import resolve

    src = tmp_path / "src"
    src.mkdir()
    (src / "f").write_bytes(b"x")
    with st.Store(tmp_path / "store") as store:
        manifest = store.put_tree(src)
        up, down = "a" * 64, "b" * 64
        fields = {"model": "tiny", "target": "cpu", "backend": "b"}
        store.commit(down, manifest, metadata={"parents": [up]}, **fields)
        # The export, committed (rebuilt) later, serves tiny:cpu too: it is newer, yet it is
        # not what tiny:cpu names.
        store.commit(up, manifest, metadata={"parents": []}, **fields)
        assert resolve(store, "tiny:cpu").key == down
        with pytest.raises(NotFound, match="no artifact for 'tiny:npu' in this store"):
            resolve(store, "tiny:npu")
