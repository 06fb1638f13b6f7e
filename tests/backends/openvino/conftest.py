"""Shared fixtures: one store with the tiny Llama exported and converted by the real ``ovc``.

Export (~4 s) and conversion (~1 s each) run once per test session; every OpenVINO test reads
the same artifacts. The PyTorch reference (greedy tokens, first-step logits) is computed here too,
from the same model folder, with transformers.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:  # Numpy comes with the extras; collection must not need it
    import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[3]
MODEL_DIR = REPO_ROOT / "examples" / "tiny-llama" / "model"
PROMPT = "The future of AI is"
MAX_TOKENS = 32

MODEL_YAML = f"""\
name: tiny-llama
source:
  path: {MODEL_DIR}
  format: hf
targets:
  ov:
    profile: openvino-cpu
  ov32:
    profile: openvino-cpu
    flags:
      compress_to_fp16: false
"""


@dataclass(frozen=True)
class Built:
    store: object  # artifact_store.Store
    spec_path: Path
    keys: dict[str, str]  # target -> artifact key
    results: dict[str, object]  # target -> BuildResult


@dataclass(frozen=True)
class Reference:
    prompt_ids: list[int]
    tokens: list[int]
    text: str
    first_logits: np.ndarray  # logits after the prompt, [vocab]


@pytest.fixture(scope="session")
def built(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Built]:
    pytest.importorskip("openvino")
    if importlib.util.find_spec("optimum") is None:  # the ONNX export stage runs optimum-cli
        pytest.skip("optimum-onnx is not installed (pip install 'rmbuild[onnx]')")
    from artifact_store import Store
    from rmbuild.build import build
    from rmbuild.declare.spec import load_model_spec

    root = tmp_path_factory.mktemp("ov_build")
    spec_path = root / "model.yaml"
    spec_path.write_text(MODEL_YAML)
    store = Store(root / "store")
    spec = load_model_spec(spec_path)
    results = {target: build(spec, target, store=store) for target in ("ov", "ov32")}
    yield Built(store, spec_path, {t: r.artifact.key for t, r in results.items()}, results)
    store.close()


@pytest.fixture(scope="session")
def reference() -> Reference:
    """Greedy tokens and first-step logits from PyTorch on the source model."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    from rmbuild.runtime.tokenizer import Tokenizer

    tokenizer = Tokenizer(MODEL_DIR)
    prompt_ids = tokenizer.encode(PROMPT)
    model = transformers.AutoModelForCausalLM.from_pretrained(MODEL_DIR, torch_dtype=torch.float32)
    model.eval()
    ids = torch.tensor([prompt_ids], dtype=torch.long)
    with torch.no_grad():
        first = model(input_ids=ids).logits[0, -1].numpy()
        out = model.generate(
            ids,
            attention_mask=torch.ones_like(ids),
            max_new_tokens=MAX_TOKENS,
            do_sample=False,
            pad_token_id=model.config.eos_token_id,
        )
    tokens = out[0, len(prompt_ids) :].tolist()
    eos = model.config.eos_token_id
    eos_ids = set(eos if isinstance(eos, list) else [eos])
    if cut := [i for i, t in enumerate(tokens) if t in eos_ids]:
        tokens = tokens[: cut[0]]  # the session stops at EOS and does not yield it
    return Reference(prompt_ids, tokens, tokenizer.decode(tokens), first)
