"""A session's context limit (``max_model_len``): how many tokens, prompt and generated
together, an artifact may run.

Two facts bound it, as vLLM's ``max_model_len`` does:

* the model's **declared** maximum, from ``config.json`` (the smallest of the keys vLLM reads:
  ``max_position_embeddings``, ``n_positions``, ``max_seq_len``, ...; rope scaling widens it
  the way vLLM does; a config that declares none gets vLLM's 2048);
* the artifact's **compiled** one, where a vendor compiler fixed it: a TensorRT shape profile's
  max, RBLN's ``max_seq_len``, RNGD's ``max_model_len``, a static ``attention_mask`` dim in
  ``kv_layout.json``. The backend's decoder step says it (``compiled_limit()``); nothing
  reads an engine here.

The limit is the smaller. A request past it is refused before the backend runs
(:func:`check_fits`): past a learned position table (GPT-2's ``wpe``) the runtimes give wrong
text or fail inside the vendor library, and a prompt many times the limit costs gigabytes.

An explicit ``max_model_len`` may lower the limit, and may raise a declared (never a compiled)
one for a model that computes its positions (rotary, ALiBi): such a model runs past its
declared length token for token as PyTorch does. A model with a learned absolute position
table has no embedding past its last row, so raising it is refused.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rmbuild.errors import ContextTooLong, IncompatibleArtifact

# vLLM's keys, in its order (the smallest present wins), plus GPT-2's older spelling n_ctx.
DECLARED_KEYS = (
    "max_position_embeddings",
    "n_positions",
    "max_seq_len",
    "seq_length",
    "model_max_length",
    "max_sequence_length",
    "max_seq_length",
    "seq_len",
    "n_ctx",
)
# What vLLM assumes for a config that declares no maximum.
DEFAULT_MAX_LEN = 2048
# Rope types whose scaling factor vLLM does not multiply into the limit (their
# max_position_embeddings is already the scaled length).
_UNSCALED_ROPE = ("su", "longrope", "llama3", "default")

# Architectures with a learned (or fixed-size) absolute position table: a position past its
# last row has no embedding. Decided by model_type: their configs carry no key that says so.
LEARNED_POSITIONS = frozenset(
    {
        "gpt2",
        "gpt_bigcode",
        "gpt_neo",
        "opt",
        "biogpt",
        "imagegpt",
        "openai-gpt",
        "ctrl",
        "bart",
        "mbart",
        "marian",
        "pegasus",
        "blenderbot",
        "blenderbot-small",
        "bert",
        "bert-generation",
        "roberta",
        "xlm-roberta",
        "camembert",
        "electra",
        "ernie",
        "megatron-bert",
        "trocr",
    }
)
ALIBI_TYPES = frozenset({"bloom", "mpt"})
ROTARY_TYPES = frozenset(
    {
        "llama",
        "mistral",
        "mixtral",
        "qwen2",
        "qwen2_moe",
        "qwen3",
        "qwen3_moe",
        "gemma",
        "gemma2",
        "gemma3_text",
        "phi",
        "phi3",
        "gpt_neox",
        "gptj",
        "codegen",
        "stablelm",
        "falcon",
        "olmo",
        "olmo2",
        "granite",
        "starcoder2",
        "cohere",
        "persimmon",
        "internlm2",
        "deepseek_v2",
        "deepseek_v3",
    }
)
# Config keys only a model with rotary position embeddings has.
_ROTARY_KEYS = (
    "rope_theta",
    "rope_scaling",
    "rope_parameters",
    "rotary_dim",
    "rotary_pct",
    "rotary_emb_base",
    "partial_rotary_factor",
)
# Encodings that compute a position instead of looking it up: an explicit limit may exceed
# the declared one.
EXTENSIBLE = ("rotary", "alibi")


@dataclass(frozen=True)
class Bound:
    """A compiled limit: ``value`` tokens, where it was read, and how a larger one is had."""

    value: int
    source: str
    hint: str = ""


@dataclass(frozen=True)
class ContextLimit:
    """The limit in force (``value``) and the facts it was derived from."""

    value: int
    source: str
    declared: int
    declared_source: str
    compiled: Bound | None
    positions: str  # rotary | alibi | learned | unknown
    requested: int | None = None

    @property
    def can_raise(self) -> bool:
        """Whether an explicit ``max_model_len`` could go past ``value``."""
        ceiling = self.compiled.value if self.compiled is not None else None
        if ceiling is not None and self.value >= ceiling:
            return False
        return self.positions in EXTENSIBLE

    def describe(self) -> list[str]:
        """Context lines for an error: where each number came from."""
        lines = [f"max_model_len: {self.value} ({self.source})"]
        lines.append(f"declared by the model: {self.declared} ({self.declared_source})")
        if self.compiled is not None:
            lines.append(
                f"compiled into the artifact: {self.compiled.value} ({self.compiled.source})"
            )
        lines.append(f"positions: {self.positions}")
        return lines


def declared_limit(config: dict[str, Any]) -> tuple[int | None, str]:
    """The model's own maximum and the key that says it, or ``(None, "")``."""
    best: int | None = None
    key_found = ""
    for key in DECLARED_KEYS:
        value = config.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            if best is None or value < best:
                best, key_found = value, key
    if best is None:
        return None, ""
    source = f"{key_found} in config.json"
    rope = config.get("rope_scaling") or config.get("rope_parameters")
    if isinstance(rope, dict):
        kind = str(rope.get("rope_type") or rope.get("type") or "default")
        factor = rope.get("factor")
        if kind not in _UNSCALED_ROPE and isinstance(factor, int | float) and factor > 0:
            base = best
            if kind == "yarn" and isinstance(rope.get("original_max_position_embeddings"), int):
                base = int(rope["original_max_position_embeddings"])
            best = int(base * factor)
            source += f" x {kind} rope factor {factor:g}"
    return best, source


