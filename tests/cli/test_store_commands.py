"""`verify`, `gc`, `tag`, `show` and the loader's corruption guard, on the stand-in compiler."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from conftest import Project

EXIT_CORRUPT = 6
EXIT_DISK_FULL = 9


def _built(project: Project, cli) -> str:  # noqa: ANN001
    r = cli("compile", str(project.spec), "--json")
    assert r.code == 0, r.err
    return r.json()[0]["artifact"]


def _corrupt_blob(store: Path, artifact: str, cli, *, truncate: bool) -> Path:  # noqa: ANN001
    info = cli("show", artifact, "--json").json()
    digest = info["files"]["model.bin"]["digest"]
    blob = store / "objects" / digest[:2] / digest[2:]
    os.chmod(blob, 0o644)
    data = blob.read_bytes()
    blob.write_bytes(data[: len(data) // 2] if truncate else bytes(reversed(data)))
    return blob


def test_verify_finds_a_corrupted_blob(project: Project, cli) -> None:  # noqa: ANN001
    artifact = _built(project, cli)
    ok = cli("verify", "--json")
    assert ok.code == 0 and ok.json() == {"checked": 1, "corrupt": {}}
    _corrupt_blob(project.store, artifact, cli, truncate=False)
    bad = cli("verify", artifact[:8])
    bad.assert_failure(EXIT_CORRUPT)
    assert "CORRUPT" in bad.out and "model.bin" in bad.out
    assert "1 of 1 artifacts are corrupt" in bad.err


def test_run_refuses_a_truncated_file_before_any_backend_loads_it(project: Project, cli) -> None:  # noqa: ANN001
    artifact = _built(project, cli)
    _corrupt_blob(project.store, artifact, cli, truncate=True)
    r = cli("run", "--artifact", artifact[:10])
    r.assert_failure(EXIT_CORRUPT)
    assert "model.bin" in r.err and "the manifest says" in r.err


def test_a_runtime_that_refuses_intact_files_is_exit_6_not_an_internal_error(
    project: Project,
    cli,  # noqa: ANN001
) -> None:
    # The stand-in compiler's model.bin is no ONNX graph: its bytes match the manifest, but ONNX
    # Runtime cannot parse them. That is an artifact that cannot run here, named with the
    # runtime's own words, never "internal error".
    pytest.importorskip("onnxruntime")
    artifact = _built(project, cli)
    r = cli("run", "--artifact", artifact[:10], "-n", "1")
    r.assert_failure(EXIT_CORRUPT)
    assert "artifact-unloadable" in r.err and artifact[:12] in r.err
    assert "onnxruntime runtime could not load" in r.err and "--rebuild" in r.err


def test_gc_dry_run_then_collect(project: Project, cli) -> None:  # noqa: ANN001
    artifact = _built(project, cli)
    stray = project.store / "objects" / "ab" / ("c" * 62)
    stray.parent.mkdir(parents=True, exist_ok=True)
    stray.write_bytes(b"unreferenced")
    old = 1_000_000_000
    os.utime(stray, (old, old))  # older than gc's grace period for in-flight builds
    dry = cli("gc", "--dry-run", "--json")
    assert dry.code == 0, dry.err
    assert stray.exists()
    done = cli("gc")
    assert done.code == 0, done.err
    assert not stray.exists()
    assert cli("verify", artifact).code == 0  # referenced blobs are kept


def test_tag_retag_and_untag(project: Project, cli) -> None:  # noqa: ANN001
    artifact = _built(project, cli)
    assert cli("tag", artifact[:6], "chat-main-cpu").code == 0
    shown = cli("show", "chat-main-cpu", "--json").json()
    assert shown["id"] == artifact and shown["aliases"] == ["chat-main-cpu"]
    human = cli("show", "chat-main-cpu")
    assert human.code == 0 and "chat-main-cpu" in human.out and "model.bin" in human.out
    bad = cli("tag", artifact, "deadbeef")  # all-hex names would shadow id prefixes
    assert bad.code != 0 and "Traceback" not in bad.err
    assert cli("tag", "-d", "chat-main-cpu").code == 0
    gone = cli("show", "chat-main-cpu")
    assert gone.code == 5


def test_an_artifact_whose_blobs_were_lost_is_rebuilt_not_served(project: Project, cli) -> None:  # noqa: ANN001
    counter = project.root / "runs.txt"
    project.set_flags(counter=str(counter))
    artifact = _built(project, cli)
    info = cli("show", artifact, "--json").json()
    blob = project.store / "objects" / info["manifest"][:2] / info["manifest"][2:]
    blob.unlink()
    again = cli("compile", str(project.spec), "--json")
    assert again.code == 0, again.err
    assert again.json()[0]["artifact"] == artifact and again.json()[0]["hit"] is False
    assert len(counter.read_text().splitlines()) == 2
    assert cli("verify", artifact).code == 0
    assert len(cli("ls", "--json").json()) == 1


# ---- A corrupt artifact is never served ------------------------------------------


def _runs(counter: Path) -> int:
    return len(counter.read_text().splitlines()) if counter.exists() else 0


def _blob_of(store: Path, artifact: str, cli, name: str = "model.bin") -> Path:  # noqa: ANN001
    digest = cli("show", artifact, "--json").json()["files"][name]["digest"]
    return store / "objects" / digest[:2] / digest[2:]


def _flip_byte(blob: Path, *, keep_mtime: bool = False) -> None:
    """Flip one byte in place: same inode and size; the mtime moves unless put back."""
    st = blob.stat()
    os.chmod(blob, 0o644)
    with open(blob, "r+b") as f:
        first = f.read(1)
        f.seek(0)
        f.write(bytes([first[0] ^ 0xFF]))
    os.chmod(blob, 0o444)
    if keep_mtime:
        os.utime(blob, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert blob.stat().st_ino == st.st_ino and blob.stat().st_size == st.st_size


def test_a_flipped_byte_is_rebuilt_on_compile_not_served(project: Project, cli) -> None:  # noqa: ANN001
    counter = project.root / "runs.txt"
    project.set_flags(counter=str(counter))
    artifact = _built(project, cli)
    _flip_byte(_blob_of(project.store, artifact, cli))
    again = cli("compile", str(project.spec))
    assert again.code == 0, again.err
    assert "corrupt" in again.err and "model.bin" in again.err  # says why it rebuilds
    assert "built" in again.out and "cached" not in again.out
    assert _runs(counter) == 2
    assert cli("verify", artifact).code == 0  # the rebuilt artifact is whole
    assert list((project.store / "quarantine").iterdir())  # the damaged blob, kept aside
    assert cli("compile", str(project.spec)).out.count("cached, no tool ran") == 1


def test_run_refuses_a_flipped_byte_with_exit_6(project: Project, cli) -> None:  # noqa: ANN001
    artifact = _built(project, cli)
    _flip_byte(_blob_of(project.store, artifact, cli))
    r = cli("run", "--artifact", artifact[:10], "-n", "1")
    r.assert_failure(EXIT_CORRUPT)
    assert r.out == ""  # nothing printed from the damaged file
    assert artifact in r.err and "model.bin" in r.err
    assert f"rmbuild compile {project.spec} --target fake" in r.err
    # The hint works: plain compile rebuilds it, and run gets past the integrity check.
    assert cli("compile", str(project.spec)).code == 0
    assert "corrupt" not in cli("run", "--artifact", artifact[:10], "-n", "1").err


def test_a_rewrite_with_its_mtime_put_back_needs_verify(project: Project, cli) -> None:  # noqa: ANN001
    """The documented limit: the cheap check sees inode, mtime and size, not content."""
    counter = project.root / "runs.txt"
    project.set_flags(counter=str(counter))
    artifact = _built(project, cli)
    _flip_byte(_blob_of(project.store, artifact, cli), keep_mtime=True)
    hit = cli("compile", str(project.spec))
    assert "cached, no tool ran" in hit.out and _runs(counter) == 1  # not seen cheaply
    full = cli("run", "--artifact", artifact, "--verify", "-n", "1")
    full.assert_failure(EXIT_CORRUPT)
    assert "model.bin" in full.err and "does not match" in full.err
    # run --verify quarantined it: the next compile rebuilds.
    assert "built" in cli("compile", str(project.spec)).out and _runs(counter) == 2
    assert cli("verify").code == 0


def test_verify_repair_then_compile_rebuilds(project: Project, cli) -> None:  # noqa: ANN001
    counter = project.root / "runs.txt"
    project.set_flags(counter=str(counter))
    artifact = _built(project, cli)
    _flip_byte(_blob_of(project.store, artifact, cli), keep_mtime=True)
    plain = cli("verify")
    plain.assert_failure(EXIT_CORRUPT)
    assert "--repair" in plain.err
    assert not (project.store / "quarantine").exists()  # plain verify writes nothing
    repaired = cli("verify", "--repair", "--json")
    assert repaired.code == EXIT_CORRUPT and repaired.json()["quarantined"] is True
    assert len(list((project.store / "quarantine").iterdir())) == 1
    assert [a["id"] for a in cli("ls", "--json").json()] == [artifact]
    again = cli("compile", str(project.spec))
    assert again.code == 0 and "built" in again.out and _runs(counter) == 2
    assert cli("verify", artifact).code == 0


def test_compile_rebuild_runs_the_tool_again_and_replaces_the_blobs(project: Project, cli) -> None:  # noqa: ANN001
    counter = project.root / "runs.txt"
    project.set_flags(counter=str(counter))
    artifact = _built(project, cli)
    blob = _blob_of(project.store, artifact, cli)
    _flip_byte(blob, keep_mtime=True)  # invisible to the cheap check
    forced = cli("compile", str(project.spec), "--rebuild", "--json")
    assert forced.code == 0, forced.err
    (result,) = forced.json()
    assert result["artifact"] == artifact and result["hit"] is False
    assert _runs(counter) == 2
    assert cli("verify", artifact).code == 0  # fresh bytes replaced the damaged copy
    assert cli("compile", str(project.spec), "--json").json()[0]["hit"] is True


# ---- A full disk -----------------------------------------------------------------


def test_read_commands_work_and_writes_say_disk_full_on_a_full_disk(
    project: Project,
    cli,  # noqa: ANN001
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(  # noqa: S603 - fixed argv, no shell
        ["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(disk)],  # noqa: S607
        capture_output=True,
        text=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {mounted.stderr.strip()}")
    try:
        project.store = disk / "store"
        monkeypatch.setenv("RMBUILD_STORE", str(project.store))
        artifact = _built(project, cli)
        # Fill the disk to the last byte; unbuffered, so closing has nothing left to write.
        with open(disk / "filler", "wb", buffering=0) as f:
            with pytest.raises(OSError, match="No space left"):
                while True:
                    f.write(b"\0" * 65536)
        assert [a["id"] for a in cli("ls", "--json").json()] == [artifact]
        assert cli("show", artifact[:8], "--json").code == 0
        assert cli("verify").code == 0
        hit = cli("compile", str(project.spec))
        assert hit.code == 0 and "cached, no tool ran" in hit.out, hit.err
        _flip_byte(_blob_of(project.store, artifact, cli))
        refused = cli("run", "--artifact", artifact, "-n", "1")
        refused.assert_failure(EXIT_CORRUPT)  # the read path ran: a damaged blob, not "disk"
        full = cli("tag", artifact, "main")  # an index write
        full.assert_failure(EXIT_DISK_FULL)
        assert "no space left" in full.err and "bytes free: 0" in full.err
        assert "rmbuild gc" in full.err
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)  # noqa: S603, S607
