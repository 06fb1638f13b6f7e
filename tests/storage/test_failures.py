"""Failure records (rmbuild/storage/failures.py): what is recorded comes from the error's fields."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

from rmbuild.errors import ToolError, ToolStopped
from rmbuild.keys import ActionKey
from rmbuild.storage import failures


class _Store:
    def __init__(self) -> None:
        self.recorded: list[dict[str, Any]] = []

    def record_failure(self, key: str, **fields: Any) -> None:
        self.recorded.append({"key": key, **fields})


def _record(exc: ToolError, tmp_path: Path) -> list[dict[str, Any]]:
    store = _Store()
    spec = SimpleNamespace(spec=SimpleNamespace(name="tiny"))
    stage = SimpleNamespace(profile=SimpleNamespace(backend="onnxruntime", name="fake-compile"))
    key = ActionKey(
        inputs={},
        stage="compile",
        backend="onnxruntime",
        profile="fake-compile",
        flags={},
        argv=[],
        configs={},
        tool={"name": "fake"},
        toolchain={"name": "fake"},
        fingerprint={},
    )
    failures.record(store, spec, "fake", stage, key, "k" * 64, exc, tmp_path / "none.log")  # type: ignore[arg-type]
    return store.recorded


def test_the_tools_exit_status_is_recorded_from_the_error(tmp_path: Path) -> None:
    exc = ToolError("fake failed with exit code 3", tool="fake", returncode=3)
    (row,) = _record(exc, tmp_path)
    assert row["exit_code"] == 3 and row["message"] == exc.message and row["log_path"] is None


def test_a_tool_stopped_by_rmbuild_is_no_failure_of_the_key(tmp_path: Path) -> None:
    # A SIGTERM or Ctrl-C that reached the supervisor cancels the build; the key did not fail.
    assert _record(ToolStopped("fake was stopped: ...", tool="fake"), tmp_path) == []


def test_a_failure_without_an_exit_status_records_none(tmp_path: Path) -> None:
    (row,) = _record(ToolError("fake was killed by SIGSEGV", tool="fake"), tmp_path)
    assert row["exit_code"] is None
