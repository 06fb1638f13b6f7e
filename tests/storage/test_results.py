"""Keys without the bytes: a host holding a final artifact finds it without its upstream stages'
files, and fetches or builds them only when a stage after them must really be built.

The project has two stages: ``fake-compile`` (the "export", hf -> fake-bin) and ``fake-second``
(fake-bin -> fake-bin2), both the stand-in compiler, counted. Its output names its build folder,
so two builds of one key give different bytes (a non-reproducible tool), which the last test
relies on. Remotes are ``file://`` folders.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from conftest import Project

pytest.importorskip("fsspec", reason="remotes need the remote extra")

EXIT_NOT_FOUND = 5


def _runs(counter: Path) -> int:
    return len(counter.read_text().splitlines()) if counter.exists() else 0


def _two_stages(project: Project, counter: Path, level: int = 1) -> None:
    second = (
        project.fake_profile()
        .replace("name: fake-compile", "name: fake-second")
        .replace("input_format: hf", "input_format: fake-bin")
        .replace("output_format: fake-bin", "output_format: fake-bin2\ndepends_on: fake-compile")
    )
    project.write_profile("fake-second", second)
    count = json.dumps(str(counter))
    project.write_spec(
        "name: tiny\nsource: {path: model}\ntargets:\n  fake:\n    profile: fake-second\n"
        f"    flags: {{counter: {count}, level: {level}}}\n"
        f"    stages:\n      fake-compile:\n        flags: {{counter: {count}}}\n"
    )


def _store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str) -> Path:
    root = tmp_path / name
    monkeypatch.setenv("RMBUILD_STORE", str(root))
    return root


def _blobs(root: Path) -> set[str]:
    objects = root / "objects"
    return {f"{p.parent.name}{p.name}" for p in objects.glob("*/*")} if objects.is_dir() else set()


def _upstream_blobs(built_store: Path, key: str) -> set[str]:
    """The export's files and manifest, as the store that built it holds them."""
    from artifact_store import Store

    with Store(built_store) as store:
        record = store.get(key)
        assert record is not None
        files = store.get_manifest(record.manifest_digest).files.values()
        return {record.manifest_digest, *(e.digest for e in files)}


@pytest.fixture
def built(project: Project, cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):  # noqa: ANN001, ANN201
    """A CI host built both stages and pushed them; returns (remote URL, result JSON, counter,
    the upstream stage's blobs)."""
    counter = tmp_path / "runs.txt"
    _two_stages(project, counter)
    remote = (tmp_path / "remote").as_uri()
    ci = _store(tmp_path, monkeypatch, "ci-store")
    r = cli("compile", str(project.spec), "--remote", remote, "--json")
    assert r.code == 0, r.err
    (result,) = r.json()
    assert _runs(counter) == 2
    export = result["stages"][0]["key"]
    return remote, result, counter, _upstream_blobs(ci, export)


