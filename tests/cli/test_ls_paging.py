"""`rmbuild ls` on a big store: newest 50 on a terminal, --limit, --all, filters."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

N = 60


@pytest.fixture
def many(store_dir: Path, tmp_path: Path) -> list[str]:
    """N artifacts committed through the store, oldest first; returns their keys."""
    from artifact_store import Store

    keys = []
    with Store(store_dir) as store:
        for i in range(N):
            src = tmp_path / f"src{i}"
            src.mkdir()
            (src / "model.bin").write_bytes(f"artifact {i}".encode())
            key = f"{i:04x}" + "e" * 60
            store.commit(
                key,
                store.put_tree(src),
                model="m",
                target=f"t{i % 3}",
                backend="onnxruntime",
                metadata={"profile": "p"},
            )
            keys.append(key)
    return keys


def test_ls_on_a_terminal_shows_the_newest_50_and_says_so(
    many: list[str],
    cli,  # noqa: ANN001
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True)
    result = cli("ls")
    assert result.code == 0, result.err
    shown = [k[:12] for k in many if k[:12] in result.out]
    assert shown == [k[:12] for k in many[-50:]]  # the newest 50
    assert "showing the 50 newest of 60 artifacts" in result.err
    assert "--all" in result.err
    everything = cli("ls", "--all")
    assert all(k[:12] in everything.out for k in many) and "showing" not in everything.err


def test_ls_limit_filters_and_json_are_newest_first(many: list[str], cli) -> None:  # noqa: ANN001
    three = cli("ls", "--limit", "3", "--json").json()
    assert [r["id"] for r in three] == many[::-1][:3]
    piped = cli("ls", "--json").json()  # not a terminal: everything
    assert [r["id"] for r in piped] == many[::-1]
    t1 = cli("ls", "--target", "t1", "--limit", "2", "--json").json()
    assert [r["id"] for r in t1] == [k for i, k in enumerate(many) if i % 3 == 1][::-1][:2]
    limited = cli("ls", "--limit", "5")
    assert "showing the 5 newest of 60 artifacts" in limited.err
    assert cli("ls", "--limit", "0").code == 2  # a usage error


def test_ls_beyond_a_thousand_rows_prints_plain_columns(
    store_dir: Path,
    cli,  # noqa: ANN001
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The same columns without rich's layout (it took 69 s for 100,000 rows)."""
    from rmbuild.cli import ls

    monkeypatch.setattr(ls, "RICH_ROWS", 2)
    from artifact_store import Store

    with Store(store_dir) as store:
        for i in range(3):
            src = store_dir.parent / f"s{i}"
            src.mkdir()
            (src / "f").write_bytes(b"[bold]x[/]" + bytes([i]))
            store.commit(
                f"{i:02x}" + "a" * 62,
                store.put_tree(src),
                model="[bold]m",
                target="t",
                backend="b",
                metadata={},
            )
    out = cli("ls").out.splitlines()
    assert out[0].split() == [
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
    assert len(out) == 4 and all("[bold]m" in line for line in out[1:])  # never markup
