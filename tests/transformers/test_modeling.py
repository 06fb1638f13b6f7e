"""The transformers model over a fake graph that is sensitive to every input the forward builds.

The fake's cache holds the tokens seen; each position's logits peak at a mix of the attended
tokens, how many there are and the position id, so attending a padding slot, a wrong position
or another row's cache shows in the tokens. transformers' ``generate()`` over it must give
what a plain KV loop (:meth:`KVLoop.step`, one sequence at a time) gives, whatever the batch,
padding, pad slots or runtime kind. The real runtimes against PyTorch: test_parity.py.
"""

from __future__ import annotations

import subprocess
import sys
import warnings
from typing import Any

import pytest

np = pytest.importorskip("numpy")
torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from transformers import DynamicCache, PretrainedConfig  # noqa: E402

from rmbuild.errors import EXIT_INCOMPATIBLE, IncompatibleArtifact, SessionClosed  # noqa: E402
from rmbuild.runtime.kvlayout import from_ports  # noqa: E402
from rmbuild.runtime.kvloop import KVLoop  # noqa: E402
from rmbuild.runtime.session import BackendSession  # noqa: E402
from rmbuild.transformers import RmbuildModelForCausalLM  # noqa: E402
from rmbuild.transformers.modeling import layer_pairs  # noqa: E402

VOCAB = 61


def _layout(batch: int | None = None, position_ids: bool = True) -> Any:
    ports = [
        (("input_ids",), [batch, None], "int64"),
        (("attention_mask",), [batch, None], "int64"),
        *([(("position_ids",), [batch, None], "int64")] if position_ids else []),
        (("past_key_values.0.key",), [batch, 1, None, 1], "float32"),
        (("past_key_values.0.value",), [batch, 1, None, 1], "float32"),
    ]
    outputs = [("logits",), ("present.0.key",), ("present.0.value",)]
    return from_ports(ports, outputs, source="the fake graph")


def _logits(ids: Any, mask: Any, pos: Any, past: Any) -> tuple[Any, Any]:
    """Every fed position's logits [B, n, V] and the present [B, 1, past + n, 1]."""
    b, n = ids.shape
    present = np.concatenate([past, ids.astype(np.float32).reshape(b, 1, n, 1)], axis=2)
    values = present[:, 0, :, 0]
    first = values.shape[1] - n
    logits = np.zeros((b, n, VOCAB), dtype=np.float32)
    for j in range(n):
        seen = mask[:, : first + j + 1]
        mixed = (values[:, : first + j + 1] * seen).sum(axis=1) + 7 * seen.sum(axis=1)
        if pos is not None:
            mixed = mixed + 13 * pos[:, j]
        peak = mixed.astype(np.int64) % VOCAB
        # A smooth peak (not one-hot): beams rank the runners-up, and no two tie.
        logits[:, j] = -np.abs(np.arange(VOCAB)[None, :] - peak[:, None]) * 0.37
    return logits, present


class AllPositions(KVLoop):
    """A runtime like ONNX Runtime: batches, and gives every position's logits."""

    gives_all_positions = True

    def __init__(self, batch: int | None = None, pad: int = 0, position_ids: bool = True):
        super().__init__(_layout(batch, position_ids), pad=pad, what="the fake graph")
        self.calls: list[dict[str, Any]] = []

    def _run_batch(self, feeds: dict[str, Any], all_positions: bool = False) -> Any:
        self.calls.append(feeds)
        logits, present = _logits(
            feeds["input_ids"],
            feeds["attention_mask"],
            feeds.get("position_ids"),
            feeds["past_key_values.0.key"],
        )
        return (logits if all_positions else logits[:, -1]), [present, present.copy()]


class LastOnly(KVLoop):
    """A runtime like TensorRT here: one sequence, the last position's logits only."""

    def __init__(self, pad: int = 0) -> None:
        super().__init__(_layout(1), pad=pad, what="the fake plan")

    def _run(self, feeds: dict[str, Any]) -> Any:
        logits, present = _logits(
            feeds["input_ids"],
            feeds["attention_mask"],
            feeds["position_ids"],
            feeds["past_key_values.0.key"],
        )
        return logits[0, -1], [present, present.copy()]


def _model(loop: KVLoop) -> RmbuildModelForCausalLM:
    config = PretrainedConfig(vocab_size=VOCAB, bos_token_id=1, pad_token_id=0, eos_token_id=None)
    session = BackendSession(step_fn=loop, tokenizer=None, info={"artifact": "f" * 64})  # type: ignore[arg-type]
    return RmbuildModelForCausalLM(config, session)


def _alone(prompt: list[int], steps: int) -> list[int]:
    """Greedy tokens from the plain KV loop, one sequence."""
    loop = AllPositions()
    logits = loop.step(np.asarray(prompt, dtype=np.int64))
    out = []
    for _ in range(steps):
        out.append(int(np.argmax(logits)))
        logits = loop.step(np.asarray(out[-1:], dtype=np.int64))
    return out


