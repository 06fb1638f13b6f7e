"""`rmbuild ls` piped and with --json: plain tab-separated columns, one JSON array with an
artifact a line, both streamed; internal artifacts (compiler caches) only with --all."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

LONG_TOOLCHAIN = {"furiosa-llm": "2026.4.0+a-very-long-local-revision-string-1234567890"}


def _commit(store_dir: Path, tmp_path: Path, i: int, **kw: Any) -> str:
    from artifact_store import Store

    src = tmp_path / f"src{i}"
    src.mkdir()
    (src / "f").write_bytes(f"artifact {i}".encode())
    key = f"{i:02x}" + "d" * 62
    with Store(store_dir) as store:
        store.commit(
            key,
            store.put_tree(src),
            model=kw.get("model", "tiny"),
            target=kw.get("target", "rngd"),
            backend=kw.get("backend", "furiosa"),
            metadata=kw.get("metadata", {"profile": "furiosa-rngd", "tool": {}}),
        )
    return key


@pytest.fixture
def with_cache(store_dir: Path, tmp_path: Path) -> dict[str, str]:
    """A model's artifact with a long toolchain version, and a compiler's cache."""
    meta = {
        "profile": "furiosa-rngd",
        "tool": {"package": "furiosa-llm", "version": LONG_TOOLCHAIN["furiosa-llm"]},
    }
    model = _commit(store_dir, tmp_path, 1, metadata=meta)
    cache = _commit(
        store_dir,
        tmp_path,
        2,
        model="furiosa-compiler-cache",
        target="compiler-cache",
        metadata={"kind": "compiler-cache", "profile": "furiosa-rngd", "stage": "compiler-cache"},
    )
    return {"model": model, "cache": cache}


def test_piped_ls_is_tab_separated_plain_columns(with_cache: dict[str, str], cli) -> None:  # noqa: ANN001
    r = cli("ls")  # captured: not a terminal
    assert r.code == 0, r.err
    lines = r.out.splitlines()
    assert lines[0].split("\t") == [
        "ID",
        "MODEL",
        "TARGET",
        "PROFILE",
        "BACKEND",
        "TOOLCHAIN",
        "SIZE",
        "AGE",
        "ALIASES",
    ]
    assert len(lines) == 2  # the compiler cache is hidden
    cells = lines[1].split("\t")
    assert cells[:5] == [with_cache["model"][:12], "tiny", "rngd", "furiosa-rngd", "furiosa"]
    # Not wrapped onto a second line, not padded to a column width.
    assert cells[5] == f"furiosa-llm {LONG_TOOLCHAIN['furiosa-llm']}"
    assert all(c == c.strip() for c in cells) and "  " not in lines[1]


def test_a_tab_or_line_break_in_a_value_cannot_shift_the_columns(
    store_dir: Path,
    tmp_path: Path,
    cli,  # noqa: ANN001
) -> None:
    _commit(store_dir, tmp_path, 1, model="two\nlines\tand a tab")
    lines = cli("ls").out.splitlines()
    assert len(lines) == 2 and len(lines[1].split("\t")) == 9
    assert lines[1].split("\t")[1] == "two lines and a tab"


def test_internal_artifacts_are_hidden_unless_all_or_asked_for(
    with_cache: dict[str, str],
    cli,  # noqa: ANN001
) -> None:
    short = with_cache["cache"][:12]
    assert short not in cli("ls").out
    assert [r["id"] for r in cli("ls", "--json").json()] == [with_cache["model"]]
    everything = cli("ls", "--all", "--json").json()
    assert {r["id"] for r in everything} == set(with_cache.values())
    assert short in cli("ls", "--all").out
    asked = cli("ls", "--target", "compiler-cache", "--json").json()
    assert [r["id"] for r in asked] == [with_cache["cache"]]


def test_the_terminal_count_leaves_internal_artifacts_out(
    store_dir: Path,
    tmp_path: Path,
    cli,  # noqa: ANN001
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for i in range(3):
        _commit(store_dir, tmp_path, i)
    _commit(store_dir, tmp_path, 9, model="furiosa-compiler-cache", target="compiler-cache")
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True)
    r = cli("ls", "--limit", "2")
    assert "showing the 2 newest of 3 artifacts" in r.err


def test_ls_json_is_one_array_with_an_artifact_a_line(with_cache: dict[str, str], cli) -> None:  # noqa: ANN001
    out = cli("ls", "--all", "--json").out
    lines = out.splitlines()
    assert lines[0] == "[" and lines[-1] == "]"
    assert [json.loads(line.rstrip(","))["id"] for line in lines[1:-1]] == [
        with_cache["cache"],
        with_cache["model"],
    ]
    assert json.loads(out)  # one document, as before
    assert cli("ls", "--model", "nothing", "--json").json() == []


def test_ls_writes_its_first_rows_before_it_has_read_them_all(
    store_dir: Path,
    tmp_path: Path,
    cli,  # noqa: ANN001
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Streamed: by the first write to stdout, the index has yielded one batch, not all."""
    from artifact_store import queries
    from rmbuild.cli import ls

    for i in range(6):
        _commit(store_dir, tmp_path, i)
    monkeypatch.setattr(queries, "STREAM_BATCH", 2)
    monkeypatch.setattr(ls, "WRITE_BATCH", 1)
    read: list[str] = []
    seen_at_first_write: list[int] = []
    real_summary = ls.record_summary
    real_cells = ls._cells

    def counting(fn: Any) -> Any:
        def wrapped(record: Any) -> Any:
            read.append(record.key)
            return fn(record)

        return wrapped

    monkeypatch.setattr(ls, "record_summary", counting(real_summary))
    monkeypatch.setattr(ls, "_cells", counting(real_cells))
    real_write = sys.stdout.write

    def write(text: str) -> int:
        if text and not seen_at_first_write:
            seen_at_first_write.append(len(read))
        return real_write(text)

    for args in (("ls", "--json"), ("ls",)):
        read.clear()
        seen_at_first_write.clear()
        monkeypatch.setattr(sys.stdout, "write", write)
        r = cli(*args)
        monkeypatch.setattr(sys.stdout, "write", real_write)
        assert r.code == 0, r.err
        assert len(read) == 6
        assert seen_at_first_write[0] < 6, args


def test_piped_ls_of_an_empty_store_says_so_on_stderr(store_dir: Path, cli) -> None:  # noqa: ANN001
    r = cli("ls")
    assert r.code == 0 and r.out == "" and "no artifacts yet" in r.err
