"""Benchmark of the FuriosaAI RNGD path: toolchain install, cold vs warm-cache build, and a
cache hit, side by side in one run on the example's ``rngd`` target.

    python bench/bench_furiosa.py [--install] [--json]

* install (only with --install): ``rmbuild toolchain install furiosa`` into an empty
  ``RMBUILD_DATA_DIR`` (time and size; pip's download cache is whatever this machine has);
* cold:  ``rmbuild compile --target rngd`` into an empty store, the vendor's compiler cache
  empty (every kernel compiled by furiosa-tcc). Checked, not assumed: a ``--store`` that
  already holds the target's stages or a furiosa compiler cache is refused before the build,
  and the build itself must report every stage built and no compiler-cache file fed;
* warm:  the same build again with ``--rebuild`` (the tool runs again), fed the compiler-cache
  artifact the cold build stored (key: the compiler's identity; not in the build's key):
  checked too, the build must report cache files fed;
* hit:   ``rmbuild compile --target rngd`` once more: a cache hit, no tool and no process in the
  toolchain's environment.

Needs the furiosa toolchain (``rmbuild toolchain install furiosa``) and the aarch64 cross gcc.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "tiny-llama"
RMBUILD = str(Path(sys.executable).parent / "rmbuild")

SPEC = """\
name: tiny-llama
source: {{path: {model}, format: hf}}
targets:
  rngd:
    profile: furiosa-rngd
    flags:
      max_model_len: 256
      attention_buckets: "(1,128,128),(1,256,1)"
      tokenwise_buckets: "1,128"
      skip_bucket_validation: true
      sampler: false
"""


def _timed(argv: list[str], env: dict[str, str]) -> tuple[float, str]:
    t0 = time.perf_counter()
    done = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - t0
    if done.returncode != 0:
        sys.exit(f"failed ({done.returncode}): {' '.join(argv)}\n{done.stderr[-3000:]}")
    return seconds, done.stdout


def _compiler_cache_fed(store_root: str, key: str) -> int:
    """How many compiler-cache files the build of ``key`` was fed (its recorded metadata)."""
    from artifact_store import Store

    with Store(store_root) as store:
        record = store.get(key)
    if record is None:
        sys.exit(f"artifact {key} is not in the store {store_root}")
    fed = (record.metadata.get("compiler_cache") or {}).get("fed") or {}
    return int(fed.get("fed") or 0)


def _refuse_unless_cold(spec: Path, env: dict[str, str]) -> None:
    """Exit unless the next ``rngd`` build is cold: no stage stored, no furiosa compiler cache."""
    plan = json.loads(
        _timed([RMBUILD, "compile", str(spec), "--target", "rngd", "--plan", "--json"], env)[1]
    )
    stored = [
        f"{s['profile']} ({s['local']})"
        for t in plan["targets"]
        for s in t["stages"]
        if s["local"] in ("hit", "corrupt")
    ]
    rows = json.loads(_timed([RMBUILD, "ls", "--all", "--json"], env)[1])
    caches = [
        r["id"][:12]
        for r in rows
        if r.get("target") == "compiler-cache" and r.get("backend") == "furiosa"
    ]
    if stored or caches:
        sys.exit(
            f"not a cold build: the store {env['RMBUILD_STORE']} already holds "
            + "; ".join(
                ([f"stages {', '.join(stored)}"] if stored else [])
                + ([f"furiosa compiler cache {', '.join(caches)}"] if caches else [])
            )
            + ". Run without --store (a fresh temp store), or give an empty one."
        )


def _dir_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--install", action="store_true", help="also time a fresh install")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--store", help="store to build in (default: a temp one, removed)")
    args = parser.parse_args()
    results: dict[str, object] = {}
    with tempfile.TemporaryDirectory(prefix="bench-furiosa-") as tmp_str:
        tmp = Path(tmp_str)
        env = {**os.environ, "RMBUILD_STORE": args.store or str(tmp / "store")}
        if args.install:
            data = tmp / "data"
            seconds, _ = _timed(
                [RMBUILD, "toolchain", "install", "furiosa"], {**env, "RMBUILD_DATA_DIR": str(data)}
            )
            results["install_s"] = round(seconds, 1)
            results["install_bytes"] = _dir_size(data / "toolchains" / "furiosa")
        project = tmp / "project"
        (project / ".git").mkdir(parents=True)  # stop the profile search here
        shutil.copytree(EXAMPLE / "model", project / "model")
        spec = project / "model.yaml"
        spec.write_text(SPEC.format(model="model"))
        build = [RMBUILD, "compile", str(spec), "--target", "rngd", "--json"]
        _refuse_unless_cold(spec, env)
        cold, out = _timed(build, env)
        built = json.loads(out)[0]
        artifact = built["artifact"]
        hits = [s["profile"] for s in built["stages"] if s["hit"]]
        if hits:
            sys.exit(f"not a cold build: stages {', '.join(hits)} were cache hits")
        fed = _compiler_cache_fed(env["RMBUILD_STORE"], artifact)
        if fed:
            sys.exit(f"not a cold build: it was fed {fed} compiler-cache files")
        results["cold_s"] = round(cold, 1)
        # Internal artifacts (the compiler cache) are listed with --target naming theirs.
        rows = json.loads(_timed([RMBUILD, "ls", "--json", "--target", "compiler-cache"], env)[1])
        caches = [r for r in rows if r.get("target") == "compiler-cache"]
        results["compiler_cache_bytes"] = caches[0]["size"] if caches else 0
        warm, out = _timed([*build, "--rebuild"], env)
        assert json.loads(out)[0]["artifact"] == artifact  # same key: the cache is not in it
        fed = _compiler_cache_fed(env["RMBUILD_STORE"], artifact)
        if not fed:
            sys.exit("not a warm build: the --rebuild was fed no compiler cache")
        results["warm_s"] = round(warm, 1)
        results["warm_cache_files_fed"] = fed
        hit, out = _timed(build, env)
        assert json.loads(out)[0]["hit"]
        results["hit_s"] = round(hit, 2)
        show = json.loads(_timed([RMBUILD, "show", artifact, "--json"], env)[1])
        files = show["files"]
        results["fxb_bytes"] = files["model.fxb"]["size"]
        results["edf_kernels"] = len(show["details"].get("edf_files", []))
        results["artifact"] = artifact
    if args.json:
        print(json.dumps(results, indent=1))
        return
    for name, value in results.items():
        print(f"{name:22} {value}")


if __name__ == "__main__":
    main()
