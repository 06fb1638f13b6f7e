"""``compile --plan [--json]``: keys, hit/miss, blockers; nothing runs; the schema."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from rmbuild.planning.plan import schema


def _validate(data: object) -> None:
    jsonschema = pytest.importorskip("jsonschema", reason="jsonschema validates the plan JSON")
    jsonschema.validate(data, schema())


def _plan(cli, project, *extra: str) -> dict:
    result = cli("compile", str(project.spec), "--plan", "--json", *extra)
    assert result.code == 0, result.err
    data = result.json()
    _validate(data)
    return data


def test_schema_ships_in_the_package() -> None:
    data = schema()
    assert data["properties"]["schema_version"] == {"const": 2}
    assert "stage" in data["$defs"]


def test_plan_runs_nothing_and_reports_a_miss_then_a_hit(cli, project, tmp_path: Path) -> None:
    counter = tmp_path / "count.txt"
    project.set_flags(counter=str(counter))
    data = _plan(cli, project)
    assert not counter.exists(), "--plan ran the compiler"
    (target,) = data["targets"]
    (stage,) = target["stages"]
    assert target["status"] == "build"
    assert stage["local"] == "miss" and stage["action"] == "build"
    assert stage["remote"] == "not configured" and data["remote"] == "not configured"
    assert len(stage["key"]) == 64
    assert "nothing stored yet for tiny:fake" in stage["reason"]
    assert cli("ls", "--json").json() == []

    built = cli("compile", str(project.spec), "--json")
    assert built.code == 0, built.err
    data = _plan(cli, project)
    (stage,) = data["targets"][0]["stages"]
    assert data["targets"][0]["status"] == "cached"
    assert (stage["local"], stage["action"]) == ("hit", "reuse")
    assert stage["key"] == built.json()[0]["artifact"]
    assert counter.read_text().count("\n") == 1


def test_plan_text(cli, project) -> None:
    result = cli("compile", str(project.spec), "--plan")
    assert result.code == 0, result.err
    assert "fake (fake-compile, any): build" in result.out
    assert "why: nothing stored yet" in result.out


def test_plan_corrupt_artifact_is_a_rebuild(cli, project, store_dir: Path) -> None:
    from artifact_store import Store

    assert cli("compile", str(project.spec)).code == 0
    with Store(store_dir) as store:
        (record,) = store.list()
        digest = next(iter(store.get_manifest(record.manifest_digest).files.values())).digest
        blob = store.blob_path(digest)
    os.chmod(blob, 0o644)
    blob.write_bytes(b"damaged")
    data = _plan(cli, project)
    (stage,) = data["targets"][0]["stages"]
    assert (stage["local"], stage["action"]) == ("corrupt", "rebuild")
    assert "stored artifact is corrupt" in stage["reason"]
    # The plan does not repair: the damaged blob is still where it was (compile quarantines).
    assert blob.exists()


def test_plan_missing_toolchain_blocks_with_install_hint(cli, project, data_dir: Path) -> None:
    tc = project.root / "profiles" / "toolchains"
    (tc / "pinned.lock").write_text("fakepkg==1.0 --hash=sha256:" + "0" * 64 + "\n")
    (tc / "pinned.yaml").write_text(
        "name: pinned\ndescription: a provisioned toolchain not installed here\n"
        "lock: pinned.lock\npackages: []\n"
    )
    text = project.fake_profile().replace("toolchain: fake", "toolchain: pinned")
    project.write_profile("fake-compile", text)
    data = _plan(cli, project)
    target = data["targets"][0]
    (stage,) = target["stages"]
    assert target["status"] == "blocked" and stage["action"] == "blocked"
    whats = " ".join(g["what"] for g in stage["blocked"])
    assert "toolchain pinned" in whats
    assert any("rmbuild toolchain install pinned" in g["install"] for g in stage["blocked"])


def test_plan_notes_a_missing_device(cli, project) -> None:
    text = project.fake_profile().replace("stage: compile", "stage: compile\nresource: npu")
    project.write_profile("fake-compile", text)
    data = _plan(cli, project)
    target = data["targets"][0]
    assert target["device_present"] is False
    assert target["notes"] == ["no npu device here to run it (building it works)"]


def test_plan_chained_stage_key_unknown_until_upstream_built(cli, project) -> None:
    """A downstream key chains its upstream's manifest digest: null until that is built."""
    second = (
        project.fake_profile()
        .replace("name: fake-compile", "name: fake-second")
        .replace("input_format: hf", "input_format: fake-bin")
        .replace("output_format: fake-bin", "output_format: fake-bin2\ndepends_on: fake-compile")
    )
    project.write_profile("fake-second", second)
    project.write_spec(project.spec_text(profile="fake-second"))
    data = _plan(cli, project)
    first, downstream = data["targets"][0]["stages"]
    assert first["key"] and first["action"] == "build"
    assert downstream["key"] is None and downstream["local"] == "unknown"
    assert "output of fake-compile" in downstream["reason"]
    assert cli("compile", str(project.spec)).code == 0
    first, downstream = _plan(cli, project)["targets"][0]["stages"]
    assert downstream["key"] and downstream["action"] == "reuse"


def test_plan_schema_rejects_a_wrong_document() -> None:
    jsonschema = pytest.importorskip("jsonschema", reason="jsonschema validates the plan JSON")
    bad = {"schema_version": 1, "model": "m", "spec": "s", "remote": "x", "targets": [{}]}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, schema())
    assert json.dumps(schema())  # plain JSON


# ----------------------------------------------------------------------------- cache policy


