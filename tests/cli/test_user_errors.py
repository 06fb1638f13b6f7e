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
