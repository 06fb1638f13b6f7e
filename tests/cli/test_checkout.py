"""``rmbuild checkout REF DIR``: an artifact's files in a folder, read-only, never overwriting."""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from artifact_store import Store

if TYPE_CHECKING:
    from conftest import Project


@pytest.fixture
def built(project: Project, cli) -> str:  # noqa: ANN001
    result = cli("compile", str(project.spec), "--tag", "chat-main", "--json")
    assert result.code == 0, result.err
    return result.json()[0]["artifact"]


def _blob(project: Project, key: str, rel: str) -> Path:
    with Store(project.store) as store:
        manifest = store.get_manifest(store.get(key).manifest_digest)
        return store.blob_path(manifest.files[rel].digest)


def test_checkout_lays_out_read_only_hard_links(
    project: Project, cli, built: str, tmp_path: Path
) -> None:  # noqa: ANN001
    out = tmp_path / "serve" / "tiny"
    result = cli("checkout", "chat-main", str(out), "--json")
    assert result.code == 0, result.err
    doc = result.json()
    assert doc["id"] == built and doc["dir"] == str(out)
    assert doc["files"] == doc["linked"] >= 1 and doc["copied"] == 0
    model = out / "model.bin"
    blob = _blob(project, built, "model.bin")
    assert model.read_bytes() == blob.read_bytes()
    assert os.stat(model).st_ino == os.stat(blob).st_ino  # a link: no byte copied
    assert stat.S_IMODE(os.stat(model).st_mode) & 0o222 == 0  # read-only
    assert doc["bytes"] == sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    # The same again is fine (nothing to overwrite); MODEL:TARGET names it too.
    again = cli("checkout", "tiny:fake", str(out))
    assert again.code == 0, again.err
    assert f"tiny:fake {built[:12]} -> {out}" in again.out and "read-only" in again.out


def test_an_empty_folder_is_used_and_a_non_empty_one_refused(
    cli, built: str, tmp_path: Path
) -> None:  # noqa: ANN001
    empty = tmp_path / "empty"
    empty.mkdir()
    assert cli("checkout", built[:10], str(empty)).code == 0
    assert (empty / "model.bin").is_file()
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "notes.txt").write_text("mine")
    refused = cli("checkout", "chat-main", str(busy))
    refused.assert_failure(2)
    assert "destination-exists" in refused.err and "does not overwrite" in refused.err
    assert sorted(p.name for p in busy.iterdir()) == ["notes.txt"]
    assert (busy / "notes.txt").read_text() == "mine"
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    cli("checkout", "chat-main", str(a_file)).assert_failure(2)
    assert a_file.read_text() == "x"


def test_an_unknown_ref_is_not_found_and_leaves_no_folder(cli, built: str, tmp_path: Path) -> None:  # noqa: ANN001
    out = tmp_path / "out"
    cli("checkout", "no-such-alias", str(out)).assert_failure(5)
    assert not out.exists()


def test_a_damaged_artifact_is_refused_not_handed_out(
    project: Project, cli, built: str, tmp_path: Path
) -> None:  # noqa: ANN001
    blob = _blob(project, built, "model.bin")
    blob.chmod(0o644)
    blob.write_bytes(b"flipped")
    out = tmp_path / "out"
    result = cli("checkout", "chat-main", str(out))
    result.assert_failure(6)
    assert "nothing was checked out" in result.err and "model.bin" in result.err
    assert not out.exists()


def test_across_filesystems_the_files_are_read_only_copies(
    project: Project, cli, built: str
) -> None:  # noqa: ANN001
    shm = Path("/dev/shm")
    if not shm.is_dir() or os.stat(shm).st_dev == os.stat(project.store).st_dev:
        pytest.skip("no second filesystem (/dev/shm) to check out to")
    with tempfile.TemporaryDirectory(dir=shm) as other:
        out = Path(other) / "tiny"
        result = cli("checkout", "chat-main", str(out), "--json")
        assert result.code == 0, result.err
        assert result.json()["linked"] == 0 and result.json()["copied"] == result.json()["files"]
        model = out / "model.bin"
        assert model.read_bytes() == _blob(project, built, "model.bin").read_bytes()
        assert stat.S_IMODE(os.stat(model).st_mode) & 0o222 == 0