def _left_padded(prompts: list[list[int]]) -> tuple[Any, Any]:
    width = max(len(p) for p in prompts)
    ids = torch.zeros((len(prompts), width), dtype=torch.long)
    mask = torch.zeros((len(prompts), width), dtype=torch.long)
    for i, p in enumerate(prompts):
        ids[i, width - len(p) :] = torch.tensor(p)
        mask[i, width - len(p) :] = 1
    return ids, mask


def test_forward_gives_every_positions_logits_as_stepping_does() -> None:
    model = _model(AllPositions())
    prompt = [5, 9, 2, 40]
    out = model(torch.tensor([prompt]))
    assert out.logits.shape == (1, 4, VOCAB) and out.logits.dtype == torch.float32
    loop = AllPositions()
    for j, token in enumerate(prompt):
        expected = loop.step(np.asarray([token], dtype=np.int64))
        assert int(out.logits[0, j].argmax()) == int(np.argmax(expected)), j
    assert out.past_key_values.get_seq_length() == 4
    assert model(torch.tensor([prompt]), logits_to_keep=1).logits.shape == (1, 1, VOCAB)


@pytest.mark.parametrize("pad", [0, 1])
def test_greedy_generate_gives_the_kv_loops_tokens(pad: int) -> None:
    model = _model(AllPositions(pad=pad))
    prompt = [5, 9, 2]
    out = model.generate(torch.tensor([prompt]), max_new_tokens=12, do_sample=False)
    assert out[0, 3:].tolist() == _alone(prompt, 12)
    # The pad slots are fed, masked, and never reach the transformers cache.
    last = model.loop.calls[-1]  # type: ignore[attr-defined]
    assert last["attention_mask"][0, :pad].tolist() == [0] * pad
    assert last["past_key_values.0.key"].shape[2] == pad + 3 + 10


@pytest.mark.parametrize(
    "loop",
    [AllPositions(), AllPositions(pad=1), AllPositions(batch=1), LastOnly(), LastOnly(pad=1)],
    ids=["batched", "pad-slot", "static-batch", "last-only", "last-only-pad"],
)
def test_left_padded_rows_generate_what_they_would_alone(loop: KVLoop) -> None:
    prompts = [[5, 9, 2], [400 % VOCAB], [1, 2, 3, 4, 5, 6, 7]]
    ids, mask = _left_padded(prompts)
    model = _model(loop)
    out = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=9, do_sample=False)
    for i, prompt in enumerate(prompts):
        assert out[i, ids.shape[1] :].tolist() == _alone(prompt, 9), i


def test_beam_search_rows_and_beams_keep_their_own_cache() -> None:
    """Beam search reorders the cache every step; a padded batch of two must give each row
    what it gives alone."""
    prompts = [[5, 9, 2], [33]]
    ids, mask = _left_padded(prompts)
    model = _model(AllPositions())
    together = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=6, num_beams=3)
    for i, prompt in enumerate(prompts):
        alone = model.generate(torch.tensor([prompt]), max_new_tokens=6, num_beams=3)
        assert together[i, ids.shape[1] :].tolist() == alone[0, len(prompt) :].tolist()


def test_a_static_cache_asked_for_is_a_dynamic_one() -> None:
    """A generation config's static or hybrid cache would make generate() build 4D masks for
    a compiled torch forward; the graph takes the 2D mask and its whole past."""
    model = _model(AllPositions())
    model.generation_config.cache_implementation = "static"
    out = model.generate(torch.tensor([[5, 9, 2]]), max_new_tokens=5, do_sample=False)
    assert out[0, 3:].tolist() == _alone([5, 9, 2], 5)


def test_a_runtime_with_the_last_position_only_has_no_loss() -> None:
    model = _model(LastOnly())
    out = model(torch.tensor([[5, 9, 2]]))
    assert out.logits.shape == (1, 1, VOCAB)
    with pytest.raises(ValueError, match="last position's only"):
        model(torch.tensor([[5, 9, 2]]), labels=torch.tensor([[5, 9, 2]]))
    assert _model(AllPositions())(torch.tensor([[5, 9, 2]]), labels=torch.tensor([[5, 9, 2]])).loss


def test_a_callers_dynamic_cache_is_filled_in_place_and_a_legacy_tuple_is_read() -> None:
    model = _model(AllPositions())
    cache = DynamicCache()
    first = model(torch.tensor([[5, 9]]), past_key_values=cache, use_cache=True)
    assert first.past_key_values is cache and cache.get_seq_length() == 2
    second = model(torch.tensor([[2]]), past_key_values=cache)
    assert cache.get_seq_length() == 3
    legacy = ((cache[0][0][:, :, :2], cache[0][1][:, :, :2]),)
    again = model(torch.tensor([[2]]), past_key_values=legacy)
    assert torch.equal(again.logits, second.logits)
    assert int(second.logits[0, -1].argmax()) == _alone([5, 9, 2], 1)[0]


