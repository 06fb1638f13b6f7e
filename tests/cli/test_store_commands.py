"""`verify`, `gc`, `tag`, `show` and the loader's corruption guard, on the stand-in compiler."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from conftest import Project

EXIT_CORRUPT = 6


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
