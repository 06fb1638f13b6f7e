"""OCI remote pull throughput: `OCIRemote.pull` vs `oras pull` of the same artifact, same run.

    pip install oras    # the bench's baseline only: the ORAS Python SDK (oras-py)
    python bench/bench_oci.py [--size 512MiB] [--files 4] [--repeat 3] [--jobs 8]

Debian's docker-registry (``bash .ci/registry.sh`` installs it) runs on a free loopback port
with its storage in a temp folder. An artifact of ``--size`` random bytes in ``--files`` files
is committed to a fresh store and pushed with ``OCIRemote.push`` (its layers carry the OCI title
annotation, so ``oras pull`` writes the same files). Each round, in alternating order:

* rmbuild: ``OCIRemote.pull`` into an empty store, opened before the clock starts (download,
  SHA-256 of every blob, fsync, install, commit);
* oras:    ``OrasClient.pull`` of the same tag into an empty folder (no digest check, no fsync).

Prints the median seconds, MiB/s and the throughput ratio (rmbuild / oras; the target is
>= 0.8). Also the push, and a re-push's uploaded blobs (0). Wall-clock, noisy on a shared host.
"""

from __future__ import annotations

import argparse
import http.client
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
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


def start_registry(work: Path) -> tuple[subprocess.Popen, str]:
    binary = os.environ.get("RMBUILD_TEST_REGISTRY") or "/usr/bin/docker-registry"
    if not os.access(binary, os.X_OK):
        raise SystemExit(f"{binary} missing: bash .ci/registry.sh installs it")
    port = free_port()
    config = work / "registry.yml"
    config.write_text(
        "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\n"
        f"storage:\n  filesystem:\n    rootdirectory: {work / 'registry'}\n"
        f"http:\n  addr: 127.0.0.1:{port}\n"
    )
    proc = subprocess.Popen(  # noqa: S603 - fixed argv
        [binary, "serve", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
            conn.request("GET", "/v2/")
            if conn.getresponse().status == 200:
                return proc, f"127.0.0.1:{port}"
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise SystemExit("the registry did not start")


def make_artifact(store, work: Path, size: int, files: int) -> str:  # noqa: ANN001
    src = work / "src"
    src.mkdir()
    each = size // files
    for i in range(files):
        with open(src / f"engine-{i}.bin", "wb") as f:
            left = each
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
    ap.add_argument("--size", default="512MiB", help="artifact size (default 512MiB)")
    ap.add_argument("--files", type=int, default=4, help="files (layers) it is split into")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--jobs", type=int, default=8, help="rmbuild's parallel transfers")
    args = ap.parse_args()
    size = parse_size(args.size)

    try:
        import oras.client
    except ImportError:
        raise SystemExit("the baseline needs oras-py: pip install oras") from None

    from artifact_store import Store
    from artifact_store.oci import OCIRemote

    work = Path(tempfile.mkdtemp(prefix="bench-oci-"))
    proc, host = start_registry(work)
    url = f"oci://{host}/bench/model"
    rows: dict[str, list[float]] = {"rmbuild": [], "oras": []}
    try:
        with Store(work / "a") as store:
            key = make_artifact(store, work, size, args.files)
            t0 = time.perf_counter()
            OCIRemote(url, jobs=args.jobs).push(store, [key])
            push_s = time.perf_counter() - t0
            repush = OCIRemote(url, jobs=args.jobs).push(store, [key])
        oras_client = oras.client.OrasClient(hostname=host, insecure=True)
        for i in range(args.repeat):
            for who in ("rmbuild", "oras") if i % 2 == 0 else ("oras", "rmbuild"):
                out = work / f"{who}-{i}"
                if who == "rmbuild":
                    with Store(out) as fresh:  # an empty store, opened before the clock starts
                        t0 = time.perf_counter()
                        OCIRemote(url, jobs=args.jobs).pull(fresh, key)
                        rows[who].append(time.perf_counter() - t0)
                else:
                    t0 = time.perf_counter()
                    got = oras_client.pull(target=f"{host}/bench/model:{key}", outdir=str(out))
                    rows[who].append(time.perf_counter() - t0)
                    assert len(got) == args.files, got
                shutil.rmtree(out)
    finally:
        proc.terminate()
        proc.wait()
        shutil.rmtree(work, ignore_errors=True)

    mib = size / 2**20
    med = {k: statistics.median(v) for k, v in rows.items()}
    print(
        f"artifact {mib:.0f} MiB in {args.files} files, {args.repeat} rounds, median; "
        f"docker-registry 2.8 on loopback; {os.cpu_count()} CPUs"
    )
    print(f"{'step':<46}{'seconds':>9}{'MiB/s':>9}")
    print(f"{'rmbuild push (OCIRemote.push)':<46}{push_s:>9.2f}{mib / push_s:>9.0f}")
    print(f"re-push of the unchanged artifact: {repush.blobs} blobs, {repush.bytes} bytes uploaded")
    print(f"{'rmbuild pull (OCIRemote.pull, verified)':<46}{med['rmbuild']:>9.2f}"
          f"{mib / med['rmbuild']:>9.0f}")  # fmt: skip
    print(
        f"{'oras pull (oras-py OrasClient.pull)':<46}{med['oras']:>9.2f}{mib / med['oras']:>9.0f}"
    )
    print(f"throughput ratio rmbuild / oras pull: {med['oras'] / med['rmbuild']:.2f}x")


if __name__ == "__main__":
    main()
