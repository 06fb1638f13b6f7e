"""artifact_store.transfer: what a pull says when an object is not what its name promises.

A ``file://`` remote whose objects are damaged by hand: shorter than the manifest says (read
whole, and read as parallel ranges), or the same size with other bytes. Each message names the
object and says what was expected and what arrived.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from artifact_store import Store
from artifact_store.errors import RemoteCorrupt

pytest.importorskip("fsspec", reason="fsspec not installed (extra: remote)")

from artifact_store.remote import Remote  # noqa: E402

pytestmark = pytest.mark.sqlite_only("the index plays no part in a transfer")
SIZE = 100_000


def _pushed(tmp_path: Path, part_size: int) -> tuple[Store, Remote, str, Path]:
    """A store with one artifact pushed to a file:// remote; the model file's digest and
    its object on the remote (made writable, to be damaged)."""
    src = tmp_path / "src"
    src.mkdir()
    (src / "model.bin").write_bytes(os.urandom(SIZE))
    a = Store(tmp_path / "a")
    manifest = a.put_tree(src)
    a.commit("ab12" * 16, manifest, model="tiny", target="cpu", backend="onnxruntime", metadata={})
    remote = Remote(f"file://{tmp_path / 'shared'}", part_size=part_size, jobs=2)
    remote.push(a, ["ab12" * 16])
    a.close()
    digest = manifest.files["model.bin"].digest
    obj = tmp_path / "shared" / "objects" / digest[:2] / digest[2:]
    obj.chmod(0o644)
    return Store(tmp_path / "b"), remote, digest, obj


def _pull_error(store: Store, remote: Remote) -> str:
    with pytest.raises(RemoteCorrupt) as info, store:
        remote.pull(store, "ab12" * 16)
    return str(info.value)


def test_a_short_object_says_the_size_expected_and_the_size_that_arrived(
    tmp_path: Path,
) -> None:
    b, remote, digest, obj = _pushed(tmp_path, part_size=1 << 20)  # fetched whole
    obj.write_bytes(obj.read_bytes()[:-10])
    message = _pull_error(b, remote)
    assert f"object {digest[:12]}: expected {SIZE} bytes, {SIZE - 10} arrived" in message
    assert "hashes to" not in message and "nothing entered the local store" in message


def test_a_short_range_says_where_it_came_back_short(tmp_path: Path) -> None:
    b, remote, digest, obj = _pushed(tmp_path, part_size=16 * 1024)  # fetched as ranges
    obj.write_bytes(obj.read_bytes()[: 3 * 16 * 1024 + 100])
    message = _pull_error(b, remote)
    assert f"object {digest[:12]}: expected {SIZE} bytes, {3 * 16 * 1024 + 100} arrived" in message
    assert f"the range at offset {3 * 16 * 1024} returned 100 of {16 * 1024} bytes" in message
    assert "?" not in message


def test_other_bytes_of_the_same_size_say_both_digests(tmp_path: Path) -> None:
    b, remote, digest, obj = _pushed(tmp_path, part_size=1 << 20)
    bad = bytearray(obj.read_bytes())
    bad[SIZE // 2] ^= 0xFF
    obj.write_bytes(bytes(bad))
    got = hashlib.sha256(bad).hexdigest()
    message = _pull_error(b, remote)
    assert (
        f"object {digest[:12]}: expected sha256 {digest[:12]}…, the {SIZE} bytes that arrived "
        f"hash to {got[:12]}…"
    ) in message
