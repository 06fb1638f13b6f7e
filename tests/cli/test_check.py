"""``rmbuild check <id>``: a graded verdict for this host from the metadata alone."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from pathlib import Path

import pytest

from artifact_store import ArtifactRecord
from rmbuild.backends.base import Availability, BackendPlugin
from rmbuild.planning.why import grade_artifact


def _built(cli, project) -> str:
    result = cli("compile", str(project.spec), "--json")
    assert result.code == 0, result.err
    return result.json()[0]["artifact"]


def _record(backend: str = "onnxruntime", **metadata: object) -> ArtifactRecord:
    now = datetime.now(UTC)
    return ArtifactRecord(
        key="ab" * 32,
        manifest_digest="cd" * 32,
        model="m",
        target="t",
        backend=backend,
        created_at=now,
        last_used_at=now,
        size=1,
        metadata=dict(metadata),
    )


class _Stub(BackendPlugin):
    name = "stub"

    def __init__(self, versions: dict[str, str], ok: bool = True) -> None:
        self.versions, self.ok = versions, ok

    def availability(self) -> Availability:
        return Availability(ok=self.ok, reason="stub runtime missing", versions=self.versions)


def test_optimal_without_reading_blobs(cli, project, store_dir: Path) -> None:
    pytest.importorskip("onnxruntime", reason="the fake artifact is an onnxruntime one")
    key = _built(cli, project)
    # No blob is read: with every object gone the verdict still comes from the metadata.
    shutil.rmtree(store_dir / "objects")
    result = cli("check", key[:12])
    assert result.code == 0, result.err
    assert "optimal" in result.out
    data = cli("check", key, "--json").json()
    assert data["verdict"] == "optimal" and data["artifact"] == key


def test_corrupt_artifact_is_unsupported_exit_6(cli, project, store_dir: Path) -> None:
    from artifact_store import Store

    key = _built(cli, project)
    with Store(store_dir) as store:
        store.mark_corrupt({key: "file 'model.bin': truncated"})
    result = cli("check", key)
    result.assert_failure(6)
    assert "unsupported here" in result.out
    assert "the stored copy is corrupt: file 'model.bin': truncated" in result.out


def test_unknown_artifact_exit_5(cli, store_dir: Path) -> None:
    cli("check", "deadbeef").assert_failure(5)


def test_newer_runtime_here_means_rebuild_would_be_better(monkeypatch) -> None:
    import rmbuild.plugins

    monkeypatch.setattr(
        rmbuild.plugins, "get_backend", lambda name: _Stub({"onnxruntime": "1.33.0"})
    )
    record = _record(toolchain={"packages": {"onnxruntime": "1.32.0"}})
    graded = grade_artifact(record)
    assert graded["verdict"] == "rebuild"
    assert graded["reasons"] == ["built with onnxruntime 1.32.0; this host has 1.33.0"]


def test_backend_missing_here_is_unsupported(monkeypatch) -> None:
    import rmbuild.plugins

    monkeypatch.setattr(rmbuild.plugins, "get_backend", lambda name: _Stub({}, ok=False))
    graded = grade_artifact(_record())
    assert graded["verdict"] == "unsupported"
    assert graded["reasons"] == ["backend onnxruntime: stub runtime missing"]


def test_a_backend_grade_hook_decides(monkeypatch) -> None:
    import rmbuild.plugins

    class Graded(_Stub):
        def grade(self, metadata: dict) -> tuple[str, str] | None:
            return ("rebuild", "leaves avx512 unused")

    monkeypatch.setattr(rmbuild.plugins, "get_backend", lambda name: Graded({}))
    graded = grade_artifact(_record())
    assert (graded["verdict"], graded["reasons"]) == ("rebuild", ["leaves avx512 unused"])
    assert BackendPlugin().grade({}) is None  # the default: no opinion
