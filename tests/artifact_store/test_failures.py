"""Failed builds as data: recorded, listed, never a hit, cleared by a success."""

from __future__ import annotations

from pathlib import Path

from artifact_store import Store

K1 = "f1" * 32
K2 = "f2" * 32
TOOL = "a" * 64


def _fail(store: Store, key: str, log: Path | None = None, **kw: object) -> None:
    args: dict = {
        "model": "bert",
        "target": "cpu",
        "backend": "onnxruntime",
        "profile": "ort-cpu",
        "toolchain": TOOL,
        "message": "ort failed with exit code 3",
        "exit_code": 3,
        "log_path": log,
    }
    assert store.record_failure(key, **{**args, **kw}) is True


def test_a_failure_is_recorded_with_its_log_and_counted(store: Store, tmp_path: Path) -> None:
    log = tmp_path / "build.log"
    log.write_text("fatal: out of memory\n")
    _fail(store, K1, log)
    _fail(store, K1, log, exit_code=137)
    f = store.get_failure(K1)
    assert f is not None
    assert (f.key, f.model, f.target, f.profile, f.toolchain) == (
        K1,
        "bert",
        "cpu",
        "ort-cpu",
        TOOL,
    )
    assert f.exit_code == 137 and f.attempts == 2  # the last failure, and how many there were
    assert f.log_path == str(log) and f.log_digest is not None and len(f.log_digest) == 64
    assert f.to_dict()["failed_at"] == f.failed_at.isoformat()


def test_a_failure_is_never_a_hit(store: Store) -> None:
    _fail(store, K1)
    assert store.get(K1) is None
    assert store.list() == []


def test_a_success_clears_the_failure(store: Store, tmp_path: Path, build) -> None:
    _fail(store, K1)
    _fail(store, K2)
    build(store, tmp_path, K1, {"model.bin": b"ok"})
    assert store.get_failure(K1) is None
    assert [f.key for f in store.list_failures()] == [K2]


def test_list_failures_filters_newest_first(store: Store) -> None:
    _fail(store, K1, target="cpu")
    _fail(store, K2, target="gpu")
    assert [f.key for f in store.list_failures()] == [K2, K1]
    assert [f.key for f in store.list_failures(target="cpu")] == [K1]
    assert [f.key for f in store.list_failures(model="nope")] == []
    assert [f.key for f in store.list_failures(limit=1)] == [K2]
    assert store.clear_failure(K2) is True
    assert [f.key for f in store.list_failures()] == [K1]