def test_what_the_graph_cannot_take_is_a_clear_error() -> None:
    model = _model(AllPositions())
    with pytest.raises(ValueError, match=r"attention_mask has shape \(1, 2\); this call needs"):
        model(torch.tensor([[5, 9, 2]]), attention_mask=torch.ones((1, 2), dtype=torch.long))
    with pytest.raises(ValueError, match="not inputs_embeds"):
        model(inputs_embeds=torch.zeros((1, 2, 4)))
    with pytest.raises(ValueError, match="hidden states"):
        model(torch.tensor([[5]]), output_hidden_states=True)


def test_a_cache_the_graph_cannot_take_is_exit_6_naming_the_input() -> None:
    from rmbuild.errors import ArtifactInputMismatch

    model = _model(AllPositions())
    other = ((torch.zeros((1, 2, 3, 1)), torch.zeros((1, 2, 3, 1))),)  # 2 KV heads, not 1
    with pytest.raises(ArtifactInputMismatch) as err:
        model(torch.tensor([[5]]), past_key_values=other)
    assert err.value.exit_code == EXIT_INCOMPATIBLE
    assert "'past_key_values.0.key'" in err.value.message and "[1, 2, 3, 1]" in err.value.message


def test_every_other_name_is_transformers_own() -> None:
    import transformers

    import rmbuild.transformers as drop_in

    assert drop_in.TextStreamer is transformers.TextStreamer
    assert drop_in.set_seed is transformers.set_seed
    assert drop_in.AutoModelForCausalLM is not transformers.AutoModelForCausalLM
    with pytest.raises(AttributeError, match="no attribute 'NoSuchName'"):
        drop_in.NoSuchName  # noqa: B018


def test_past_the_context_limit_is_refused_before_the_graph_runs() -> None:
    """A learned position table gives wrong text past its end: generate() is refused up front
    (exit 6), and a forward past the limit too."""
    from rmbuild.errors import ContextTooLong
    from rmbuild.runtime.limits import ContextLimit

    loop = AllPositions()
    model = _model(loop)
    model.session.context_limit = ContextLimit(8, "the test", 8, "the test", None, "learned")
    with pytest.raises(ContextTooLong) as err:
        model.generate(torch.tensor([[5, 9, 2]]), max_new_tokens=6, do_sample=False)
    assert err.value.exit_code == EXIT_INCOMPATIBLE and loop.calls == []
    assert "generate() takes the sequence to 9 positions" in err.value.message
    out = model.generate(torch.tensor([[5, 9, 2]]), max_new_tokens=5, do_sample=False)
    assert out[0, 3:].tolist() == _alone([5, 9, 2], 5)
    with pytest.raises(ContextTooLong, match="this forward takes the sequence to 9 positions"):
        model(torch.tensor([[1] * 9]))


def test_a_graph_without_position_ids_is_fed_none() -> None:
    loop = AllPositions(position_ids=False)
    model = _model(loop)
    model.generate(torch.tensor([[5, 9]]), max_new_tokens=2, do_sample=False)
    assert all("position_ids" not in feeds for feeds in loop.calls)


@pytest.mark.skipif(torch.cuda.is_available(), reason="torch here can use CUDA")
def test_to_cuda_without_cuda_keeps_the_outputs_on_the_cpu_and_says_so() -> None:
    model = _model(AllPositions())
    with pytest.warns(UserWarning, match="outputs stay on the CPU"):
        assert model.to("cuda") is model
    assert model.device == torch.device("cpu")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert model.to("cpu").device == torch.device("cpu")


def test_a_session_that_does_not_step_is_refused() -> None:
    class WholeSequences:
        def reset(self) -> None: ...

    session = BackendSession(step_fn=WholeSequences(), tokenizer=None, info={"target": "rbln"})  # type: ignore[arg-type]
    with pytest.raises(IncompatibleArtifact) as err:
        RmbuildModelForCausalLM(PretrainedConfig(vocab_size=VOCAB), session)
    assert err.value.exit_code == EXIT_INCOMPATIBLE
    assert "generates whole sequences" in err.value.message


def test_layer_pairs_order_layers_and_refuse_a_fused_cache() -> None:
    names = ["past_key_values.1.value", "past_key_values.0.key", "past_key_values.1.key"]
    with pytest.raises(IncompatibleArtifact, match="layer 0 lacks a key or a value"):
        layer_pairs(names, "m")
    assert layer_pairs([*names, "past_key_values.0.value"], "m") == [(1, 3), (2, 0)]
    with pytest.raises(IncompatibleArtifact, match="no transformers cache layout"):
        layer_pairs(["past_key_values.0.key_value"], "m")


def test_a_closed_model_refuses_to_run() -> None:
    loop = AllPositions()
    loop.close = lambda: setattr(loop, "closed", True)  # type: ignore[method-assign]
    with _model(loop) as model:
        model(torch.tensor([[5]]))
    with pytest.raises(SessionClosed):
        model(torch.tensor([[5]]))


def test_import_rmbuild_imports_neither_transformers_nor_torch() -> None:
    code = (
        "import sys, rmbuild, rmbuild.loading, rmbuild.serve.model; "
        "print(sorted(m for m in ('transformers', 'torch') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