def test_a_pulled_final_artifact_is_a_hit_with_no_upstream_file(
    built, project: Project, cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:  # noqa: ANN001
    remote, result, counter, upstream = built
    serving = _store(tmp_path, monkeypatch, "serving-store")
    pulled = cli("pull", "tiny:fake", "--remote", remote)
    assert pulled.code == 0, pulled.err
    held = _blobs(serving)
    assert held and not held & upstream
    for args in ([], ["--cache-policy", "readonly"]):
        r = cli("compile", str(project.spec), *args, "--remote", "none", "--json")
        assert r.code == 0, (args, r.err)
        (again,) = r.json()
        assert again["artifact"] == result["artifact"] and again["hit"], args
        assert [s["key"] for s in again["stages"]] == [s["key"] for s in result["stages"]]
    assert _runs(counter) == 2  # no tool ran
    assert _blobs(serving) == held  # nothing fetched, nothing built


def test_compile_against_the_remote_pulls_only_the_final_artifact(
    built, project: Project, cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:  # noqa: ANN001
    remote, result, counter, upstream = built
    for name, args in (("fresh", []), ("fresh-readonly", ["--cache-policy", "readonly"])):
        store = _store(tmp_path, monkeypatch, name)
        r = cli("compile", str(project.spec), "--remote", remote, *args, "--json")
        assert r.code == 0, (name, r.err)
        assert r.json()[0]["artifact"] == result["artifact"]
        assert _blobs(store) and not _blobs(store) & upstream, name
    assert _runs(counter) == 2


def test_the_plan_skips_the_upstream_stage_of_a_pulled_artifact(
    built, project: Project, cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:  # noqa: ANN001
    remote, result, _, _ = built
    _store(tmp_path, monkeypatch, "serving-store")
    assert cli("pull", "tiny:fake", "--remote", remote).code == 0
    plan = cli("compile", str(project.spec), "--plan", "--json", "--remote", "none")
    assert plan.code == 0, plan.err
    (target,) = plan.json()["targets"]
    assert [(s["local"], s["action"]) for s in target["stages"]] == [
        ("miss", "skip"),
        ("hit", "reuse"),
    ]
    assert target["status"] == "cached"


def test_a_changed_downstream_stage_fetches_its_input_then_builds(
    built, project: Project, cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:  # noqa: ANN001
    """Building the last stage needs the export's files: pulled from the remote, not rebuilt."""
    remote, result, counter, upstream = built
    store = _store(tmp_path, monkeypatch, "serving-store")
    assert cli("pull", "tiny:fake", "--remote", remote).code == 0
    _two_stages(project, counter, level=2)
    r = cli("compile", str(project.spec), "--remote", remote, "--json")
    assert r.code == 0, r.err
    (changed,) = r.json()
    assert changed["stages"][0]["key"] == result["stages"][0]["key"]
    assert [s["hit"] for s in changed["stages"]] == [True, False]
    assert _runs(counter) == 3  # the second stage only
    assert upstream <= _blobs(store)  # the export was pulled for it


def test_an_upstream_rebuilt_with_other_bytes_re_keys_what_follows(
    built, project: Project, cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:  # noqa: ANN001
    """No remote to pull the export from: it is built again, and the stand-in's bytes differ
    from the recorded result, so the last stage's key is computed from the bytes at hand."""
    from artifact_store import Store

    remote, result, counter, upstream = built
    store = _store(tmp_path, monkeypatch, "serving-store")
    assert cli("pull", "tiny:fake", "--remote", remote).code == 0
    _two_stages(project, counter, level=2)
    r = cli("compile", str(project.spec), "--remote", "none", "--json")
    assert r.code == 0, r.err
    (changed,) = r.json()
    assert _runs(counter) == 4  # the export again, and the second stage
    export, last = changed["stages"]
    assert export["key"] == result["stages"][0]["key"] and not export["hit"]
    with Store(store) as s:
        made = s.get(export["key"])
        final = s.get(last["key"])
        assert made is not None and final is not None
        assert made.manifest_digest not in upstream  # other bytes than the CI host's
        # The last key names the input it really had.
        assert final.metadata["action_key"]["inputs"]["model"] == made.manifest_digest
        assert final.metadata["parents"] == [export["key"]]


def test_an_evicted_upstream_stage_is_not_rebuilt_for_a_hit(
    project: Project, tmp_path: Path
) -> None:
    """The result outlives the artifact: gc (or `rm`) took the export, the final still hits."""
    from rmbuild.build import compile_spec
    from rmbuild.storage.store import open_store

    counter = tmp_path / "runs.txt"
    _two_stages(project, counter)
    with open_store() as store:
        (first,) = compile_spec(project.spec, None, store=store)
        export = first.stages[0].key
        store.delete(export)
        (again,) = compile_spec(project.spec, None, store=store)
        assert again.hit and again.artifact.key == first.artifact.key
        assert again.stages[0].record is None  # known by its result only
        assert again.stages[0].manifest_digest == first.stages[0].manifest_digest
    assert _runs(counter) == 2
