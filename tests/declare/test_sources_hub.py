"""Hub sources: `source: {hub: org/name, revision: <commit>}`, read offline from a hub cache made
here in huggingface_hub's own layout (models--org--name/{blobs,snapshots/<sha>,refs/main}).

The stand-in compiler builds them (tests/conftest.py), so each build takes milliseconds.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from rmbuild.declare.sources import ALLOW_UNPINNED_ENV

if TYPE_CHECKING:
    from conftest import Project

EXIT_SPEC = 3
COMMIT = "0d1c2b3a4f5e6d7c8b9a0f1e2d3c4b5a69788796"
MOVED = "ffeeddccbbaa99887766554433221100ffeeddcc"


def _git_blob_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()  # noqa: S324 - git's own


def add_snapshot(cache: Path, repo: str, commit: str, files: dict[str, bytes]) -> Path:
    """One commit of ``repo`` as huggingface_hub lays it out: blobs named by the LFS sha256
    (``*.bin``) or the git blob sha1 (small files), snapshot links into them, refs/main."""
    folder = cache / ("models--" + repo.replace("/", "--"))
    (folder / "blobs").mkdir(parents=True, exist_ok=True)
    snapshot = folder / "snapshots" / commit
    snapshot.mkdir(parents=True)
    for rel, data in files.items():
        lfs = rel.endswith(".bin")
        name = hashlib.sha256(data).hexdigest() if lfs else _git_blob_sha1(data)
        (folder / "blobs" / name).write_bytes(data)
        link = snapshot / rel
        link.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(os.path.relpath(folder / "blobs" / name, link.parent), link)
    (folder / "refs").mkdir(exist_ok=True)
    (folder / "refs" / "main").write_text(commit)
    return snapshot


def hub_spec(revision: str | None = COMMIT, repo: str = "acme/tiny") -> str:
    lines = ["name: tiny", "source:", f"  hub: {repo}"]
    if revision is not None:
        lines.append(f"  revision: {revision}")
    lines += ["  format: hf", "targets:", "  fake:", "    profile: fake-compile"]
    return "\n".join(lines) + "\n"


@pytest.fixture
def hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, project: Project) -> Path:
    """A hub cache holding acme/tiny at COMMIT with the project's own model files."""
    cache = tmp_path / "hf-cache"
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    # Restored (removed) at teardown: an in-process --allow-unpinned sets it.
    monkeypatch.setenv(ALLOW_UNPINNED_ENV, "0")
    files = {p.name: p.read_bytes() for p in project.model.iterdir()}
    add_snapshot(cache, "acme/tiny", COMMIT, files)
    return cache


def _compile(cli, project: Project, *extra: str):  # noqa: ANN001, ANN202
    return cli("compile", str(project.spec), "--target", "fake", "--json", *extra)


def test_a_pinned_hub_source_builds_offline_with_the_key_of_the_same_files(
    project: Project, cli, hub: Path
) -> None:  # noqa: ANN001
    from_folder = _compile(cli, project)
    assert from_folder.code == 0, from_folder.err
    project.write_spec(hub_spec())
    from_hub = _compile(cli, project)
    assert from_hub.code == 0, from_hub.err
    # Keyed by content (the hub's digests): the same files are the same key, a cache hit.
    assert from_hub.json()[0]["artifact"] == from_folder.json()[0]["artifact"]
    assert from_hub.json()[0]["hit"] is True


def test_lfs_files_are_keyed_by_the_digest_the_cache_names_them_by_not_read_again(
    project: Project, cli, hub: Path, monkeypatch: pytest.MonkeyPatch
) -> None:  # noqa: ANN001
    from artifact_store import hashing

    hashed: list[str] = []
    real = hashing.hash_path

    def spy(path):  # noqa: ANN001, ANN202
        hashed.append(os.path.realpath(path))
        return real(path)

    monkeypatch.setattr(hashing, "hash_path", spy)
    project.write_spec(hub_spec())
    built = _compile(cli, project)
    assert built.code == 0, built.err
    blobs = hub / "models--acme--tiny" / "blobs"
    weights = hashlib.sha256((project.model / "weights.bin").read_bytes()).hexdigest()
    assert str(blobs / weights) not in hashed  # the LFS blob: its name is its digest
    config = _git_blob_sha1((project.model / "config.json").read_bytes())
    assert str(blobs / config) in hashed  # a git file's blob is named by its sha1: hashed