def test_readonly_never_compiles_and_exits_5_with_the_plan(cli, project, tmp_path: Path) -> None:
    counter = tmp_path / "count.txt"
    project.set_flags(counter=str(counter))
    result = cli("compile", str(project.spec), "--cache-policy", "readonly")
    result.assert_failure(5)
    assert not counter.exists(), "readonly ran the compiler"
    assert "cache policy is readonly" in result.err
    assert "missing (readonly cache policy):" in result.err
    assert "fake / fake-compile" in result.err and "build" in result.err
    project.assert_empty(cli)


def test_readonly_serves_hits(cli, project, tmp_path: Path, monkeypatch) -> None:
    counter = tmp_path / "count.txt"
    project.set_flags(counter=str(counter))
    assert cli("compile", str(project.spec)).code == 0
    monkeypatch.setenv("RMBUILD_CACHE_POLICY", "readonly")
    result = cli("compile", str(project.spec))
    assert result.code == 0, result.err
    assert "cached, no tool ran" in result.out
    assert counter.read_text().count("\n") == 1


def test_readonly_from_env_and_config_file(cli, project, monkeypatch) -> None:
    monkeypatch.setenv("RMBUILD_CACHE_POLICY", "readonly")
    cli("compile", str(project.spec)).assert_failure(5)
    monkeypatch.delenv("RMBUILD_CACHE_POLICY")
    from rmbuild import config

    (config.user_config_dir()).mkdir(parents=True, exist_ok=True)
    (config.user_config_dir() / "config.toml").write_text('cache_policy = "readonly"\n')
    cli("compile", str(project.spec)).assert_failure(5)
    # The flag wins over the file.
    assert cli("compile", str(project.spec), "--cache-policy", "readwrite").code == 0


def test_bad_cache_policy_is_a_usage_error(cli, project, monkeypatch) -> None:
    monkeypatch.setenv("RMBUILD_CACHE_POLICY", "sometimes")
    result = cli("compile", str(project.spec))
    result.assert_failure(2)
    assert "cache policy 'sometimes' is not one of readwrite, readonly" in result.err


def test_redo_rebuilds(cli, project, tmp_path: Path) -> None:
    counter = tmp_path / "count.txt"
    project.set_flags(counter=str(counter))
    first = cli("compile", str(project.spec), "--json")
    assert first.code == 0, first.err
    again = cli("redo", str(project.spec), "-t", "fake", "--json")
    assert again.code == 0, again.err
    assert again.json()[0]["hit"] is False
    assert again.json()[0]["artifact"] == first.json()[0]["artifact"]
    assert counter.read_text().count("\n") == 2


# ----------------------------------------------------------------------------- with a remote


def test_plan_why_and_check_see_the_remote(cli, project, tmp_path: Path, monkeypatch) -> None:
    """A key held on the remote (file://, through fsspec) is a planned pull, and the key of the
    stage after it is known from the remote's manifest digest."""
    pytest.importorskip("fsspec", reason="remotes need the remote extra")
    second = (
        project.fake_profile()
        .replace("name: fake-compile", "name: fake-second")
        .replace("input_format: hf", "input_format: fake-bin")
        .replace("output_format: fake-bin", "output_format: fake-bin2\ndepends_on: fake-compile")
    )
    project.write_profile("fake-second", second)
    project.write_spec(project.spec_text(profile="fake-second"))
    url = (tmp_path / "remote").as_uri()
    built = cli("compile", str(project.spec), "--remote", url, "--json")
    assert built.code == 0, built.err
    key = built.json()[0]["artifact"]
    monkeypatch.setenv("RMBUILD_STORE", str(tmp_path / "fresh-store"))  # a serving host
    data = _plan(cli, project, "--remote", url)
    first, downstream = data["targets"][0]["stages"]
    assert data["remote"] != "not configured"
    # The last stage is pulled; the first one's files are not needed for it (its key and
    # output digest come from its result), so it is neither pulled nor built.
    assert (first["local"], first["remote"], first["action"]) == ("miss", "hit", "skip")
    assert downstream["key"] == key and downstream["action"] == "pull"
    assert data["targets"][0]["status"] == "pull"
    # check grades the remote's entry from its metadata, nothing downloaded.
    graded = cli("check", key[:12], "--remote", url, "--json")
    assert graded.json()["artifact"] == key, graded.err
    assert not [p for p in (tmp_path / "fresh-store").rglob("objects/*/*") if p.is_file()]
    # readonly with the remote: pulled, never compiled.
    pulled = cli("compile", str(project.spec), "--remote", url, "--cache-policy", "readonly")
    assert pulled.code == 0, pulled.err
    # A changed flag: why compares with the remote's entries too (the local store has them
    # now; a fresh one has only the remote's).
    monkeypatch.setenv("RMBUILD_STORE", str(tmp_path / "fresh-store-2"))
    project.write_spec(
        project.spec_text(profile="fake-second").replace(
            "profile: fake-second", "profile: fake-second\n    flags:\n      level: 5"
        )
    )
    why = cli("why", str(project.spec), "-t", "fake", "--remote", url)
    assert why.code == 0, why.err
    assert "flag level: 1 → 5" in why.out


def test_readonly_refuses_a_rebuild(cli, project, monkeypatch) -> None:
    monkeypatch.setenv("RMBUILD_CACHE_POLICY", "readonly")
    result = cli("redo", str(project.spec), "-t", "fake")
    assert result.code == 2
    assert "the cache policy is readonly" in result.err


def test_plan_of_a_resource_class_shows_blocked_candidates(cli, project, data_dir) -> None:
    """`--target npu` with nothing buildable here: the plan lists why, instead of exit 7."""
    data = _plan(cli, project, "--target", "npu")
    assert data["targets"], data
    for target in data["targets"]:
        assert target["resource"] == "npu"
        assert target["device_present"] is False
