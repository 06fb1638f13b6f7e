"""The context limit (max_model_len) and the checks every request passes before a backend runs.

Fast: a scripted decoder step and a character tokenizer stand in for a runtime (the real
backends run the same checks in tests/test_api.py). Covers where the limit comes from
(config.json keys, rope scaling, a compiled bound), when an explicit one may raise it, the
refusal of a request past it (exit 6, saying what fits), an empty prompt (BOS, else exit 2), a
closed session (exit 2), stop strings, and one sampling signature for generate/stream.
"""

from __future__ import annotations

import inspect
from typing import Any

import pytest

from rmbuild.errors import (
    EXIT_INCOMPATIBLE,
    EXIT_USAGE,
    ContextTooLong,
    IncompatibleArtifact,
    InvalidPrompt,
    SessionClosed,
)
from rmbuild.runtime import kvlayout, limits
from rmbuild.runtime.limits import Bound

np = pytest.importorskip("numpy")

LLAMA = {"model_type": "llama", "max_position_embeddings": 64, "rope_theta": 10000.0}
GPT2 = {"model_type": "gpt2", "n_positions": 32, "n_ctx": 32}


# ---- where the limit comes from ----------------------------------------------------------------


def test_the_smallest_declared_key_is_the_limit() -> None:
    assert limits.declared_limit(GPT2) == (32, "n_positions in config.json")
    both = {"max_position_embeddings": 4096, "seq_length": 2048}
    assert limits.declared_limit(both) == (2048, "seq_length in config.json")
    assert limits.declared_limit({"model_type": "bloom"}) == (None, "")