def test_the_provenance_records_the_repo_commit_and_file_digests(
    project: Project, cli, hub: Path
) -> None:  # noqa: ANN001
    project.write_spec(hub_spec())
    built = _compile(cli, project)
    assert built.code == 0, built.err
    artifact = built.json()[0]["artifact"]
    statement = json.loads(cli("show", artifact, "--provenance").out)
    definition = statement["predicate"]["buildDefinition"]
    assert definition["externalParameters"]["source"] == {
        "format": "hf",
        "hub": "acme/tiny",
        "revision": COMMIT,
    }
    deps = {d["name"]: d for d in definition["resolvedDependencies"]}
    assert deps["hub:acme/tiny"]["digest"] == {"gitCommit": COMMIT}
    assert deps["hub:acme/tiny"]["uri"] == "https://huggingface.co/acme/tiny"
    weights = deps["source/weights.bin"]
    assert weights["uri"] == f"https://huggingface.co/acme/tiny/resolve/{COMMIT}/weights.bin"
    data = (project.model / "weights.bin").read_bytes()
    assert weights["digest"] == {"sha256": hashlib.sha256(data).hexdigest()}


def test_a_branch_is_refused_naming_the_line_unless_allow_unpinned(
    project: Project, cli, hub: Path
) -> None:  # noqa: ANN001
    project.write_spec(hub_spec("main"))
    refused = _compile(cli, project)
    refused.assert_failure(EXIT_SPEC)
    assert "model.yaml:4: field 'source.revision'" in refused.err
    assert "moving ref" in refused.err and "--allow-unpinned" in refused.err
    allowed = _compile(cli, project, "--allow-unpinned")
    assert allowed.code == 0, allowed.err
    artifact = allowed.json()[0]["artifact"]
    statement = json.loads(cli("show", artifact, "--provenance").out)
    deps = {d["name"]: d for d in statement["predicate"]["buildDefinition"]["resolvedDependencies"]}
    assert deps["hub:acme/tiny"]["digest"] == {"gitCommit": COMMIT}  # what refs/main named
    assert deps["hub:acme/tiny"]["annotations"] == {"revision": "main", "pinned": False}


def test_an_unpinned_build_never_takes_the_fast_path(
    project: Project, cli, hub: Path, monkeypatch: pytest.MonkeyPatch
) -> None:  # noqa: ANN001
    """Built once with --allow-unpinned, the same model.yaml is still refused without it (a
    plan-cache hit would skip the check), and follows the branch when it moves."""
    project.write_spec(hub_spec("main"))
    first = _compile(cli, project, "--allow-unpinned")
    assert first.code == 0, first.err
    monkeypatch.setenv(ALLOW_UNPINNED_ENV, "0")
    _compile(cli, project).assert_failure(EXIT_SPEC)
    changed = {p.name: p.read_bytes() + b"!" for p in project.model.iterdir()}
    add_snapshot(hub, "acme/tiny", MOVED, changed)  # main moves to a new commit
    moved = _compile(cli, project, "--allow-unpinned")
    assert moved.code == 0, moved.err
    assert moved.json()[0]["artifact"] != first.json()[0]["artifact"]


def test_a_commit_missing_from_the_cache_offline_is_exit_3(
    project: Project, cli, hub: Path
) -> None:  # noqa: ANN001
    project.write_spec(hub_spec(MOVED))
    refused = _compile(cli, project)
    refused.assert_failure(EXIT_SPEC)
    assert "is not in the hub cache" in refused.err and "HF_HUB_OFFLINE" in refused.err
    assert "field 'source.hub'" in refused.err


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("  path: model\n  hub: acme/tiny\n", "exactly one of path"),
        ("  path: model\n  revision: " + COMMIT + "\n", "revision is for a hub source"),
        ("  hub: not a repo\n", "source.hub"),
    ],
)
def test_a_malformed_source_is_exit_3(
    project: Project, cli, hub: Path, source: str, message: str
) -> None:  # noqa: ANN001
    project.write_spec(
        "name: tiny\nsource:\n" + source + "targets:\n  fake:\n    profile: fake-compile\n"
    )
    refused = _compile(cli, project)
    refused.assert_failure(EXIT_SPEC)
    assert message in refused.err and "model.yaml" in refused.err
