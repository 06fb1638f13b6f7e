"""The example's CPU targets, built once for every test of this folder that needs a real
artifact (CPU is scarce: one onnx-export shared by ONNX Runtime, OpenVINO and IREE)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "tiny-llama"
# The example's targets that run on this CPU, and the runtime each one runs on.
EXAMPLE_TARGETS = {"cpu": "onnxruntime", "openvino-cpu": "openvino", "iree-cpu": "iree"}
ALIAS = "tiny-llama-main"


@dataclass
class ExampleStore:
    store: Any  # artifact_store.Store
    root: Path
    keys: dict[str, str]  # target -> artifact id


def needs_toolchains() -> None:
    for module in ("torch", "transformers", "optimum.exporters.onnx", "onnxruntime"):
        pytest.importorskip(module)
    pytest.importorskip("openvino")
    pytest.importorskip("iree.runtime")
    pytest.importorskip("iree.compiler")


@pytest.fixture(scope="session")
def example_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ExampleStore]:
    needs_toolchains()
    from artifact_store import Store
    from rmbuild.build import compile_spec

    root = tmp_path_factory.mktemp("hf-example")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RMBUILD_CONFIG_DIR", str(root / "config"))
        store = Store(root / "store")
        results = compile_spec(EXAMPLE / "model.yaml", list(EXAMPLE_TARGETS), store=store)
        keys = {r.target: r.artifact.key for r in results}
        store.tag(ALIAS, keys["cpu"])
        yield ExampleStore(store, root / "store", keys)
        store.close()
