"""`push`, `pull`, `ls --remote` and `compile --remote` against a real S3 protocol.

The S3 server is moto's, on loopback (tests/conftest.py: s3_server, s3_remote); the project is
the stand-in compiler's, so a build takes milliseconds and its runs can be counted.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from conftest import Project

EXIT_NOT_FOUND = 5
EXIT_CORRUPT = 6
EXIT_REMOTE = 10


def _counted(project: Project, tmp_path: Path) -> Path:
    counter = tmp_path / "runs.txt"
    project.set_flags(counter=str(counter))
    return counter


def _runs(counter: Path) -> int:
    return len(counter.read_text().splitlines()) if counter.exists() else 0


def _second_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    other = tmp_path / "other-store"
    monkeypatch.setenv("RMBUILD_STORE", str(other))
    return other


def test_push_pull_round_trip_then_run_finds_it(
    project: Project, cli, s3_remote: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:  # noqa: ANN001
    built = cli("compile", str(project.spec), "--tag", "chat-main", "--target", "fake", "--json")
    assert built.code == 0, built.err
    artifact = built.json()[0]["artifact"]
    pushed = cli("push", "chat-main", "--remote", s3_remote, "--json")
    assert pushed.code == 0, pushed.err
    assert pushed.json()["pushed"] == [artifact] and pushed.json()["remote"] == s3_remote
    again = cli("push", "--all", "--remote", s3_remote)
    assert again.code == 0 and "pushed 0 artifact(s)" in again.out and "1 already" in again.out
    _second_store(tmp_path, monkeypatch)
    assert cli("show", artifact).code == EXIT_NOT_FOUND
    pulled = cli("pull", "chat-main", "--remote", s3_remote)
    assert pulled.code == 0, pulled.err
    assert f"chat-main -> {artifact}  (pulled: tiny:fake)" in pulled.out
    assert cli("verify", "chat-main").code == 0
    shown = cli("show", "chat-main", "--json")
    assert shown.code == 0 and shown.json()["id"] == artifact
    # `run` finds the pulled artifact and passes its integrity check; what happens next is
    # the stand-in model's business (it is no real graph).
    ran = cli("run", "--artifact", "chat-main", "-n", "1")
    assert ran.code not in (EXIT_NOT_FOUND, EXIT_REMOTE), ran.err
    assert ran.code != 1, ran.err  # never an internal error
    if ran.code == 7:  # the light venv: no onnxruntime, refused before anything is laid out
        assert "onnxruntime" in ran.err, ran.err
    else:
        if ran.code == EXIT_CORRUPT:  # 6: the runtime refused the stand-in's bytes
            assert "artifact-unloadable" in ran.err, ran.err
        assert (tmp_path / "other-store" / "trees" / artifact / "model.bin").is_file()
    assert "corrupt" not in ran.err and "no artifact" not in ran.err
    assert "already here" in cli("pull", artifact[:10], "--remote", s3_remote).out


def test_compile_remote_on_an_empty_store_pulls_instead_of_building(
    project: Project, cli, s3_remote: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:  # noqa: ANN001
    counter = _counted(project, tmp_path)
    first = cli("compile", str(project.spec), "--all", "--remote", s3_remote, "--json")
    assert first.code == 0, first.err
    assert _runs(counter) == 1 and "pushed to s3://" in first.err
    listing = cli("ls", "--remote", s3_remote, "--json")
    assert listing.code == 0, listing.err
    assert [r["id"] for r in listing.json()] == [first.json()[0]["artifact"]]
    assert listing.json()[0]["model"] == "tiny" and listing.json()[0]["target"] == "fake"
    monkeypatch.setenv("RMBUILD_REMOTE", s3_remote)
    assert cli("ls", "--remote", "--json").json() == listing.json()  # the configured remote
    monkeypatch.delenv("RMBUILD_REMOTE")
    _second_store(tmp_path, monkeypatch)
    second = cli("compile", str(project.spec), "--all", "--remote", s3_remote)
    assert second.code == 0, second.err
    assert _runs(counter) == 1  # the tool did not run: the artifact came from the remote
    assert "pulled from s3://" in second.err and "cached, no tool ran" in second.out
    assert cli("verify").code == 0


def test_compile_uses_the_remote_named_in_rmbuild_toml(
    project: Project, cli, s3_remote: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:  # noqa: ANN001
    counter = _counted(project, tmp_path)
    (project.root / "rmbuild.toml").write_text(f'remote = "{s3_remote}"\n')
    assert cli("compile", str(project.spec)).code == 0
    _second_store(tmp_path, monkeypatch)
    assert cli("compile", str(project.spec)).code == 0
    assert _runs(counter) == 1
    # 'none' turns the configured remote off: the tool runs again.
    _second_store(tmp_path / "x", monkeypatch)
    assert cli("compile", str(project.spec), "--remote", "none").code == 0
    assert _runs(counter) == 2


def test_a_corrupt_remote_blob_is_refused_by_pull_and_compile_builds_instead(
    project: Project, cli, s3_remote: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:  # noqa: ANN001
    import boto3

    counter = _counted(project, tmp_path)
    built = cli("compile", str(project.spec), "--remote", s3_remote, "--json")
    artifact = built.json()[0]["artifact"]
    digest = cli("show", artifact, "--json").json()["files"]["model.bin"]["digest"]
    bucket, prefix = s3_remote.removeprefix("s3://").split("/", 1)
    s3 = boto3.client("s3", endpoint_url=os.environ["AWS_ENDPOINT_URL"])
    name = f"{prefix}/objects/{digest[:2]}/{digest[2:]}"
    data = bytearray(s3.get_object(Bucket=bucket, Key=name)["Body"].read())
    data[0] ^= 0xFF
    s3.put_object(Bucket=bucket, Key=name, Body=bytes(data))
    other = _second_store(tmp_path, monkeypatch)
    r = cli("pull", artifact, "--remote", s3_remote)
    r.assert_failure(EXIT_REMOTE)
    assert "remote-corrupt" in r.err and digest[:12] in r.err and s3_remote in r.err
    assert cli("ls", "--json").json() == []
    assert not any((other / "objects").rglob("*")) or all(
        p.is_dir() for p in (other / "objects").rglob("*")
    )
    # compile treats the damaged copy as a miss: it says so and builds here.
    again = cli("compile", str(project.spec), "--remote", s3_remote)
    assert again.code == 0, again.err
    assert "remote-corrupt" not in again.err and "building here instead" in again.err
    assert _runs(counter) == 2


def test_wrong_credentials_exit_10_naming_the_remote_and_no_secret(
    project: Project, cli, s3_remote: str, monkeypatch: pytest.MonkeyPatch
) -> None:  # noqa: ANN001
    import moto.settings

    built = cli("compile", str(project.spec), "--json")
    artifact = built.json()[0]["artifact"]
    secret = "not-the-right-secret-0123456789"
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAWRONGWRONGWRONG1")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", secret)
    monkeypatch.setattr(moto.settings, "INITIAL_NO_AUTH_ACTION_COUNT", 0)
    for args in (("push", artifact), ("pull", artifact), ("ls",)):
        r = cli(*args, "--remote", s3_remote)
        r.assert_failure(EXIT_REMOTE)
        assert "remote-auth" in r.err and f"remote {s3_remote}" in r.err, r.err
        assert secret not in r.err and secret not in r.out


def test_push_without_a_remote_is_a_usage_error(project: Project, cli) -> None:  # noqa: ANN001
    r = cli("push", "--all")
    r.assert_failure(2)
    assert "no remote given" in r.err and "RMBUILD_REMOTE" in r.err


def test_a_remote_without_fsspec_installed_names_the_extra_and_no_secret(
    cli,  # noqa: ANN001
    store_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "fsspec", None)  # `import fsspec` raises ImportError
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "hunter2-secret")
    r = cli("ls", "--remote", "s3://bucket/rmbuild")
    r.assert_failure(10)
    assert "fsspec is not installed" in r.err and "rmbuild[remote]" in r.err
    assert "hunter2" not in r.err


def test_pull_of_what_the_remote_lacks_is_not_found(cli, s3_remote: str, store_dir: Path) -> None:  # noqa: ANN001
    r = cli("pull", "tiny:nothing", "--remote", s3_remote)
    r.assert_failure(EXIT_NOT_FOUND)
    assert f"not on the remote {s3_remote}" in r.err


def test_the_ci_recipe_uses_commands_that_exist(tmp_path: Path) -> None:
    import re
    import shutil

    import yaml

    from rmbuild import config
    from rmbuild.cli import COMMANDS

    ci = Path(__file__).resolve().parents[2] / "examples" / "ci"
    workflow = yaml.safe_load((ci / "prebuild.yml").read_text())
    steps = [s for job in workflow["jobs"].values() for s in job["steps"]]
    text = "\n".join(s.get("run", "") for s in steps) + (ci / "serve.sh").read_text()
    commands = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
    used = set(re.findall(r"^\s*(?:exec )?rmbuild (\w+)", "\n".join(commands), re.M))
    assert {"compile", "push", "pull", "ls", "run"} <= used <= set(COMMANDS)
    (tmp_path / ".git").mkdir()
    shutil.copy(ci / "rmbuild.toml", tmp_path / "rmbuild.toml")
    assert config.remote_url(None, tmp_path) == "s3://team-cache/rmbuild"


def test_a_bad_remote_jobs_value_is_a_usage_error(
    cli,  # noqa: ANN001
    s3_remote: str,
    store_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("RMBUILD_REMOTE_JOBS", "eight")
    r = cli("ls", "--remote", s3_remote)
    r.assert_failure(2)
    assert "RMBUILD_REMOTE_JOBS='eight' is not a positive whole number" in r.err


def test_push_takes_model_target_as_pull_does(
    project: Project, cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:  # noqa: ANN001
    pytest.importorskip("fsspec", reason="fsspec not installed (extra: remote)")
    url = f"file://{tmp_path / 'shared'}"
    artifact = cli("compile", str(project.spec), "--json").json()[0]["artifact"]
    pushed = cli("push", "tiny:fake", "--remote", url, "--json")
    assert pushed.code == 0, pushed.err
    assert pushed.json()["pushed"] == [artifact]
    missing = cli("push", "tiny:npu", "--remote", url)
    missing.assert_failure(EXIT_NOT_FOUND)
    assert "no artifact for 'tiny:npu' in this store" in missing.err
    _second_store(tmp_path, monkeypatch)
    pulled = cli("pull", "tiny:fake", "--remote", url)
    assert pulled.code == 0 and f"tiny:fake -> {artifact}" in pulled.out, pulled.err


def test_gc_remote_collects_what_a_killed_push_left(
    store_dir: Path, cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:  # noqa: ANN001
    import time

    pytest.importorskip("fsspec", reason="fsspec not installed (extra: remote)")
    tmp = tmp_path / "shared" / "tmp"
    tmp.mkdir(parents=True)
    dead, young = tmp / "dead", tmp / "young"
    dead.write_bytes(b"x" * 2048)
    young.write_bytes(b"y")
    old = time.time() - 2 * 3600
    os.utime(dead, (old, old))
    monkeypatch.setenv("RMBUILD_REMOTE", f"file://{tmp_path / 'shared'}")
    dry = cli("gc", "--remote", "--dry-run", "--json")
    assert dry.code == 0, dry.err
    assert dry.json()["tmp_removed"] == 1 and dead.exists()
    done = cli("gc", "--remote")
    assert done.code == 0, done.err
    assert "removed 1 temp object(s) (2048 bytes)" in done.out and "1 younger" in done.out
    assert not dead.exists() and young.exists()
    assert not (store_dir / "objects").exists()  # the local store was not collected
    both = cli("gc", "--remote", "--max-size", "1G")
    assert both.code == 2 and "--max-size caps the local store" in both.err


# ----------------------------------------------------------------------------- secrets in URLs


@pytest.mark.parametrize(
    ("url", "what"),
    [
        ("file://u:PW-s3cr3t@/dir?secret=Q-s3cr3t", "a user name or password"),
        ("s3://bucket/prefix?secret=Q-s3cr3t", "a query string"),
        ("s3://AKIAEXAMPLEKEYID:PW-s3cr3t@bucket/prefix", "a user name or password"),
        ("simplecache::s3://u:PW-s3cr3t@bucket/p", "a user name or password"),
    ],
)
def test_a_remote_url_with_credentials_or_a_query_is_refused(
    url: str,
    what: str,
    project: Project,
    cli,  # noqa: ANN001
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Used raw, such a URL put the data under ./u:PW…@/…?secret=…/ and the query into S3 keys.
    monkeypatch.chdir(project.root)
    for args in (
        ("compile", str(project.spec)),
        ("push", "--all"),
        ("pull", "tiny:fake"),
        ("ls",),
    ):
        r = cli(*args, "--remote", url)
        r.assert_failure(2)
        assert what in r.err and "--remote" in r.err, r.err
        assert "s3cr3t" not in r.err + r.out and "AKIAEXAMPLEKEYID" not in r.err
        assert "AWS_SECRET_ACCESS_KEY" in r.err and "[remote_options]" in r.err
    assert not [p for p in project.root.iterdir() if "PW" in p.name or "@" in p.name]


def test_the_refusal_names_where_the_url_came_from(
    project: Project,
    cli,  # noqa: ANN001
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("RMBUILD_REMOTE", "s3://bucket/p?token=Q-s3cr3t")
    r = cli("compile", str(project.spec))
    r.assert_failure(2)
    assert "(RMBUILD_REMOTE)" in r.err and "s3cr3t" not in r.err
    monkeypatch.delenv("RMBUILD_REMOTE")
    (project.root / ".git").mkdir(exist_ok=True)
    toml = project.root / "rmbuild.toml"
    toml.write_text('remote = "s3://u:PW-s3cr3t@bucket/p"\n')
    monkeypatch.chdir(project.root)
    r = cli("compile", str(project.spec))
    r.assert_failure(2)
    assert str(toml) in r.err and "s3cr3t" not in r.err


def test_an_index_url_password_is_masked_in_the_exit_8_message(
    cli,  # noqa: ANN001
    store_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Nothing listens on port 1: the index does not answer (exit 8), and the message names it.
    monkeypatch.setenv(
        "RMBUILD_INDEX_URL",
        "postgresql://alice:PW-s3cr3t@127.0.0.1:1/rmbuild?password=Q-s3cr3t&sslmode=disable",
    )
    r = cli("ls")
    r.assert_failure(8)
    assert "postgresql://***@127.0.0.1:1/rmbuild?password=***&sslmode=disable" in r.err, r.err
    assert "s3cr3t" not in r.err and "alice" not in r.err
