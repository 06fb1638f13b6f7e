"""The loader refuses what is no model before any backend looks at it."""

from __future__ import annotations

from pathlib import Path

import pytest


def test_running_a_compiler_cache_says_it_is_internal_not_a_model(
    store_dir: Path,
    tmp_path: Path,
    cli,  # noqa: ANN001
) -> None:
    """It used to reach the furiosa backend, which said the artifact was an .fxb to serve."""
    from artifact_store import Store

    src = tmp_path / "cache"
    src.mkdir()
    (src / "kernel-0.edf").write_bytes(b"compiled kernel")
    key = "cc" * 32
    with Store(store_dir) as store:
        store.commit(
            key,
            store.put_tree(src),
            model="furiosa-compiler-cache",
            target="compiler-cache",
            backend="furiosa",
            metadata={"kind": "compiler-cache", "profile": "furiosa-rngd"},
        )
    r = cli("run", "-a", key[:12])
    r.assert_failure(6)
    assert "error[artifact-not-runnable]" in r.err
    assert "internal compiler-cache artifact, not runnable" in r.err
    assert ".fxb" not in r.err and "furiosa-llm serve" not in r.err


def test_the_python_api_refuses_it_too(store_dir: Path, tmp_path: Path) -> None:
    import rmbuild
    from artifact_store import Store
    from rmbuild.errors import ArtifactNotRunnable

    src = tmp_path / "cache"
    src.mkdir()
    (src / "timing.cache").write_bytes(b"tactics")
    with Store(store_dir) as store:
        store.commit(
            "dd" * 32,
            store.put_tree(src),
            model="tensorrt-compiler-cache",
            target="compiler-cache",
            backend="tensorrt",
            metadata={"kind": "compiler-cache"},
        )
    with pytest.raises(ArtifactNotRunnable, match="not runnable"):
        rmbuild.load("dd" * 32, store=store_dir)
