"""Paths from outside the store: symlinks in a model source and in carried files.

A link that resolves inside its root is followed (stored as its content, a linked folder is
hashed); one that leaves the root, dangles or loops is refused with exit 3 before any tool runs.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from rmbuild.declare.sources import MAX_DEPTH, UnsafePath, containment_root, walk
from rmbuild.errors import ModelSourceError

if TYPE_CHECKING:
    from conftest import Project

EXIT_SPEC = 3
SECRET = b"root:$6$not-really-a-shadow-file:19000:0:99999:7:::\n"

pytestmark = pytest.mark.timeout(60)


def _onnx_project(project: Project) -> Path:
    """The fake profile taking an ONNX folder and carrying its JSON files into the artifact."""
    text = project.fake_profile().replace("input_format: hf", "input_format: onnx")
    project.write_profile("fake-compile", text + "carry:\n  - '*.json'\n")
    project.write_spec(
        project.spec_text(project_flags(project)).replace("format: hf", "format: onnx")
    )
    (project.model / "model.onnx").write_bytes(b"not really onnx")
    return project.model


def project_flags(project: Project) -> dict[str, object]:
    # The fake compiler appends a line to this file each time it runs.
    return {"counter": str(project.root / "runs.txt")}


def _tool_ran(project: Project) -> bool:
    return (project.root / "runs.txt").exists()


def _secret(tmp_path: Path) -> Path:
    path = tmp_path / "outside" / "shadow"
    path.parent.mkdir()
    path.write_bytes(SECRET)
    return path


def _stored_blobs(project: Project) -> list[bytes]:
    objects = project.store / "objects"
    if not objects.is_dir():
        return []
    return [p.read_bytes() for p in objects.rglob("*") if p.is_file()]


def test_carried_file_linking_out_of_the_source_is_refused(
    project: Project,
    cli,  # noqa: ANN001
    tmp_path: Path,
) -> None:
    model = _onnx_project(project)
    (model / "special_tokens_map.json").symlink_to(_secret(tmp_path))
    r = cli("compile", str(project.spec))
    r.assert_failure(EXIT_SPEC)
    assert "error[model-source-missing]" in r.err
    assert f"{project.spec}:3: field 'source.path'" in r.err
    assert "special_tokens_map.json" in r.err and str(tmp_path / "outside" / "shadow") in r.err
    assert "leaves the source folder" in r.err
    assert not _tool_ran(project)
    assert SECRET not in _stored_blobs(project)
    project.assert_empty(cli)


def test_escaping_link_in_an_hf_source_is_refused_before_the_tool_runs(
    project: Project,
    cli,  # noqa: ANN001
    tmp_path: Path,
) -> None:
    # The tool reads an hf source folder itself: nothing hands it the link.
    project.write_spec(project.spec_text(project_flags(project)))
    (project.model / "tokenizer.json").symlink_to(_secret(tmp_path))
    r = cli("compile", str(project.spec))
    r.assert_failure(EXIT_SPEC)
    assert "tokenizer.json" in r.err and "leaves the source folder" in r.err
    assert not _tool_ran(project)
    project.assert_empty(cli)


def test_hidden_escaping_link_is_refused_too(
    project: Project,
    cli,  # noqa: ANN001
    tmp_path: Path,
) -> None:
    # Hidden files are not hashed, but a carry glob ('*.json' matches '.x.json') or a tool
    # could still read them.
    (project.model / ".x.json").symlink_to(_secret(tmp_path))
    r = cli("compile", str(project.spec))
    r.assert_failure(EXIT_SPEC)
    assert ".x.json" in r.err and "leaves the source folder" in r.err


def test_link_inside_the_source_is_stored_as_its_content(
    project: Project,
    cli,  # noqa: ANN001
) -> None:
    model = _onnx_project(project)
    (model / "real").mkdir()
    (model / "real" / "tok.json").write_text('{"tok": 1}', encoding="utf-8")
    (model / "tokenizer.json").symlink_to("real/tok.json")
    r = cli("compile", str(project.spec), "--json")
    assert r.code == 0, r.err
    artifact = r.json()[0]["artifact"]
    from rmbuild.storage.store import open_store

    with open_store() as store:
        tree = store.materialize(artifact)
        carried = tree / "tokenizer.json"
        assert not carried.is_symlink()
        assert carried.read_text(encoding="utf-8") == '{"tok": 1}'


def test_linked_subfolder_inside_the_root_is_hashed(project: Project, cli) -> None:  # noqa: ANN001
    real = project.model / "shards"
    real.mkdir()
    (real / "w.bin").write_bytes(b"one")
    (project.model / "weights").symlink_to("shards", target_is_directory=True)
    files = walk(project.model)
    assert "weights/w.bin" in files and "shards/w.bin" in files

    def key() -> str:
        r = cli("compile", str(project.spec), "--json")
        assert r.code == 0, r.err
        return r.json()[0]["artifact"]

    first = key()
    (real / "w.bin").write_bytes(b"two, longer")  # read by the tool through weights/ too
    assert key() != first


def test_linked_folder_leaving_the_root_is_refused(
    project: Project,
    cli,  # noqa: ANN001
    tmp_path: Path,
) -> None:
    _secret(tmp_path)
    (project.model / "extra").symlink_to(tmp_path / "outside", target_is_directory=True)
    r = cli("compile", str(project.spec))
    r.assert_failure(EXIT_SPEC)
    assert "extra" in r.err and "leaves the source folder" in r.err
    assert str(tmp_path / "outside") in r.err


@pytest.mark.parametrize("kind", ["self", "dir-up", "two-links"])
def test_symlink_loop_is_a_clear_error(
    project: Project,
    cli,  # noqa: ANN001
    kind: str,
) -> None:
    model = project.model
    if kind == "self":
        (model / "loop").symlink_to("loop")
    elif kind == "dir-up":
        (model / "sub").mkdir()
        (model / "sub" / "up").symlink_to("..", target_is_directory=True)
    else:
        (model / "a").mkdir()
        (model / "b").mkdir()
        (model / "a" / "to-b").symlink_to("../b", target_is_directory=True)
        (model / "b" / "to-a").symlink_to("../a", target_is_directory=True)
    r = cli("compile", str(project.spec))
    r.assert_failure(EXIT_SPEC)
    assert "symlink loop" in r.err


def test_dangling_link_is_a_clear_error(project: Project, cli) -> None:  # noqa: ANN001
    (project.model / "tokenizer.json").symlink_to("gone.json")
    r = cli("compile", str(project.spec))
    r.assert_failure(EXIT_SPEC)
    assert "tokenizer.json" in r.err and "gone.json" in r.err and "dangling" in r.err


def test_deep_link_fan_out_is_refused_not_walked(tmp_path: Path) -> None:
    # A chain of folders each linking twice to the next would be 2**n paths; depth stops it.
    root = tmp_path / "m"
    folders = [root / f"d{i}" for i in range(MAX_DEPTH + 2)]
    for folder in folders:
        folder.mkdir(parents=True)
    for here, there in zip(folders, folders[1:], strict=False):
        for name in ("x", "y"):
            (here / name).symlink_to(there, target_is_directory=True)
    with pytest.raises(UnsafePath, match="folders deep"):
        walk(root / "d0", bound=root)


def test_hub_snapshot_links_into_its_own_blobs(tmp_path: Path) -> None:
    # huggingface_hub's cache: snapshots/<rev>/config.json -> ../../blobs/<sha>.
    repo = tmp_path / "hub" / "models--org--tiny"
    (repo / "blobs").mkdir(parents=True)
    (repo / "blobs" / "abc").write_text("{}")
    snap = repo / "snapshots" / "rev1"
    snap.mkdir(parents=True)
    (snap / "config.json").symlink_to("../../blobs/abc")
    assert containment_root(snap) == repo.resolve()
    assert list(walk(snap)) == ["config.json"]
    (snap / "evil.json").symlink_to(_secret(tmp_path))
    with pytest.raises(UnsafePath, match="leaves the source folder"):
        walk(snap)


def test_carry_never_writes_through_a_link_the_tool_left(tmp_path: Path) -> None:
    from rmbuild.declare.sources import carry

    source, out = tmp_path / "in", tmp_path / "out"
    source.mkdir()
    out.mkdir()
    (source / "tokenizer.json").write_text("tok")
    victim = tmp_path / "victim.txt"
    (out / "tokenizer.json").symlink_to(victim)  # dangling: exists() would say False
    carry(["*.json"], source, out)
    assert not victim.exists()


def test_carry_refuses_a_link_out_of_an_input_that_is_not_the_source(tmp_path: Path) -> None:
    from rmbuild.declare.sources import carry

    source, out = tmp_path / "in", tmp_path / "out"
    source.mkdir()
    out.mkdir()
    (source / "special_tokens_map.json").symlink_to(_secret(tmp_path))
    with pytest.raises(ModelSourceError, match="leaves the source folder") as info:
        carry(["*.json"], source, out)
    assert "special_tokens_map.json" in str(info.value)
    assert os.listdir(out) == []