def position_encoding(config: dict[str, Any]) -> str:
    """``rotary``, ``alibi``, ``learned`` or ``unknown``, from ``config.json``."""
    model_type = str(config.get("model_type") or "")
    if model_type in LEARNED_POSITIONS or config.get("position_embedding_type") == "absolute":
        return "learned"
    attn = config.get("attn_config")
    if (
        config.get("alibi") is True
        or model_type in ALIBI_TYPES
        or (isinstance(attn, dict) and attn.get("alibi"))
    ):
        return "alibi"
    if model_type in ROTARY_TYPES or any(config.get(k) is not None for k in _ROTARY_KEYS):
        return "rotary"
    if config.get("position_embedding_type") == "rotary":
        return "rotary"
    return "unknown"


def resolve(
    config: dict[str, Any], compiled: Bound | None, requested: int | None = None
) -> ContextLimit:
    """The limit for a model (``config.json``) compiled with ``compiled``; ``requested`` is an
    explicit ``max_model_len`` (IncompatibleArtifact, exit 6, where it cannot be had)."""
    declared, declared_source = declared_limit(config)
    if declared is None:
        if compiled is not None:
            declared, declared_source = compiled.value, "config.json declares none"
        else:
            declared = DEFAULT_MAX_LEN
            declared_source = f"config.json declares none: {DEFAULT_MAX_LEN} assumed, as vLLM does"
    positions = position_encoding(config)
    value, source = declared, declared_source
    if compiled is not None and compiled.value < value:
        value, source = compiled.value, compiled.source
    limit = ContextLimit(value, source, declared, declared_source, compiled, positions)
    if requested is None:
        return limit
    if isinstance(requested, bool) or not isinstance(requested, int) or requested < 1:
        raise ValueError(f"max_model_len must be a positive int, not {requested!r}")
    if compiled is not None and requested > compiled.value:
        raise IncompatibleArtifact(
            f"--max-model-len {requested} is past this artifact's compiled limit of "
            f"{compiled.value} tokens ({compiled.source})",
            context=limit.describe(),
            hint=f"use --max-model-len {compiled.value} or less"
            + (f", or {compiled.hint}" if compiled.hint else ""),
        )
    if requested > declared and positions not in EXTENSIBLE:
        model_type = config.get("model_type") or "this model"
        why = (
            f"{model_type} learns a table of {declared} positions: a position past its last "
            "row has no embedding, and the text would be wrong"
            if positions == "learned"
            else f"rmbuild cannot tell from config.json that {model_type} computes its "
            "positions (rotary or ALiBi), so it may look them up in a table of that size"
        )
        raise IncompatibleArtifact(
            f"--max-model-len {requested} is past the model's declared maximum of {declared} "
            f"tokens ({declared_source}); {why}",
            context=limit.describe(),
            hint=f"use --max-model-len {declared} or less",
        )
    return ContextLimit(
        requested,
        "--max-model-len",
        declared,
        declared_source,
        compiled,
        positions,
        requested,
    )


def check_fits(limit: ContextLimit, prompt_tokens: int, max_tokens: int) -> None:
    """Refuse (ContextTooLong, exit 6) a prompt plus ``max_tokens`` past ``limit``."""
    total = prompt_tokens + max_tokens
    if total <= limit.value:
        return
    room = limit.value - prompt_tokens
    if room > 0:
        hint = f"at most {room} new token(s) fit after this prompt: --max-tokens {room}"
    else:
        hint = f"shorten the prompt to fewer than {limit.value} tokens (it has {prompt_tokens})"
    if limit.can_raise and limit.requested is None:
        ceiling = limit.compiled.value if limit.compiled is not None else None
        upto = f" (up to {ceiling}, the artifact's compiled limit)" if ceiling else ""
        hint += (
            f"; or raise the limit with --max-model-len{upto}: this model's {limit.positions} "
            "positions run past its declared length"
        )
    raise ContextTooLong(
        f"the prompt ({prompt_tokens} tokens) plus max tokens {max_tokens} is {total} tokens, "
        f"past this model's limit of {limit.value} ({limit.source})",
        limit=limit.value,
        prompt_tokens=prompt_tokens,
        max_tokens=max_tokens,
        context=limit.describe(),
        hint=hint,
    )


def for_artifact(
    config: dict[str, Any],
    metadata: dict[str, Any],
    step: Any,
    requested: int | None = None,
) -> ContextLimit:
    """The limit of a loaded artifact: ``config.json``, the decoder step's compiled bound
    (its ``compiled_limit()``, where it has one) and the build's recorded flags."""
    bounds: list[Bound] = []
    method = getattr(step, "compiled_limit", None)
    if callable(method):
        bound = method()
        if bound is not None:
            bounds.append(bound)
    flags = metadata.get("flags") or {}
    # RNGD's compiled maximum is a build flag (its buckets stop there).
    if metadata.get("backend") == "furiosa" and isinstance(flags.get("max_model_len"), int):
        bounds.append(
            Bound(
                int(flags["max_model_len"]),
                "max_model_len flag of the RNGD build",
                "rebuild with a larger max_model_len flag and buckets",
            )
        )
    compiled = min(bounds, key=lambda b: b.value) if bounds else None
    return resolve(config, compiled, requested)
