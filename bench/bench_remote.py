"""Remote cache throughput: `push`/`pull` of one big artifact vs boto3 on the same object.

    python bench/bench_remote.py [--size 1GiB] [--repeat 3] [--jobs 8]

An S3-compatible server (moto's, in its own process, on loopback) holds a bucket; an artifact
of ``--size`` random bytes is committed to a fresh store. Each round, in the same run and on
the same server:

* push:  ``Remote.push`` of the artifact (a fresh prefix each round, so everything is sent)
         vs boto3 ``upload_file`` of the same file (what ``aws s3 cp`` does: TransferManager,
         multipart, 10 threads);
* pull:  ``Remote.pull`` into an empty store (download, digest check, install, commit) vs boto3
         ``download_file`` of the same object to a file (no digest check).

Both baselines run twice: with the defaults ``aws s3 cp`` uses (8 MiB parts, 10 threads), and
with rmbuild's own part size and thread count (``--jobs``, 16 MiB parts), since moto answers a
range GET by reading the whole object, so the number of ranges weighs more there than on S3.

Prints the median seconds, MiB/s and the ratio (rmbuild throughput / boto3 throughput; the
issue's target is >= 0.8). Timings are wall-clock and noisy on a shared machine.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def parse_size(text: str) -> int:
    units = {"k": 1024, "m": 1024**2, "g": 1024**3}
    t = text.strip().lower().removesuffix("ib").removesuffix("b")
    return int(float(t[:-1]) * units[t[-1]]) if t and t[-1] in units else int(t)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server() -> tuple[subprocess.Popen, str]:
    port = free_port()
    proc = subprocess.Popen(  # noqa: S603 - fixed argv
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return proc, f"http://127.0.0.1:{port}"
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise SystemExit("moto server did not start")


def make_artifact(store, work: Path, size: int) -> str:  # noqa: ANN001
    src = work / "src"
    src.mkdir()
    with open(src / "engine.bin", "wb") as f:
        left = size
        while left:
            n = min(left, 64 << 20)
            f.write(os.urandom(n))
            left -= n
    manifest = store.put_tree(src, move=True)
    key = "be" + "0" * 62
    store.commit(key, manifest, model="bench", target="big", backend="none", metadata={})
    return key


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", default="256MiB", help="artifact size (default 256MiB; 1GiB)")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--jobs", type=int, default=8, help="rmbuild's parallel transfers")
    args = ap.parse_args()
    size = parse_size(args.size)

    import boto3
    from boto3.s3.transfer import TransferConfig

    from artifact_store import Store
    from artifact_store.remote import Remote
    from artifact_store.transfer import PART_SIZE

    proc, endpoint = start_server()
    work = Path(tempfile.mkdtemp(prefix="bench-remote-"))
    os.environ.update(
        AWS_ACCESS_KEY_ID="bench",
        AWS_SECRET_ACCESS_KEY="bench-secret",
        AWS_DEFAULT_REGION="us-east-1",
        AWS_ENDPOINT_URL=endpoint,
    )
    try:
        s3 = boto3.client("s3")
        s3.create_bucket(Bucket="bench")
        cfg = TransferConfig()  # the defaults `aws s3 cp` uses: 8 MiB parts, 10 threads
        with Store(work / "a") as store:
            key = make_artifact(store, work, size)
            digest = store.get_manifest(store.get(key).manifest_digest).files["engine.bin"].digest
            blob = str(store.blob_path(digest))
            matched = TransferConfig(
                multipart_threshold=2 * PART_SIZE,
                multipart_chunksize=PART_SIZE,
                max_concurrency=args.jobs,
            )
            rows: dict[str, list[float]] = {
                k: [] for k in ("push", "put", "put=", "pull", "get", "get=")
            }
            for i in range(args.repeat):
                prefix = f"round{i}-{uuid.uuid4().hex[:6]}"
                remote = Remote(f"s3://bench/{prefix}", jobs=args.jobs)
                t0 = time.perf_counter()
                remote.push(store, [key])
                rows["push"].append(time.perf_counter() - t0)
                t0 = time.perf_counter()
                s3.upload_file(blob, "bench", f"{prefix}/baseline.bin", Config=cfg)
                rows["put"].append(time.perf_counter() - t0)
                t0 = time.perf_counter()
                s3.upload_file(blob, "bench", f"{prefix}/matched.bin", Config=matched)
                rows["put="].append(time.perf_counter() - t0)
                with Store(work / f"b{i}") as fresh:
                    t0 = time.perf_counter()
                    remote.pull(fresh, key)
                    rows["pull"].append(time.perf_counter() - t0)
                shutil.rmtree(work / f"b{i}")
                out = work / "baseline.out"
                t0 = time.perf_counter()
                s3.download_file("bench", f"{prefix}/baseline.bin", str(out), Config=cfg)
                rows["get"].append(time.perf_counter() - t0)
                out.unlink()
                t0 = time.perf_counter()
                s3.download_file("bench", f"{prefix}/matched.bin", str(out), Config=matched)
                rows["get="].append(time.perf_counter() - t0)
                out.unlink()
                # Keep the server's memory flat: drop this round's objects.
                for page in s3.get_paginator("list_objects_v2").paginate(Bucket="bench"):
                    for obj in page.get("Contents", []):
                        s3.delete_object(Bucket="bench", Key=obj["Key"])
    finally:
        proc.terminate()
        proc.wait()
        shutil.rmtree(work, ignore_errors=True)

    mib = size / 2**20
    med = {k: statistics.median(v) for k, v in rows.items()}
    print(f"artifact {mib:.0f} MiB, {args.repeat} rounds, median; moto server on loopback")
    print(f"{'step':<38}{'seconds':>9}{'MiB/s':>9}")
    for label, k in (
        ("rmbuild push (Remote.push)", "push"),
        ("boto3 upload_file (aws s3 cp)", "put"),
        ("boto3 upload_file, rmbuild's parts", "put="),
        ("rmbuild pull (Remote.pull, verified)", "pull"),
        ("boto3 download_file (aws s3 cp)", "get"),
        ("boto3 download_file, rmbuild's parts", "get="),
    ):
        print(f"{label:<38}{med[k]:>9.2f}{mib / med[k]:>9.0f}")
    for ours, theirs, what in (
        ("push", "put", "push / upload_file (aws s3 cp defaults)"),
        ("push", "put=", "push / upload_file (same parts, threads)"),
        ("pull", "get", "pull / download_file (aws s3 cp defaults)"),
        ("pull", "get=", "pull / download_file (same parts, threads)"),
    ):
        print(f"throughput ratio {what:<44}{med[theirs] / med[ours]:.2f}x")


if __name__ == "__main__":
    main()
