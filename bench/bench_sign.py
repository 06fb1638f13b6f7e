"""Signing overhead on a 1 GiB artifact, against hashing it alone (same run).

    python bench/bench_sign.py [--size-mib 1024] [--runs 2]

Writes one file of random bytes (random, so no filesystem shortcut for zeros) into a temp dir,
stores it as a one-file artifact of a temp store, then times, round-robin --runs times, best
of each:

* ``hash``: SHA-256 of the file (``artifact_store.hashing.hash_path``), what a store pays to
  ingest, pull or ``verify`` it: the baseline;
* ``rmbuild sign``: :func:`rmbuild.trust.signatures.sign` on the stored artifact: the store's
  integrity check, an OMS bundle over the stored digests, kept beside it (no file read again);
* ``model_signing sign``: the ``model-signing`` library signing the same folder by itself
  (it hashes the file, then signs): what signing costs without a store's digests;
* ``rmbuild verify --signature``: a re-hash of every file (what ``verify`` does) and the
  signature judged against the digests.

The file stays in the page cache (24 GiB machine), so every hash reads memory: the ratio is
the figure to read. Prints one JSON object and a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def _write_random(path: Path, size: int) -> None:
    chunk = 64 * 1024 * 1024
    with open(path, "wb") as f:
        left = size
        while left > 0:
            n = min(chunk, left)
            f.write(os.urandom(n))
            left -= n


def _key(folder: Path) -> tuple[Path, Path]:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    private, public = folder / "key.pem", folder / "key.pub"
    private.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    public.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return private, public


def _timed(fn) -> float:  # noqa: ANN001
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--runs", type=int, default=2)
    args = parser.parse_args()

    import model_signing

    from artifact_store import Store
    from artifact_store.hashing import hash_path
    from rmbuild.trust import oms, signatures

    top = Path(tempfile.mkdtemp(prefix="rmbuild-bench-sign-"))
    try:
        model = top / "model"
        model.mkdir()
        blob = model / "model.bin"
        _write_random(blob, args.size_mib * 1024 * 1024)
        private, public = _key(top)
        key = oms.SigningKey(private)
        root = oms.TrustRoot.load(public)
        with Store(top / "store") as store:
            manifest = store.put_tree(model)
            record = store.commit(
                "a" * 64, manifest, model="bench", target="t", backend="b", metadata={}
            )
            stored = store.blob_path(manifest.files["model.bin"].digest)
            ms_config = model_signing.signing.Config().use_elliptic_key_signer(private_key=private)
            names = ("hash", "rmbuild", "library", "verify")
            times: dict[str, list[float]] = {k: [] for k in names}
            for run in range(args.runs):
                times["hash"].append(_timed(lambda: hash_path(stored)))
                times["rmbuild"].append(_timed(lambda: signatures.sign(store, record, key=key)))
                sig = top / f"model-{run}.sig"
                times["library"].append(_timed(lambda sig=sig: ms_config.sign(model, sig)))

                def verify() -> None:
                    assert not store.check(record, rehash=True, repair=False)
                    assert signatures.judge_stored(store, record, root).trusted is not None

                times["verify"].append(_timed(verify))
    finally:
        shutil.rmtree(top, ignore_errors=True)
    best = {k: min(v) for k, v in times.items()}
    out = {
        "size_mib": args.size_mib,
        "runs": args.runs,
        "seconds": {k: round(v, 4) for k, v in best.items()},
        "ratio_to_hash": {k: round(v / best["hash"], 4) for k, v in best.items()},
    }
    print(json.dumps(out, indent=2))
    rows = [
        ("SHA-256 of the file (baseline)", "hash"),
        ("`rmbuild sign` (stored digests, no file read)", "rmbuild"),
        ("model-signing signing the folder itself (hash + sign)", "library"),
        ("`rmbuild verify --signature` (re-hash + judge)", "verify"),
    ]
    print("\n| what, 1 GiB artifact, best of runs | seconds | × hash |\n| --- | --- | --- |")
    for label, name in rows:
        print(f"| {label} | {best[name]:.3f} | {best[name] / best['hash']:.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
