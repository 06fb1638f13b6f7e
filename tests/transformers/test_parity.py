"""transformers' generate() over rmbuild's artifacts gives PyTorch's tokens, on every CPU runtime.

For the example (its targets ``cpu``, ``openvino-cpu`` and ``iree-cpu``) and six architectures
made here with random weights (``tests/runtime/test_architectures.py``'s helpers: one
onnx-export per architecture, run by ONNX Runtime, converted to OpenVINO IR at fp32 and
compiled by IREE), ``RmbuildModelForCausalLM.generate`` and PyTorch's
``AutoModelForCausalLM.generate`` get the same inputs and must give the same tokens (greedy,
beam search, a left-padded batch), and one forward's logits (every prompt position, then one
cached step) agree within the runtime's tolerance: 1e-4 for ONNX Runtime and OpenVINO at fp32,
5e-2 for OpenVINO's default FP16 weights, 1e-3 for IREE (as in tests/test_parity.py); gemma2's
export is 1e-3 from PyTorch on every runtime (EXPORT_BOUND).
The example also runs the rest of generate()'s surface on ONNX Runtime against PyTorch.
"""

from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.runtime.test_architectures import ARCHS, PROMPT_IDS, _make_model, _spec
from tests.transformers.conftest import EXAMPLE, ExampleStore, needs_toolchains

pytestmark = pytest.mark.slow

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

RUNTIMES = ("onnxruntime", "openvino", "iree")
# The architectures' targets: the onnx-export (ONNX Runtime runs it), OpenVINO at fp32, IREE.
ARCH_TARGETS = {
    "onnxruntime": "{profile: onnx-export}",
    "openvino": "{profile: openvino-cpu, flags: {compress_to_fp16: false}}",
    "iree": "{profile: iree-cpu}",
}
TOLERANCE = {"onnxruntime": 1e-4, "openvino": 1e-4, "iree": 1e-3}
FP16_TOLERANCE = 5e-2  # OpenVINO's default FP16 weight compression (the example's openvino-cpu)
# Learned positions (gpt2), positions from the mask (opt), ALiBi without position ids (bloom),
# one KV head (falcon), grouped KV heads with biases (qwen2), sliding-window layers that
# PyTorch caches apart (gemma2).
ARCH_NAMES = ("gpt2", "opt", "bloom", "falcon", "qwen2", "gemma2")
# gemma2's export itself is 6.2e-4 from PyTorch at fp32 (PyTorch at fp32 is 2.8e-6 from fp64),
# the same on ONNX Runtime and OpenVINO: the graph's arithmetic, not the runtime or the forward.
EXPORT_BOUND = {"gemma2": 1e-3}
STEPS = 12
SHORT = [1, 57]  # the padded batch's second row


@dataclass
class Case:
    name: str
    store: Any
    keys: dict[str, str]  # runtime -> artifact id
    tolerance: dict[str, float]
    reference: Any  # the PyTorch model
    prompt: list[int]


def _reference(model_dir: Path) -> Any:
    import transformers

    model = transformers.AutoModelForCausalLM.from_pretrained(
        model_dir, attn_implementation="eager"
    )
    return model.eval()


@pytest.fixture(scope="module", params=["example", *ARCH_NAMES])
def case(
    request: pytest.FixtureRequest,
    example_store: ExampleStore,
    tmp_path_factory: pytest.TempPathFactory,
):  # noqa: ANN201
    """One model: its artifacts on the three runtimes and its PyTorch reference."""
    needs_toolchains()
    if request.param == "example":
        keys = {"onnxruntime": "cpu", "openvino": "openvino-cpu", "iree": "iree-cpu"}
        from transformers import AutoTokenizer

        prompt = AutoTokenizer.from_pretrained(EXAMPLE / "model")("The future of AI is")
        yield Case(
            "example",
            example_store.store,
            {r: example_store.keys[t] for r, t in keys.items()},
            {**TOLERANCE, "openvino": FP16_TOLERANCE},
            _reference(EXAMPLE / "model"),
            list(prompt["input_ids"]),
        )
        return
    from artifact_store import Store
    from rmbuild.build import compile_spec

    arch = request.param
    root = tmp_path_factory.mktemp(f"hf-{arch}")
    model_dir = _make_model(arch, ARCHS[arch], root / "model")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RMBUILD_CONFIG_DIR", str(root / "config"))
        store = Store(root / "store")
        results = compile_spec(_spec(root, model_dir, ARCH_TARGETS), store=store)
        keys = {r.target: r.artifact.key for r in results}
        yield Case(arch, store, keys, TOLERANCE, _reference(model_dir), PROMPT_IDS)
        store.close()


@pytest.fixture
def model(case: Case, request: pytest.FixtureRequest):  # noqa: ANN201
    from rmbuild.transformers import AutoModelForCausalLM

    runtime = request.node.callspec.params["runtime"]
    loaded = AutoModelForCausalLM.from_pretrained(
        case.keys[runtime], store=case.store, device=runtime
    )
    with loaded:
        yield loaded


