"""The plan cache: a hit without the spec machinery, and every change falls back.

Files are aged before the first build: like the store's stat cache, the plan cache does not
trust a file younger than its racy window (a change in the same mtime tick would go unseen).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rmbuild.host import hostinfo
from rmbuild.planning import plancache

AGE_S = 60


def _age(*roots: Path) -> None:
    old = time.time() - AGE_S
    for root in roots:
        for folder, dirs, files in os.walk(root):
            for name in files + dirs:
                os.utime(os.path.join(folder, name), (old, old), follow_symlinks=False)
        os.utime(root, (old, old))


@pytest.fixture
def aged(project, tmp_path: Path):  # noqa: ANN201
    """The project, aged, built once through the full path (which writes the entry)."""
    from rmbuild.build import compile_spec
    from rmbuild.storage.store import open_store

    _age(project.root, project.fake.parent)
    with open_store() as store:
        compile_spec(project.spec, None, store=store)
    return project


def _fast(project):  # noqa: ANN202
    from rmbuild.storage.store import open_store

    with open_store() as store:
        return plancache.fast_compile(str(project.spec), store, None)


def test_entry_written_and_served(aged) -> None:
    results = _fast(aged)
    assert results is not None
    (result,) = results
    assert (result.model, result.target) == ("tiny", "fake")
    assert [s.profile for s in result.stages] == ["fake-compile"]


def test_cli_hit_takes_the_fast_path(aged, cli, monkeypatch) -> None:
    import rmbuild.build

    def boom(*a, **k):  # noqa: ANN002, ANN003, ANN202
        raise AssertionError("the full path ran")

    monkeypatch.setattr(rmbuild.build, "compile_spec", boom)
    monkeypatch.setattr(rmbuild.build, "compile_targets", boom)  # what the CLI calls
    result = cli("compile", str(aged.spec))
    assert result.code == 0, result.err
    assert "(cached, no tool ran)" in result.out
    assert "fake [1/1] fake-compile" in result.err and "cache hit" in result.err
    data = cli("compile", str(aged.spec), "--json").json()
    assert data[0]["hit"] is True and data[0]["target"] == "fake"


def test_whole_process_hit_imports_no_spec_machinery(aged) -> None:
    code = (
        "import sys; from rmbuild.cli import main; code = main(sys.argv[1:]); "
        "heavy = sorted({m.split('.')[0] for m in sys.modules} & "
        "{'pydantic', 'jinja2', 'sqlalchemy', 'yaml', 'rmbuild.declare.spec'}); print(heavy); "
        "sys.exit(code)"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, "compile", str(aged.spec)],
        capture_output=True,
        text=True,
        env=os.environ.copy(),
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "[]", proc.stdout


@pytest.mark.parametrize(
    "change",
    ["spec", "weights", "new_source_file", "profile", "template", "toolchain", "tool"],
)
def test_any_change_falls_back(aged, change: str) -> None:
    root = aged.root
    if change == "spec":
        aged.set_flags(level=2)
    elif change == "weights":
        (aged.model / "weights.bin").write_bytes(b"\x09" * 128)
    elif change == "new_source_file":
        (aged.model / "extra.json").write_text("{}")
    elif change == "profile":
        path = root / "profiles" / "fake-compile.yaml"
        path.write_text(path.read_text() + "# edited\n")
    elif change == "template":
        path = root / "templates" / "fake.argv.j2"
        path.write_text(path.read_text() + "{# edited #}\n")
    elif change == "toolchain":
        path = root / "profiles" / "toolchains" / "fake.yaml"
        path.write_text(path.read_text() + "# edited\n")
    elif change == "tool":
        aged.fake.write_text(aged.fake.read_text() + "\n# a new build of the compiler\n")
    assert _fast(aged) is None


def test_key_env_value_change_falls_back(project, monkeypatch) -> None:
    from rmbuild.build import compile_spec
    from rmbuild.storage.store import open_store

    tc = project.root / "profiles" / "toolchains" / "fake.yaml"
    tc.write_text(tc.read_text() + "key_env: [FAKE_KEYED]\n")
    monkeypatch.setenv("FAKE_KEYED", "one")
    _age(project.root, project.fake.parent)
    with open_store() as store:
        compile_spec(project.spec, None, store=store)
    assert _fast(project) is not None
    monkeypatch.setenv("FAKE_KEYED", "two")
    assert _fast(project) is None
    monkeypatch.delenv("FAKE_KEYED")
    assert _fast(project) is None


def test_a_shadowing_profile_in_the_user_dir_falls_back(aged) -> None:
    from rmbuild import config

    user = config.user_config_dir() / "profiles"
    user.mkdir(parents=True)
    assert _fast(aged) is None


def test_young_files_are_not_trusted(project) -> None:
    """Written just now (the racy window): the full path runs and writes no entry."""
    from rmbuild.build import compile_spec
    from rmbuild.storage.store import open_store

    with open_store() as store:
        compile_spec(project.spec, None, store=store)
    assert _fast(project) is None
    assert not (project.store / "plancache").exists()


def test_damaged_blob_on_the_fast_path_is_quarantined_and_rebuilt(aged, cli) -> None:
    """The integrity check of every hit runs on the fast path too."""
    from artifact_store import Store

    with Store(aged.store) as store:
        (record,) = store.list()
        entry = next(iter(store.get_manifest(record.manifest_digest).files.values()))
        blob = store.blob_path(entry.digest)
    os.chmod(blob, 0o644)
    blob.write_bytes(b"x")  # size moved: the cheap check sees it
    assert _fast(aged) is None
    assert not blob.exists() or blob.read_bytes() != b"x"  # quarantined
    result = cli("compile", str(aged.spec), "--json")
    assert result.code == 0, result.err
    assert result.json()[0]["hit"] is False  # rebuilt by the full path


def test_unknown_target_or_class_takes_the_full_path(aged) -> None:
    from rmbuild.storage.store import open_store

    with open_store() as store:
        assert plancache.fast_compile(str(aged.spec), store, ["cpu"]) is None
        assert plancache.fast_compile(str(aged.spec), store, ["fake"]) is not None


def test_host_digest_follows_the_first_cpus_flags(monkeypatch: pytest.MonkeyPatch) -> None:
    """A fast-path entry is only good on the CPU it was recorded on: the digest changes with
    the first CPU's flags and model, and only with what the first CPU's block says."""
    import io

    cpuinfo = {"text": ""}

    def fake_open(path, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
        assert path == "/proc/cpuinfo"
        return io.StringIO(cpuinfo["text"])

    monkeypatch.setattr(hostinfo, "open", fake_open, raising=False)
    block = "processor\t: {n}\nmodel name\t: Xeon\nflags\t\t: fpu sse2 {extra}\n\n"
    cpuinfo["text"] = block.format(n=0, extra="avx2") + block.format(n=1, extra="avx2")
    first = hostinfo.host_digest()
    assert hostinfo.host_digest() == first
    cpuinfo["text"] = block.format(n=0, extra="avx2") + block.format(n=1, extra="avx512f")
    assert hostinfo.host_digest() == first  # only the first CPU tells it
    cpuinfo["text"] = block.format(n=0, extra="avx512f") + block.format(n=1, extra="avx2")
    assert hostinfo.host_digest() != first


# ---- a fast-path hit pushes what a configured remote lacks -----------------------------------


def _remote_keys(remote_dir: Path) -> set[str]:
    entries = remote_dir / "entries"
    return {p.stem for p in entries.glob("*.json")} if entries.is_dir() else set()


def _full_path_forbidden(monkeypatch) -> None:  # noqa: ANN001
    import rmbuild.build

    def boom(*a, **k):  # noqa: ANN002, ANN003, ANN202
        raise AssertionError("the full path ran")

    monkeypatch.setattr(rmbuild.build, "compile_spec", boom)
    monkeypatch.setattr(rmbuild.build, "compile_targets", boom)  # what the CLI calls


def test_a_fast_hit_pushes_to_the_remote_named_by_rmbuild_remote(
    aged, cli, monkeypatch, tmp_path: Path
) -> None:
    """Built before a remote was configured: the next hit (fast path) fills the remote."""
    remote_dir = tmp_path / "team-remote"
    monkeypatch.setenv("RMBUILD_REMOTE", f"file://{remote_dir}")
    _full_path_forbidden(monkeypatch)
    result = cli("compile", str(aged.spec), "--json")
    assert result.code == 0, result.err
    artifact = result.json()[0]["artifact"]
    assert _remote_keys(remote_dir) == {artifact}
    assert "pushed to file://" in result.err
    again = cli("compile", str(aged.spec))
    assert again.code == 0, again.err
    assert "pushed" not in again.err  # the remote holds it now: one lookup, no upload
    # `--remote none` turns the configured remote off: nothing is looked up or pushed.
    (remote_dir / "entries" / f"{artifact}.json").unlink()
    assert cli("compile", str(aged.spec), "--remote", "none").code == 0
    assert _remote_keys(remote_dir) == set()


def test_a_fast_hit_pushes_to_the_remote_of_the_project_config(
    aged, cli, monkeypatch, tmp_path: Path
) -> None:
    remote_dir = tmp_path / "from-config"
    before = os.stat(aged.root)
    (aged.root / "rmbuild.toml").write_text(f'remote = "file://{remote_dir}"\n')
    # The project folder's mtime is one of the plan cache's dependencies; put it back so the
    # hit is served by the fast path (a new file there changes no key).
    os.utime(aged.root, ns=(before.st_atime_ns, before.st_mtime_ns))
    _full_path_forbidden(monkeypatch)
    result = cli("compile", str(aged.spec), "--json")
    assert result.code == 0, result.err
    assert _remote_keys(remote_dir) == {result.json()[0]["artifact"]}


# ---- the fast path needs only the target's artifact, not its upstream stages' files ---------


def test_a_pulled_final_artifact_hits_on_the_fast_path(
    project, cli, monkeypatch, tmp_path: Path
) -> None:
    """After a pull of the last stage alone, the full path hits (keys from results) and writes
    the entry; the next compile is served by the fast path, still without the export's files."""
    pytest.importorskip("fsspec", reason="remotes need the remote extra")
    second = (
        project.fake_profile()
        .replace("name: fake-compile", "name: fake-second")
        .replace("input_format: hf", "input_format: fake-bin")
        .replace("output_format: fake-bin", "output_format: fake-bin2\ndepends_on: fake-compile")
    )
    project.write_profile("fake-second", second)
    project.write_spec(project.spec_text(profile="fake-second"))
    _age(project.root, project.fake.parent)
    remote = (tmp_path / "remote").as_uri()
    built = cli("compile", str(project.spec), "--remote", remote, "--json")
    assert built.code == 0, built.err
    export, last = (s["key"] for s in built.json()[0]["stages"])
    serving = tmp_path / "serving-store"
    monkeypatch.setenv("RMBUILD_STORE", str(serving))
    assert cli("pull", last, "--remote", remote).code == 0
    assert cli("compile", str(project.spec), "--remote", "none").code == 0  # writes the entry
    _full_path_forbidden(monkeypatch)
    fast = cli("compile", str(project.spec), "--remote", "none", "--json")
    assert fast.code == 0, fast.err
    assert [s["key"] for s in fast.json()[0]["stages"]] == [export, last]
    from artifact_store import Store

    with Store(serving) as store:
        assert store.get(export) is None and store.result(export) is not None
