"""Mistakes with the store, the index and names are user errors with exit codes, not bugs."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from conftest import Project

EXIT_USAGE, EXIT_STORE = 2, 8


def test_store_that_is_a_file(tmp_path: Path, cli) -> None:  # noqa: ANN001
    bogus = tmp_path / "a-file"
    bogus.write_text("x")
    r = cli("--store", str(bogus), "ls")
    r.assert_failure(EXIT_STORE)
    assert "error[store-unavailable]" in r.err and "Not a directory" in r.err


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("foo://x", "Can't load plugin"),
        # The whole user info is masked: an S3-style user name is an access key id.
        ("postgresql://u:secret@localhost/db", "postgresql://***@localhost"),
    ],
)
def test_bad_index_urls(store_dir: Path, cli, url: str, says: str) -> None:  # noqa: ANN001
    r = cli("--index-url", url, "ls")
    r.assert_failure(EXIT_STORE)
    assert says in r.err and "secret" not in r.err


def test_index_that_is_not_a_database(store_dir: Path, tmp_path: Path, cli) -> None:  # noqa: ANN001
    bad = tmp_path / "index.sqlite"
    bad.write_text("not a database")
    r = cli("--index-url", f"sqlite:///{bad}", "ls")
    r.assert_failure(EXIT_STORE)
    assert "not a database" in r.err


def test_invalid_alias_is_refused_before_building(project: Project, cli) -> None:  # noqa: ANN001
    r = cli("compile", str(project.spec), "--tag", "bad name")
    r.assert_failure(EXIT_USAGE)
    assert "error[invalid-name]: invalid alias 'bad name'" in r.err
    project.assert_empty(cli)


def test_removing_an_unknown_alias(store_dir: Path, cli) -> None:  # noqa: ANN001
    r = cli("tag", "-d", "nosuchalias")
    r.assert_failure(5)
    assert "no such alias" in r.err


def test_gc_size_must_be_a_size(store_dir: Path, cli) -> None:  # noqa: ANN001
    r = cli("gc", "--max-size", "lots")
    assert r.code == EXIT_USAGE and "is not a size" in r.err


# ------------------------------------------------------------- did-you-mean


def test_misspelt_required_field_shows_the_unknown_field_first(project: Project, cli) -> None:  # noqa: ANN001
    project.write_spec(project.spec_text().replace("    profile:", "    profil:"))
    r = cli("compile", str(project.spec))
    r.assert_failure(3)
    assert f"{project.spec}:7: field 'targets.fake.profil': unknown field" in r.err
    assert "(did you mean 'profile'?)" in r.err
    assert "and 1 more problem(s)" in r.err


def test_misspelt_target_suggests_the_close_one(project: Project, cli) -> None:  # noqa: ANN001
    # A mistyped --target is a command-line mistake (usage, 2), not a bad model.yaml (3).
    r = cli("compile", str(project.spec), "--target", "fkae")
    r.assert_failure(EXIT_USAGE)
    assert "[unknown-target]" in r.err
    assert "no target named 'fkae' (did you mean 'fake'?)" in r.err
    assert "targets: fake" in r.err


def test_misspelt_profile_suggests_the_close_one(project: Project, cli) -> None:  # noqa: ANN001
    project.write_spec(project.spec_text(profile="fake-compiel"))
    r = cli("compile", str(project.spec))
    r.assert_failure(3)
    assert "no profile named 'fake-compiel' (did you mean 'fake-compile'?)" in r.err
    assert f"{project.spec}:7: field 'profile'" in r.err


def test_far_off_names_get_no_suggestion(project: Project, cli) -> None:  # noqa: ANN001
    r = cli("compile", str(project.spec), "--target", "zzzz")
    r.assert_failure(EXIT_USAGE)
    assert "no target named 'zzzz'" in r.err and "did you mean" not in r.err


@pytest.mark.parametrize(("typed", "meant"), [("complie", "compile"), ("profile", "profiles")])
def test_misspelt_command_suggests_the_close_one(cli, typed: str, meant: str) -> None:  # noqa: ANN001
    r = cli(typed)
    assert r.code == EXIT_USAGE
    assert f"No such command '{typed}'. Did you mean '{meant}'?" in r.err


def test_unknown_command_far_from_all(cli) -> None:  # noqa: ANN001
    r = cli("frobnicate")
    assert r.code == EXIT_USAGE and "No such command 'frobnicate'." in r.err
    assert "Did you mean" not in r.err


# ------------------------------------------------------------- flag values


@pytest.mark.parametrize("value", ["a\nb", "x\r", ["ok", "two\nlines"]])
def test_flag_value_with_a_line_break_names_file_line_and_field(
    project: Project,
    cli,  # noqa: ANN001
    value: object,
) -> None:
    counter = project.root / "runs.txt"
    project.set_flags(counter=str(counter), name=value)
    r = cli("compile", str(project.spec))
    r.assert_failure(3)
    line = 10  # flags: counter on 9, name on 10 (a list is written inline)
    assert f"{project.spec}:{line}: field 'targets.fake.flags.name'" in r.err
    assert "cannot contain line breaks" in r.err
    assert not counter.exists()
    project.assert_empty(cli)


def test_profile_flag_default_with_a_line_break_names_the_profile(project: Project, cli) -> None:  # noqa: ANN001
    text = project.fake_profile().replace('  name: ""', '  name: "a\\nb"')
    profile = project.write_profile("fake-compile", text)
    r = cli("compile", str(project.spec))
    r.assert_failure(3)
    assert f"{profile}: field 'flags.name': flag default cannot contain line breaks" in r.err


# ------------------------------------------------------------- exit codes of user situations


def test_global_options_are_accepted_after_the_command(
    store_dir: Path,
    tmp_path: Path,
    cli,  # noqa: ANN001
) -> None:
    """`rmbuild ls --store X` was refused (no such option); it is `rmbuild --store X ls`."""
    from artifact_store import Store

    other = tmp_path / "other-store"
    src = tmp_path / "src"
    src.mkdir()
    (src / "f").write_bytes(b"x")
    with Store(other) as store:
        tree = store.put_tree(src)
        store.commit("ab" * 32, tree, model="m", target="t", backend="b", metadata={})
    assert cli("ls", "--json").json() == []  # $RMBUILD_STORE: empty
    after = cli("ls", "--store", str(other), "--json")
    assert after.code == 0, after.err
    assert [r["id"] for r in after.json()] == ["ab" * 32]
    assert cli("--store", str(other), "ls", "--json").json() == after.json()
    index = f"sqlite:///{other / 'index.sqlite'}"
    assert len(cli("ls", "--index-url", index, "-v", "--json").json()) == 1
    bad = cli("ls", "--index-url", "nosuchdriver://x")
    bad.assert_failure(EXIT_STORE)


def test_ls_remote_without_a_url_or_a_configured_remote_is_a_usage_error(
    store_dir: Path,
    cli,  # noqa: ANN001
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("RMBUILD_REMOTE", raising=False)
    r = cli("ls", "--remote")
    r.assert_failure(EXIT_USAGE)
    assert "error[usage-error]: no remote given, and none is configured" in r.err
    assert "invalid-name" not in r.err and "--remote URL" in r.err


def test_two_plugins_claiming_one_backend_is_an_installation_conflict(
    cli,  # noqa: ANN001
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Exit 7 (this backend cannot be used here, with what to do), not 1 "internal error"."""
    from importlib.metadata import EntryPoint

    from rmbuild import plugins

    eps = [
        EntryPoint("onnxruntime", "pkg_a.plugin:Backend", plugins.GROUP),
        EntryPoint("onnxruntime", "pkg_b.plugin:Backend", plugins.GROUP),
    ]
    monkeypatch.setattr(plugins, "entry_points", lambda group: eps)
    plugins.registry.cache_clear()
    try:
        r = cli("backends")
    finally:
        plugins.registry.cache_clear()
    r.assert_failure(7)
    assert "error[duplicate-backend]: two plugins register the backend 'onnxruntime'" in r.err
    assert "pkg_a.plugin:Backend" in r.err and "pkg_b.plugin:Backend" in r.err
    assert "uninstall one" in r.err


def test_an_unknown_toolchain_is_reported_at_the_profiles_line(project: Project, cli) -> None:  # noqa: ANN001
    """Not at "<input>:": the profile's file and its `toolchain:` line, with the closest name."""
    profile = project.write_profile(
        "fake-compile", project.fake_profile().replace("toolchain: fake", "toolchain: fkae")
    )
    line = profile.read_text().splitlines().index("toolchain: fkae") + 1
    r = cli("compile", str(project.spec))
    r.assert_failure(3)
    assert f"{profile}:{line}: field 'toolchain': no toolchain named 'fkae'" in r.err
    assert "(did you mean 'fake'?)" in r.err and "<input>" not in r.err