def _padded(rows: list[list[int]]) -> dict[str, Any]:
    width = max(len(r) for r in rows)
    ids = torch.zeros((len(rows), width), dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        ids[i, width - len(row) :] = torch.tensor(row)
        mask[i, width - len(row) :] = 1
    return {"input_ids": ids, "attention_mask": mask}


def _both(case: Case, model: Any, inputs: dict[str, Any], **kwargs: Any) -> tuple[Any, Any]:
    with torch.no_grad():
        ours = model.generate(**inputs, **kwargs)
        theirs = case.reference.generate(**inputs, **kwargs)
    return ours, theirs


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_generate_gives_pytorchs_tokens(case: Case, model: Any, runtime: str) -> None:
    assert model.session.info["artifact"] == case.keys[runtime]
    one = {"input_ids": torch.tensor([case.prompt])}
    # min_new_tokens: a random-weight model's EOS does not cut the comparison short.
    fixed = {"max_new_tokens": STEPS, "min_new_tokens": STEPS}
    ours, theirs = _both(case, model, one, do_sample=False, **fixed)
    assert ours.shape[1] == len(case.prompt) + STEPS
    assert ours.tolist() == theirs.tolist(), f"{case.name} greedy on {runtime}"
    ours, theirs = _both(case, model, one, do_sample=False, num_beams=3, **fixed)
    assert ours.tolist() == theirs.tolist(), f"{case.name} beam search on {runtime}"
    batch = _padded([case.prompt, SHORT])
    ours, theirs = _both(case, model, batch, do_sample=False, **fixed)
    assert ours.tolist() == theirs.tolist(), f"{case.name} padded batch on {runtime}"


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_one_forwards_logits_agree_within_the_runtimes_tolerance(
    case: Case, model: Any, runtime: str
) -> None:
    ids = torch.tensor([case.prompt])
    with torch.no_grad():
        ours = model(ids, use_cache=True)
        theirs = case.reference(ids, use_cache=True)
        assert ours.logits.shape == theirs.logits.shape  # every position, not only the last
        worst = float((ours.logits - theirs.logits).abs().max())
        token = torch.tensor([[int(theirs.logits[0, -1].argmax())]])
        mask = torch.ones((1, len(case.prompt) + 1), dtype=torch.long)
        step = model(token, attention_mask=mask, past_key_values=ours.past_key_values)
        ref = case.reference(token, attention_mask=mask, past_key_values=theirs.past_key_values)
    bound = max(case.tolerance[runtime], EXPORT_BOUND.get(case.name, 0.0))
    assert worst < bound, f"{case.name} on {runtime}: prefill {worst}"
    cached = float((step.logits - ref.logits).abs().max())
    assert cached < bound, f"{case.name} on {runtime}: cached step {cached}"


# -- the rest of generate()'s surface, on the example's ONNX Runtime artifact -----------------


@pytest.fixture(scope="module")
def example(example_store: ExampleStore):  # noqa: ANN201
    from transformers import AutoTokenizer

    from rmbuild.transformers import AutoModelForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(EXAMPLE / "model")
    model = AutoModelForCausalLM.from_pretrained(
        example_store.keys["cpu"], store=example_store.store
    )
    with model:
        yield tokenizer, model, _reference(EXAMPLE / "model")


def _compare(example: Any, prompt: str | list[str], seed: int | None = None, **kwargs: Any) -> Any:
    tokenizer, model, reference = example
    inputs = tokenizer(prompt, return_tensors="pt", padding=True, padding_side="left")
    out = []
    for m in (model, reference):
        if seed is not None:
            torch.manual_seed(seed)
        with torch.no_grad():
            out.append(m.generate(**inputs, max_new_tokens=24, **kwargs))
    return out


def test_sampling_with_a_seed_gives_pytorchs_tokens(example: Any) -> None:
    ours, theirs = _compare(
        example, "Once upon a time", seed=7, do_sample=True, temperature=0.9, top_k=40
    )
    assert ours.tolist() == theirs.tolist()
    again, _ = _compare(example, "Once upon a time", seed=8, do_sample=True, temperature=0.9)
    assert again.tolist() != ours.tolist()  # the seed matters: it samples


def test_repetition_penalty_and_stopping_give_pytorchs_tokens(example: Any) -> None:
    from transformers import StoppingCriteria, StoppingCriteriaList

    tokenizer = example[0]
    ours, theirs = _compare(example, "The future of AI is", repetition_penalty=1.4)
    assert ours.tolist() == theirs.tolist()
    ours, theirs = _compare(example, "The future of AI is", stop_strings=["."], tokenizer=tokenizer)
    assert ours.tolist() == theirs.tolist()
    assert tokenizer.decode(ours[0]).endswith(".")

    class AfterComma(StoppingCriteria):
        def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
            return input_ids[:, -1] == tokenizer.convert_tokens_to_ids(",")

    ours, theirs = _compare(
        example, "The future of AI is", stopping_criteria=StoppingCriteriaList([AfterComma()])
    )
    assert ours.tolist() == theirs.tolist()
    assert tokenizer.decode(ours[0, -1]) == ","


def test_a_text_streamer_prints_the_generated_text(example: Any) -> None:
    from transformers import TextStreamer

    tokenizer, model, _ = example
    inputs = tokenizer("The future of AI is", return_tensors="pt")
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        out = model.generate(
            **inputs, max_new_tokens=16, streamer=TextStreamer(tokenizer, skip_prompt=True)
        )
    new = tokenizer.decode(out[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True)
    assert printed.getvalue().strip() == new.strip() and len(new) > 10


def test_a_left_padded_batch_and_scores_match_pytorch(example: Any) -> None:
    prompts = ["The future of AI is", "A model", "Compilers are fast and"]
    kwargs = {"return_dict_in_generate": True, "output_scores": True, "output_logits": True}
    ours, theirs = _compare(example, prompts, **kwargs)
    assert ours.sequences.tolist() == theirs.sequences.tolist()
    assert len(ours.scores) == len(theirs.scores) == 24
    for name in ("scores", "logits"):
        for a, b in zip(getattr(ours, name), getattr(theirs, name), strict=True):
            finite = torch.isfinite(b)
            assert torch.equal(torch.isfinite(a), finite)
            assert float((a[finite] - b[finite]).abs().max()) < 1e-4