@pytest.mark.parametrize(
    ("rope", "expected"),
    [
        ({"rope_type": "linear", "factor": 4.0}, 256),
        ({"type": "dynamic", "factor": 2.0}, 128),
        ({"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 32}, 128),
        # llama3's max_position_embeddings is already the scaled length (as vLLM reads it).
        ({"rope_type": "llama3", "factor": 8.0, "original_max_position_embeddings": 8}, 64),
    ],
)
def test_rope_scaling_widens_the_declared_limit_as_vllm_does(
    rope: dict[str, Any], expected: int
) -> None:
    value, source = limits.declared_limit({**LLAMA, "rope_scaling": rope})
    assert value == expected
    assert "max_position_embeddings" in source


def test_no_declared_key_assumes_vllms_default_unless_compiled() -> None:
    bloom = {"model_type": "bloom"}
    assert limits.resolve(bloom, None).value == limits.DEFAULT_MAX_LEN
    assert "2048 assumed" in limits.resolve(bloom, None).source
    assert limits.resolve(bloom, Bound(512, "max_seq_len in rbln_config.json")).value == 512


def test_a_compiled_bound_below_the_declared_one_wins() -> None:
    limit = limits.resolve(LLAMA, Bound(48, "the plan's optimization profile"))
    assert (limit.value, limit.source) == (48, "the plan's optimization profile")
    assert limits.resolve(LLAMA, Bound(100, "profile")).value == 64


@pytest.mark.parametrize(
    ("config", "kind"),
    [
        (GPT2, "learned"),
        ({"model_type": "opt", "max_position_embeddings": 2048}, "learned"),
        (LLAMA, "rotary"),
        ({"model_type": "gpt_neox", "rotary_pct": 0.25}, "rotary"),
        ({"model_type": "falcon", "alibi": False}, "rotary"),
        ({"model_type": "falcon", "alibi": True, "rope_theta": 10000.0}, "alibi"),
        ({"model_type": "bloom"}, "alibi"),
        ({"model_type": "mpt", "attn_config": {"alibi": True}}, "alibi"),
        ({"model_type": "somethingnew", "max_position_embeddings": 64}, "unknown"),
    ],
)
def test_position_encoding_is_read_from_the_config(config: dict[str, Any], kind: str) -> None:
    assert limits.position_encoding(config) == kind


def test_an_explicit_limit_may_raise_a_rotary_models_declared_one() -> None:
    limit = limits.resolve(LLAMA, None, requested=100)
    assert (limit.value, limit.source, limit.requested) == (100, "--max-model-len", 100)
    assert limits.resolve(GPT2, None, requested=16).value == 16  # lowering: any model


def test_raising_a_learned_position_table_is_refused() -> None:
    with pytest.raises(IncompatibleArtifact) as err:
        limits.resolve(GPT2, None, requested=64)
    assert err.value.exit_code == EXIT_INCOMPATIBLE
    assert "declared maximum of 32 tokens (n_positions in config.json)" in err.value.message
    assert "gpt2 learns a table of 32 positions" in err.value.message
    assert err.value.hint == "use --max-model-len 32 or less"
    with pytest.raises(IncompatibleArtifact, match="cannot tell from config.json"):
        limits.resolve({"model_type": "somethingnew", "n_positions": 8}, None, requested=9)


def test_an_explicit_limit_never_passes_the_compiled_one() -> None:
    bound = Bound(80, "max_seq_len in rbln_config.json", "rebuild with a larger max_seq_len flag")
    with pytest.raises(IncompatibleArtifact) as err:
        limits.resolve(LLAMA, bound, requested=81)
    assert "compiled limit of 80 tokens (max_seq_len in rbln_config.json)" in err.value.message
    assert "use --max-model-len 80 or less, or rebuild with a larger max_seq_len" in str(
        err.value.hint
    )
    assert limits.resolve(LLAMA, bound, requested=80).value == 80


def test_a_static_attention_mask_is_a_compiled_limit() -> None:
    from rmbuild.runtime.kvloop import KVLoop

    ports = [
        (("input_ids",), [1, None], "int64"),
        (("attention_mask",), [1, 128], "int64"),
        (("past_key_values.0.key",), [1, 2, None, 4], "float32"),
        (("past_key_values.0.value",), [1, 2, None, 4], "float32"),
    ]
    outputs = [("logits",), ("present.0.key",), ("present.0.value",)]
    static = KVLoop(kvlayout.from_ports(ports, outputs, source="kv_layout.json"))
    bound = static.compiled_limit()
    assert bound is not None and bound.value == 128
    assert "attention_mask is [1, 128] int64 in kv_layout.json" == bound.source
    ports[1] = (("attention_mask",), [1, None], "int64")
    assert KVLoop(kvlayout.from_ports(ports, outputs)).compiled_limit() is None


def test_rngd_builds_record_their_compiled_limit_in_the_flags() -> None:
    meta = {"backend": "furiosa", "flags": {"max_model_len": 40}}
    limit = limits.for_artifact(LLAMA, meta, step=object())
    assert (limit.value, limit.source) == (40, "max_model_len flag of the RNGD build")


# ---- a session over a scripted decoder ---------------------------------------------------------


class Chars:
    """A tokenizer of one token per character (id = code point), for readable scripts."""

    def encode(self, text: str) -> list[int]:
        return [ord(c) for c in text]

    def decode(self, ids: list[int]) -> str:
        return "".join(chr(i) for i in ids)


class Script:
    """A decoder step whose greedy tokens spell ``text``; records what it was fed."""

    def __init__(self, text: str, noise: float = 0.0) -> None:
        self.text = text
        self.noise = noise
        self.fed: list[list[int]] = []
        self.closes = 0
        self.i = 0

    def reset(self) -> None:
        self.i = 0

    def step(self, token_ids: Any) -> Any:
        self.fed.append([int(t) for t in token_ids])
        logits = np.random.default_rng(self.i).normal(0, self.noise, 256).astype(np.float32)
        logits[ord(self.text[min(self.i, len(self.text) - 1)])] += 10.0
        self.i += 1
        return logits

    def close(self) -> None:
        self.closes += 1


def _session(text: str = "The end. More.", **kw: Any):  # noqa: ANN202
    from rmbuild.runtime.session import BackendSession

    return BackendSession(step_fn=Script(text, kw.pop("noise", 0.0)), tokenizer=Chars(), **kw)


def test_a_request_past_the_limit_is_refused_before_the_backend_runs() -> None:
    session = _session(context_limit=limits.resolve(GPT2, None))
    with pytest.raises(ContextTooLong) as err:
        session.stream("x" * 20, 13)  # 33 > 32: refused when called, not when iterated
    e = err.value
    assert e.exit_code == EXIT_INCOMPATIBLE
    assert (e.limit, e.prompt_tokens, e.max_tokens) == (32, 20, 13)
    assert "the prompt (20 tokens) plus max tokens 13 is 33 tokens" in e.message
    assert "limit of 32 (n_positions in config.json)" in e.message
    assert "at most 12 new token(s) fit after this prompt: --max-tokens 12" in str(e.hint)
    assert "--max-model-len" not in str(e.hint)  # a learned table cannot be raised
    assert session.step_fn.fed == []
    assert session.generate("x" * 20, 12) == "The end. Mor"  # exactly at the limit: runs


def test_a_prompt_at_the_limit_says_to_shorten_it_and_a_rotary_model_may_raise_it() -> None:
    session = _session(context_limit=limits.resolve(LLAMA, None))
    assert session.max_model_len == 64
    with pytest.raises(ContextTooLong) as err:
        session.generate("y" * 64, 1)
    hint = str(err.value.hint)
    assert "shorten the prompt to fewer than 64 tokens (it has 64)" in hint
    assert "raise the limit with --max-model-len" in hint and "rotary" in hint
    raised = _session(context_limit=limits.resolve(LLAMA, None, requested=70))
    assert raised.generate("y" * 64, 6) == "The en"


def test_an_empty_prompt_starts_from_bos() -> None:
    session = _session(bos_token_id=ord("^"))
    assert session.generate("", 3) == "The"
    assert session.step_fn.fed[0] == [ord("^")]  # never a zero-length input
    assert list(session.generate_ids([], 2)) == [ord("T"), ord("h")]


def test_an_empty_prompt_without_bos_is_a_usage_error() -> None:
    session = _session()
    with pytest.raises(InvalidPrompt) as err:
        session.stream("", 3)
    assert err.value.exit_code == EXIT_USAGE
    assert "encodes to no tokens" in err.value.message
    assert "bos_token_id" in err.value.message
    assert session.step_fn.fed == []


def test_a_closed_session_says_so_on_every_entry_point() -> None:
    session = _session(info={"artifact": "0123456789abcdef"})
    kept = session.generate_ids([65], 5)
    assert next(kept) == ord("T")
    session.close()
    session.close()  # idempotent: the runtime is freed once
    assert session.step_fn.closes == 1
    calls = [
        lambda: session.generate("a"),
        lambda: session.stream("a"),
        lambda: session.generate_ids([1]),
        lambda: next(kept),  # a generator kept across close() never reaches the freed runtime
        lambda: session.__enter__(),
    ]
    for call in calls:
        with pytest.raises(SessionClosed) as err:
            call()
        assert err.value.exit_code == EXIT_USAGE
        assert err.value.message == "the session of artifact 0123456789ab is closed"


def test_stop_strings_end_the_text_and_are_not_returned() -> None:
    session = _session("The end. More text")
    assert session.generate("a", 30, stop=".") == "The end"
    assert session.last_stats.stopped == "stop"
    pieces = list(session.stream("a", 30, stop=["xt", "d. M"]))
    assert "".join(pieces) == "The en"  # spans tokens; held back until it cannot match
    assert session.generate("a", 18, stop="zzz") == "The end. More text"
    assert session.last_stats.stopped == "max_tokens"
    # A tail that could begin a stop string is held back while generation goes on, and is
    # text when it ends there (as vLLM returns it).
    assert list(session.stream("a", 5, stop="end")) == ["T", "h", "e ", "e"]
    assert list(session.stream("a", 6, stop="end")) == ["T", "h", "e ", "en"]


def test_generate_and_stream_take_one_sampling_signature() -> None:
    from rmbuild.runtime.sampling import SamplingParams
    from rmbuild.runtime.session import BackendSession

    gen = inspect.signature(BackendSession.generate).parameters
    stream = inspect.signature(BackendSession.stream).parameters
    assert list(gen) == list(stream)
    assert {"params", "temperature", "top_p", "seed", "stop"} <= set(gen)
    for name in ("temperature", "top_p", "seed", "stop"):
        assert gen[name].kind is inspect.Parameter.KEYWORD_ONLY
    assert "temperature" in inspect.signature(BackendSession.generate_ids).parameters

    noisy = dict(noise=6.0)
    by_keywords = _session(**noisy).generate("a", 12, temperature=1.5, seed=7)
    params = SamplingParams(temperature=1.5, seed=7)
    assert _session(**noisy).generate("a", 12, params) == by_keywords
    assert "".join(_session(**noisy).stream("a", 12, temperature=1.5, seed=7)) == by_keywords
    # A keyword replaces that field of params; the rest of params is kept.
    greedy = _session(**noisy).generate("a", 12, params, temperature=0)
    assert greedy == _session(**noisy).generate("a", 12)
    assert by_keywords != greedy  # the noise is large enough for sampling to show
