from __future__ import annotations

import hashlib
import io
from pathlib import Path

from artifact_store import hashing


def test_hash_path_matches_hashlib(tmp_path: Path) -> None:
    data = bytes(range(256)) * 40_000  # > CHUNK_SIZE, so several reads and a partial one
    p = tmp_path / "f"
    p.write_bytes(data)
    assert hashing.hash_path(p) == hashlib.sha256(data).hexdigest()


def test_hash_fileobj_copies_while_hashing() -> None:
    data = b"abc" * 1_000_000
    out = io.BytesIO()
    digest, n = hashing.hash_fileobj(io.BytesIO(data), out)
    assert (digest, n) == (hashlib.sha256(data).hexdigest(), len(data))
    assert out.getvalue() == data


def test_is_digest() -> None:
    assert hashing.is_digest("a" * 64)
    assert not hashing.is_digest("A" * 64)
    assert not hashing.is_digest("a" * 63)
    assert not hashing.is_digest("g" * 64)
