"""Every backend generates the same text: PyTorch, ONNX Runtime, OpenVINO (C API), IREE (CPU).

For two architectures (the example Llama, and a GPT-2 made here the same way) and a fixed
prompt, greedy tokens over 32 steps are identical, and the first step's logits agree with
PyTorch within a tolerance that accounts for OpenVINO's FP16 weight compression.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

# Extras only through importorskip, so the module collects and skips without them.
pytest.importorskip("onnxruntime")
pytest.importorskip("openvino")
pytest.importorskip("iree.runtime")
torch = pytest.importorskip("torch")
np = pytest.importorskip("numpy")

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "tiny-llama"
PROMPT = "The future of AI is"
STEPS = 32

# target -> (profile, max |logit - torch| on the first step)
TARGETS = {
    "ort": ("onnxruntime-cpu", 1e-4),
    "openvino": ("openvino-cpu", 5e-2),  # FP16 weights (ovc's default) move logits ~1e-2
    "openvino-fp32": ("openvino-cpu", 1e-4),
    "iree": ("iree-cpu", 1e-3),
}


def _make_model_module():  # noqa: ANN202
    spec = importlib.util.spec_from_file_location("make_model", EXAMPLE / "make_model.py")
    module = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module", params=["llama", "gpt2"])
def model_dir(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    if request.param == "llama":
        return EXAMPLE / "model"
    out = tmp_path_factory.mktemp("gpt2") / "model"
    return _make_model_module().make_model(out, arch="gpt2", steps=100, seed=0)


@pytest.fixture(scope="module")
def reference(model_dir: Path) -> tuple[list[int], list[int], np.ndarray]:
    """Prompt ids, greedy tokens and first-step logits from PyTorch (EOS not honoured)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    prompt = tok(PROMPT, return_token_type_ids=False)["input_ids"]
    ids = torch.tensor([prompt])
    with torch.no_grad():
        first = model(ids).logits[0, -1].numpy()
        tokens, past, step = [], None, ids
        for _ in range(STEPS):
            out = model(step, past_key_values=past, use_cache=True)
            past = out.past_key_values
            token = int(out.logits[0, -1].argmax())
            tokens.append(token)
            step = torch.tensor([[token]])
    return prompt, tokens, first


@pytest.fixture(scope="module")
def built(model_dir: Path, tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201
    from artifact_store import Store
    from rmbuild.build import compile_spec

    root = tmp_path_factory.mktemp("parity")
    spec = root / "model.yaml"
    lines = ["name: parity", f"source: {{path: {model_dir}}}", "targets:"]
    for name, (profile, _) in TARGETS.items():
        flags = " {compress_to_fp16: false}" if name == "openvino-fp32" else " {}"
        lines.append(f"  {name}: {{profile: {profile}, flags:{flags}}}")
    spec.write_text("\n".join(lines) + "\n")
    store = Store(root / "store")
    results = {r.target: r.artifact.key for r in compile_spec(spec, store=store)}
    yield store, results
    store.close()


@pytest.mark.parametrize("target", list(TARGETS))
def test_backends_agree_with_pytorch(target: str, built, reference) -> None:  # noqa: ANN001
    from rmbuild.loading import load

    store, keys = built
    prompt, tokens, first = reference
    with load(keys[target], store=store) as session:
        assert session.tokenizer.encode(PROMPT) == prompt
        session.eos_token_ids = set()  # compare all 32 steps, like the reference
        assert list(session.generate_ids(prompt, STEPS)) == tokens
        session.step_fn.reset()
        logits = np.asarray(session.step_fn.step(np.asarray(prompt, dtype=np.int64)))
    tolerance = TARGETS[target][1]
    assert np.abs(logits.astype(np.float64) - first).max() < tolerance


@pytest.mark.parametrize("together", [False, True], ids=["prefilled-alone", "prefilled-together"])
@pytest.mark.parametrize("target", list(TARGETS))
def test_batched_rows_decode_as_they_would_alone(target: str, together: bool, built) -> None:  # noqa: ANN001
    """Continuous batching (what `rmbuild serve` runs) on every CPU runtime: sequences of
    different lengths, left-padded into one batch, give each its own greedy tokens, whether
    each prompt ran alone or all of them in one left-padded pass (requests that arrive
    together)."""
    from rmbuild.loading import load
    from rmbuild.runtime.batching import Batch

    store, keys = built
    prompts = ["The future of AI is", "A", "Compilers are fast and", "The"]
    with load(keys[target], store=store) as session:
        step = session.step_fn
        assert step.batchable
        alone = []
        for p in prompts:
            session.eos_token_ids = set()
            alone.append(list(session.generate_ids(session.tokenizer.encode(p), 8)))
        batch, rows, out = Batch(step), [], []
        if together:
            first, states = batch.prefill([session.tokenizer.encode(p) for p in prompts])
            for logits, state in zip(first, states, strict=True):
                out.append([int(np.argmax(logits))])
                rows.append(batch.add(state))
        for p in prompts if not together else []:
            step.reset()
            logits = step.step(np.asarray(session.tokenizer.encode(p), dtype=np.int64))
            out.append([int(np.argmax(logits))])
            rows.append(batch.add(step.snapshot()))
        for _ in range(7):
            logits = batch.step([o[-1] for o in out])
            for i, o in enumerate(out):
                o.append(int(np.argmax(logits[i])))
    assert out == alone
