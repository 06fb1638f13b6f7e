"""`rmbuild gc` says what it freed now and what its grace period keeps, in sizes people read.

It used to print "freed 0 bytes: 0 blobs, 7 evicted artifacts … store 19566834 -> 2464205
bytes" while the disk was unchanged: the evicted artifacts' blobs, younger than the one-hour
grace period nobody had been told of, went an hour later.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest


def _artifacts(store_dir: Path, tmp_path: Path, n: int = 3) -> list[str]:
    """``n`` artifacts of 64 KiB each, built just now (every blob within the grace period)."""
    from artifact_store import Store

    keys = []
    with Store(store_dir) as store:
        for i in range(n):
            src = tmp_path / f"src{i}"
            src.mkdir()
            (src / "model.bin").write_bytes(bytes([i]) * 65536)
            key = f"{i:02x}" + "9" * 62
            store.commit(
                key, store.put_tree(src), model="m", target=f"t{i}", backend="b", metadata={}
            )
            keys.append(key)
    return keys


def _objects_bytes(store_dir: Path) -> int:
    return sum(p.stat().st_size for p in (store_dir / "objects").rglob("*") if p.is_file())


def test_an_eviction_of_fresh_artifacts_says_what_waits_for_the_grace_period(
    store_dir: Path,
    tmp_path: Path,
    cli,  # noqa: ANN001
) -> None:
    _artifacts(store_dir, tmp_path)
    before = _objects_bytes(store_dir)
    r = cli("gc", "--max-size", "100K")
    assert r.code == 0, r.err
    lines = r.out.splitlines()
    assert lines[0].startswith("gc: freed 0 B now: 0 blobs, 2 evicted artifacts, ")
    waits = re.fullmatch(
        r"gc: (128\.\d KiB) waits in 4 unreferenced blobs younger than the 1h00m grace period; "
        r"a gc from \d\d:\d\d \(in \d+m\d\ds\) frees them, or `rmbuild gc --grace 0` now",
        lines[1],
    )
    assert waits, lines[1]
    assert (
        lines[2].startswith("gc: referenced by artifacts: 192.")
        and "(--max-size 100.0 KiB)" in lines[2]
    )
    assert _objects_bytes(store_dir) == before  # nothing went yet, and the output says so

    # What was announced is what a gc without the grace period frees.
    now = cli("gc", "--grace", "0")
    assert now.code == 0, now.err
    assert now.out.splitlines()[0].startswith(f"gc: freed {waits.group(1)} now: 4 blobs, ")
    assert "waits" not in now.out
    assert _objects_bytes(store_dir) < before - 2 * 65536


def test_the_json_report_carries_the_pending_bytes_and_when(
    store_dir: Path,
    tmp_path: Path,
    cli,  # noqa: ANN001
) -> None:
    import time

    _artifacts(store_dir, tmp_path)
    report = cli("gc", "--max-size", "100K", "--dry-run", "--json").json()
    assert report["bytes_freed"] == 0 and len(report["evicted_keys"]) == 2
    assert report["pending_blobs"] == 4 and report["pending_bytes"] > 2 * 65536
    assert report["grace_s"] == 3600
    assert time.time() < report["pending_until"] <= time.time() + 3600
    dry = cli("gc", "--max-size", "100K", "--dry-run")
    assert "would free 0 B now" in dry.out and "would wait in 4 unreferenced blobs" in dry.out


def test_help_documents_the_grace_period(cli) -> None:  # noqa: ANN001
    text = cli("gc", "--help").out
    assert "Grace period" in text and "--grace 0" in text and "--grace DURATION" in text


@pytest.mark.parametrize(
    ("value", "ok"),
    [("30m", True), ("90s", True), ("0", True), ("2h", True), ("soon", False), ("-1h", False)],
)
def test_grace_takes_a_duration(store_dir: Path, cli, value: str, ok: bool) -> None:  # noqa: ANN001
    r = cli("gc", "--dry-run", "--grace", value)
    if ok:
        assert r.code == 0, r.err
    else:
        assert r.code == 2 and "duration" in r.err
