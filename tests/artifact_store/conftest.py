from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from artifact_store import Manifest, Store


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store(tmp_path / "store")
    yield s
    s.close()


def _make_tree(root: Path, files: dict[str, bytes]) -> Path:
    """Write ``files`` (relpath -> content) under ``root`` and return ``root``."""
    for rel, data in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
    return root


def _age(path: Path, seconds: float = 3600.0) -> None:
    """Backdate ``path``'s mtime (the stat cache ignores files younger than a few seconds)."""
    t = time.time() - seconds
    os.utime(path, (t, t))


def _build(
    store: Store, tmp_path: Path, key: str, files: dict[str, bytes], **kw: object
) -> Manifest:
    """Put a tree and commit it under ``key``; returns the manifest."""
    src = _make_tree(tmp_path / f"src-{key}", files)
    manifest = store.put_tree(src)
    store.commit(
        key,
        manifest,
        model=str(kw.get("model", "m")),
        target=str(kw.get("target", "cpu")),
        backend=str(kw.get("backend", "onnx")),
        metadata=dict(kw.get("metadata", {})),  # type: ignore[call-overload]
    )
    return manifest


# Helpers are handed out as fixtures: tests/ has no __init__.py, so test modules cannot
# import from conftest.


@pytest.fixture
def make_tree():  # noqa: ANN201
    return _make_tree


@pytest.fixture
def build():  # noqa: ANN201
    return _build


@pytest.fixture
def age():  # noqa: ANN201
    return _age
