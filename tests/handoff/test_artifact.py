"""The artifact as the bundles read it: the compiled context limit and the precision, from its
files alone (no runtime loaded)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace

from rmbuild.handoff.artifact import Artifact, precision
from rmbuild.runtime.kvlayout import InputSpec, KVLayout


def _artifact(
    tmp_path: Path,
    files: dict[str, str],
    backend: str = "onnxruntime",
    **md,  # noqa: ANN003
) -> Artifact:
    tree = tmp_path / "tree"
    tree.mkdir(parents=True, exist_ok=True)
    for rel, text in files.items():
        (tree / rel).write_text(text)
    record = SimpleNamespace(
        key="ef" * 32,
        model="m",
        target="t",
        backend=backend,
        manifest_digest="0" * 64,
        created_at=datetime(2026, 11, 30, tzinfo=UTC),
        metadata=md,
    )
    store = SimpleNamespace(get=lambda _key: None, root=tmp_path)
    return Artifact(record, tree, dict.fromkeys(files, "x"), store)  # type: ignore[arg-type]


def test_the_compiled_limit_is_read_from_the_files(tmp_path: Path) -> None:
    static = KVLayout(
        (
            InputSpec("input_ids", "int64", (1, 1)),
            InputSpec("attention_mask", "int64", (1, 512)),
            InputSpec("past_key_values.0.key", "float16", (1, 2, 511, 32)),
        ),
        ("logits", "present.0.key"),
    )
    art = _artifact(
        tmp_path,
        {
            "kv_layout.json": json.dumps(static.to_json()),
            "rbln_config.json": json.dumps({"max_seq_len": 1024}),
            "config.json": json.dumps({"model_type": "llama", "max_position_embeddings": 4096}),
        },
    )
    bound = art.compiled_bound()
    assert bound is not None and bound.value == 512 and "attention_mask" in bound.source
    assert art.context_limit().value == 512
    assert precision(art) == "float16"  # the graph's KV cache, not config.json
    trt = _artifact(
        tmp_path / "trt",
        {"config.json": json.dumps({"model_type": "llama", "max_position_embeddings": 4096})},
        backend="tensorrt",
        flags={"max_seq": 300},
    )
    assert trt.context_limit().value == 300
