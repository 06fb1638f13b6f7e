"""The index at scale: `ls`, id prefixes, `show` and `gc --dry-run` with N artifacts.

    python bench/bench_store_scale.py [--n 100000] [--pg-url URL] [--runs 5] [--store DIR]

Fills one store with N artifacts (4 blobs each: manifest, two files, a build log), indexed
twice: in the store's SQLite file and, with --pg-url (default $RMBUILD_TEST_POSTGRES_URL; see
.ci/postgres.sh), in a fresh PostgreSQL database. Then times, per index, whole processes as a
user runs them (median of --runs): `rmbuild ls` as a terminal gets it (`--limit 50`), `ls
--all` and `ls --json` piped, `show <prefix>`, `gc --dry-run`; and in-process the prefix
resolution, next to the query it replaced (`LIKE … ESCAPE`) on the same index.

Filling is a bulk path, not N calls of Store.commit (hours): it writes what commit writes, the
same blobs (read-only files under objects/, not fsynced: a benchmark's data) and the same rows
(artifacts, artifact_uses, artifact_blobs, blob_stats) with the same columns, through the same
SQLAlchemy tables, in batches. Each artifact's metadata has the shape and size of a real
build's (action key, argv, toolchain, durations).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
RMBUILD = [sys.executable, "-c", "import sys; from rmbuild.cli import main; sys.exit(main())"]
TARGETS = {"ls": 0.5, "ls --json": None, "ls --all": None, "prefix": 0.05, "gc --dry-run": 2.0}


def _blob(objects: Path, data: bytes) -> tuple[str, int]:
    digest = hashlib.sha256(data).hexdigest()
    path = objects / digest[:2] / digest[2:]
    if not path.exists():
        path.write_bytes(data)
        path.chmod(0o444)
    return digest, len(data)


def _metadata(i: int, log: str) -> dict:
    return {
        "rmbuild_version": "0.9.0",
        "model": f"model-{i % 50}",
        "target": f"t{i % 7}",
        "profile": "onnxruntime-cpu",
        "stage": "compile",
        "backend": "onnxruntime",
        "output_format": "ort",
        "spec_file": f"/work/models/model-{i % 50}/model.yaml",
        "parents": ["ab" * 32],
        "action_key": {
            "inputs": {"model": "cd" * 32},
            "argv": ["python", "-m", "onnxruntime.tools.convert", "--opt", "all", str(i)],
            "flags": {"opt_level": "all", "threads": 0},
            "tool": {"package": "onnxruntime", "version": "1.23.0", "digest": "ef" * 32},
            "toolchain": {"python": "3.11.9", "packages": {"onnxruntime": "1.23.0"}},
        },
        "argv": ["python", "-m", "onnxruntime.tools.convert", "--opt", "all"],
        "flags": {"opt_level": "all", "threads": 0},
        "runtime_flags": {"threads": 0},
        "toolchain": {"python": "3.11.9", "packages": {"onnxruntime": "1.23.0", "onnx": "1.17"}},
        "tool": {"package": "onnxruntime", "version": "1.23.0"},
        "fingerprint": {"isa": "avx2"},
        "started_at": "2026-11-27T10:00:00+00:00",
        "durations": {"tool_s": 1.234, "ingest_s": 0.01, "total_s": 1.3},
        "host": {"node": "ci-runner-3", "machine": "x86_64", "system": "Linux"},
        "log": log,
        "blobs": [log],
    }


def fill(root: Path, n: int, urls: list[str]) -> None:
    """N artifacts: blobs once, rows into every index of ``urls``."""
    from artifact_store import Store, index
    from artifact_store.records import FileEntry, Manifest

    objects = root / "objects"
    for i in range(256):
        (objects / f"{i:02x}").mkdir(parents=True, exist_ok=True)
    stores = [Store(root, url) for url in urls]
    start = datetime.now(UTC) - timedelta(days=30)
    batch: dict[str, list[dict]] = {"artifacts": [], "uses": [], "refs": [], "stats": []}

    def flush() -> None:
        if not batch["artifacts"]:
            return
        for store in stores:
            with store._write() as conn:
                conn.execute(index.artifacts.insert(), batch["artifacts"])
                conn.execute(index.artifact_uses.insert(), batch["uses"])
                conn.execute(index.artifact_blobs.insert(), batch["refs"])
                conn.execute(index.blob_stats.insert(), batch["stats"])
        for rows in batch.values():
            rows.clear()

    t0 = time.perf_counter()
    for i in range(n):
        files = {}
        for name, data in (
            ("model.onnx", f"weights of artifact {i}".encode() * 8),
            ("config.json", f'{{"artifact": {i}}}'.encode()),
        ):
            digest, size = _blob(objects, data)
            files[name] = FileEntry(digest, size, 0o644)
        manifest = Manifest.from_files(files)
        m_digest, m_size = _blob(objects, manifest.to_json())
        log, log_size = _blob(objects, f"build log of artifact {i}\n".encode())
        key = hashlib.sha256(f"key {i}".encode()).hexdigest()
        when = start + timedelta(seconds=i)
        batch["artifacts"].append(
            {
                "key": key,
                "manifest_digest": m_digest,
                "model": f"model-{i % 50}",
                "target": f"t{i % 7}",
                "backend": "onnxruntime",
                "created_at": when,
                "last_used_at": when,
                "size": manifest.size,
                "metadata": _metadata(i, log),
                "state": "ok",
                "problem": None,
            }
        )
        batch["uses"].append(
            {"key": key, "model": f"model-{i % 50}", "target": f"t{i % 7}", "first_used_at": when}
        )
        sizes = {m_digest: m_size, log: log_size, **{e.digest: e.size for e in files.values()}}
        for digest, size in sizes.items():
            batch["refs"].append({"key": key, "digest": digest, "size": size})
            st = os.stat(objects / digest[:2] / digest[2:])
            batch["stats"].append(
                {"digest": digest, "inode": st.st_ino, "mtime_ns": st.st_mtime_ns, "size": size}
            )
        if len(batch["artifacts"]) == 5000:
            flush()
            print(f"  {i + 1} artifacts, {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    flush()
    for store in stores:
        store.close()


def timed(cmd: list[str], env: dict[str, str], runs: int) -> tuple[float, float]:
    """Median wall seconds and median CPU seconds (user + sys of the process) of ``cmd``.

    CPU time is the steadier figure on a shared, loaded machine: waiting for a core is in
    the wall time only."""
    times, cpus = [], []
    for _ in range(runs):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        done = subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        times.append(time.perf_counter() - t0)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpus.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
        if done.returncode != 0:
            raise SystemExit(f"{' '.join(cmd[3:])} failed: {done.stderr.decode()[-2000:]}")
    return statistics.median(times), statistics.median(cpus)


def prefix_times(root: Path, url: str | None, runs: int) -> tuple[float, float]:
    """Median seconds of Store.resolve(prefix) now, and of the LIKE query it replaced."""
    import sqlalchemy as sa

    from artifact_store import Store, index

    keys = [hashlib.sha256(f"key {i}".encode()).hexdigest() for i in range(0, 1000, 37)]
    keys = [k for k in keys if k][: max(1, runs * 3)]
    with Store(root, url) as store:
        store.resolve(keys[0][:8])  # warm: connection, imports
        now = []
        for key in keys[: runs * 3]:
            t0 = time.perf_counter()
            assert store.resolve(key[:8]).key == key
            now.append(time.perf_counter() - t0)
        t = index.artifacts
        before = []
        with store._reads.connect() as conn:
            for key in keys[: runs * 3]:
                t0 = time.perf_counter()
                q = sa.select(t.c.key).where(t.c.key.startswith(key[:8], autoescape=True))
                q = q.order_by(t.c.created_at.desc(), t.c.key).limit(50)
                assert conn.execute(q).scalars().all() == [key]
                before.append(time.perf_counter() - t0)
    return statistics.median(now), statistics.median(before)


def bench(
    label: str, root: Path, url: str | None, runs: int, n: int
) -> list[tuple[str, str, float, float | None]]:
    env = {**os.environ, "RMBUILD_STORE": str(root), "PYTHONPATH": str(REPO)}
    env.pop("RMBUILD_INDEX_URL", None)
    if url:
        env["RMBUILD_INDEX_URL"] = url
    key = hashlib.sha256(f"key {n // 2}".encode()).hexdigest()
    runs_of = {
        "ls": ["ls", "--limit", "50"],
        "ls --all": ["ls", "--all"],
        "ls --json": ["ls", "--json"],
        "show <prefix>": ["show", key[:10]],
        "gc --dry-run": ["gc", "--dry-run"],
        "--help (startup)": ["--help"],
    }
    rows: list[tuple[str, str, float, float | None]] = [
        (label, what, *timed([*RMBUILD, *args], env, runs)) for what, args in runs_of.items()
    ]
    now, before = prefix_times(root, url, runs)
    rows.append((label, "prefix", now, None))
    rows.append((label, "prefix (LIKE, replaced)", before, None))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--pg-url", default=os.environ.get("RMBUILD_TEST_POSTGRES_URL"))
    ap.add_argument("--store", type=Path, help="reuse (or create) this store")
    args = ap.parse_args()
    root = args.store or Path(tempfile.mkdtemp(prefix="rmbuild-scale-")) / "store"
    pg = None
    if args.pg_url:
        import sqlalchemy as sa

        admin = sa.create_engine(args.pg_url, isolation_level="AUTOCOMMIT")
        marker = root / "pg-url.txt"
        if marker.exists():
            pg = marker.read_text().strip()
        else:
            name = f"bench_{uuid.uuid4().hex[:12]}"
            with admin.connect() as conn:
                conn.exec_driver_sql(f"CREATE DATABASE {name}")
            pg = sa.engine.make_url(args.pg_url).set(database=name).render_as_string(False)
    if not (root / "index.sqlite").exists():
        root.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        fill(root, args.n, [None, *([pg] if pg else [])])
        if pg:
            (root / "pg-url.txt").write_text(pg)
        print(f"filled {args.n} artifacts in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    rows = bench("sqlite", root, None, args.runs, args.n)
    if pg:
        rows += bench("postgresql", root, pg, args.runs, args.n)
    print(f"\n{args.n} artifacts, median of {args.runs} (whole processes; prefix in-process)\n")
    print("| index | what | wall | CPU | target | wall / target |")
    print("| --- | --- | --- | --- | --- | --- |")
    for label, what, seconds, cpu in rows:
        target = TARGETS.get(what.split(" <")[0])
        ratio = f"{seconds / target:.2f}×" if target else ""
        print(
            f"| {label} | {what} | {_fmt(seconds)} | {_fmt(cpu)} | "
            f"{'' if not target else f'≤ {target:g} s'} | {ratio} |"
        )


def _fmt(seconds: float | None) -> str:
    if seconds is None:
        return ""
    return f"{seconds * 1000:.1f} ms" if seconds < 1 else f"{seconds:.2f} s"


if __name__ == "__main__":
    main()
