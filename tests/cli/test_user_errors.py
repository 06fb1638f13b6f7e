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
        ("postgresql://u:secret@localhost/db", "u:***@localhost"),
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


# ------------------------------------------------------------- did-you-mean (issue 6 #17)


def test_misspelt_required_field_shows_the_unknown_field_first(project: Project, cli) -> None:  # noqa: ANN001
    project.write_spec(project.spec_text().replace("    profile:", "    profil:"))
    r = cli("compile", str(project.spec))
    r.assert_failure(3)
    assert f"{project.spec}:7: field 'targets.fake.profil': unknown field" in r.err
    assert "(did you mean 'profile'?)" in r.err
    assert "and 1 more problem(s)" in r.err


def test_misspelt_target_suggests_the_close_one(project: Project, cli) -> None:  # noqa: ANN001
    r = cli("compile", str(project.spec), "--target", "fkae")
    r.assert_failure(3)
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
    r.assert_failure(3)
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


# ------------------------------------------------------------- flag values (issue 6 #18)


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
