"""Artifacts for the handoff tests: the example Llama built for real (ONNX export + ONNX
Runtime, and OpenVINO where asked) into a store of the session's own, from a copy of the
example's model folder (the vLLM bundle reads the source back and compares its digest)."""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "tiny-llama"
DEMO_PROMPT = "The future of AI is"
# What the example's artifact generates for the prompt (greedy, 32 tokens): README's demo.
DEMO_TEXT = (
    " small, fast and close to the people who use it. A model that runs on a local chip can "
    "answer a question without sending the words far away. It"
)
SPEC = """\
name: tiny-llama
source: {path: model}
targets:
  cpu: {profile: onnxruntime-cpu}
  openvino-cpu: {profile: openvino-cpu}
"""


@dataclass
class Built:
    root: Path
    spec: Path
    store: Path
    artifacts: dict[str, str]  # target -> artifact id

    def env(self) -> dict[str, str]:
        env = {**os.environ, "RMBUILD_STORE": str(self.store)}
        env.pop("RMBUILD_INDEX_URL", None)
        return env


def _build(root: Path, targets: list[str]) -> dict[str, str]:
    from artifact_store import Store
    from rmbuild.build.batch import compile_spec

    store = Store(root / "store")
    try:
        results = compile_spec(root / "model.yaml", targets, store=store)
        return {t: r.artifact.key for t, r in zip(targets, results, strict=True)}
    finally:
        store.close()


@pytest.fixture(scope="session")
def example(tmp_path_factory: pytest.TempPathFactory) -> Built:
    """The example model compiled for ONNX Runtime on the CPU (target ``cpu``)."""
    pytest.importorskip("onnxruntime")
    pytest.importorskip("optimum.exporters.onnx")
    root = tmp_path_factory.mktemp("handoff")
    (root / ".git").mkdir()  # the project's own profiles stop here; built-ins still found
    shutil.copytree(EXAMPLE / "model", root / "model")
    (root / "model.yaml").write_text(SPEC)
    artifacts = _build(root, ["cpu"])
    return Built(root, root / "model.yaml", root / "store", artifacts)


@pytest.fixture(scope="session")
def example_openvino(example: Built) -> Built:
    """The same project with its ``openvino-cpu`` target built too (ovc)."""
    pytest.importorskip("openvino")
    example.artifacts.update(_build(example.root, ["openvino-cpu"]))
    return example


@pytest.fixture
def store_of(example: Built, monkeypatch: pytest.MonkeyPatch) -> Built:
    """The example's store as this test's ``RMBUILD_STORE``."""
    monkeypatch.setenv("RMBUILD_STORE", str(example.store))
    monkeypatch.delenv("RMBUILD_INDEX_URL", raising=False)
    return example


@pytest.fixture
def demo() -> tuple[str, str]:
    """The example's demo prompt and its greedy 32-token text."""
    return DEMO_PROMPT, DEMO_TEXT
