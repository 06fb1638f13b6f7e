"""A transformers causal-LM model whose forward runs an rmbuild artifact.

:class:`RmbuildModelForCausalLM` is a ``PreTrainedModel`` with transformers' own
``GenerationMixin``: ``generate()`` (greedy, sampling, beam search, logits processors, stopping
criteria, streamers) is transformers' code, unchanged. Only :meth:`forward` is rmbuild's: it
feeds the artifact's graph through the session's decoder step (:meth:`KVLoop.run_positions`)
with the caller's batch, attention mask, position ids and KV cache, and returns the logits and
the presents as a transformers ``DynamicCache``.

The graph returns each layer's whole cache (past and new tokens concatenated), so the cache is
replaced after each forward rather than appended to; beam search reorders it with the
``DynamicCache``'s own ``reorder_cache``. The cache is a full one whatever the model's
config says (a sliding-window model's export takes the whole past and masks inside), and it
lives in host memory: the runtime holds the accelerator, torch only the inputs and outputs.
"""

from __future__ import annotations

import re
import warnings
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from transformers import GenerationConfig, GenerationMixin, PretrainedConfig, PreTrainedModel
from transformers.cache_utils import Cache, DynamicCache, DynamicLayer
from transformers.modeling_outputs import CausalLMOutputWithPast

from rmbuild.errors import ContextTooLong, IncompatibleArtifact
from rmbuild.runtime.kvloop import KVLoop

if TYPE_CHECKING:
    from rmbuild.runtime.session import BackendSession

_PAST = re.compile(r"^past_key_values\.(\d+)\.(key|value)$")


def layer_pairs(past_names: list[str], what: str) -> list[tuple[int, int]]:
    """For each decoder layer in order, the positions of its key and value among the graph's
    past inputs; IncompatibleArtifact where the names are not the exporter's
    ``past_key_values.<i>.key|value`` (a fused key/value cache has no transformers layout)."""
    found: dict[int, dict[str, int]] = {}
    for position, name in enumerate(past_names):
        match = _PAST.match(name)
        if match is None:
            raise IncompatibleArtifact(
                f"{what}: the KV-cache input {name!r} is not past_key_values.<layer>.key|value, "
                "so it has no transformers cache layout",
                hint="export the model with optimum's text-generation-with-past task "
                "(the onnx-export profile)",
            )
        found.setdefault(int(match.group(1)), {})[match.group(2)] = position
    pairs = []
    for layer in sorted(found):
        kinds = found[layer]
        if set(kinds) != {"key", "value"}:
            raise IncompatibleArtifact(f"{what}: layer {layer} lacks a key or a value input")
        pairs.append((kinds["key"], kinds["value"]))
    return pairs


def _host(value: Any, dtype: Any) -> np.ndarray:
    """A torch tensor, numpy array or nested list as a contiguous numpy array of ``dtype``."""
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    return np.ascontiguousarray(np.asarray(value), dtype=dtype)


def _tensor(array: Any) -> torch.Tensor:
    array = np.asarray(array)
    if not array.flags.writeable:  # torch warns on (and must never write) a read-only buffer
        array = array.copy()
    return torch.from_numpy(array)


def _fill(cache: DynamicCache, pairs: list[tuple[torch.Tensor, torch.Tensor]]) -> None:
    """Make ``pairs`` (each layer's whole key and value) the cache's content."""
    layers = []
    for keys, values in pairs:
        layer = DynamicLayer()
        layer.lazy_initialization(keys)
        layer.keys, layer.values = keys, values
        layers.append(layer)
    cache.layers = layers


class RmbuildModelForCausalLM(PreTrainedModel, GenerationMixin):
    """A causal LM over a loaded rmbuild session; see the module docstring.

    Made by :meth:`from_pretrained` (or ``rmbuild.transformers.AutoModelForCausalLM``).
    ``config`` is the artifact's config.json, ``generation_config`` its
    generation_config.json, as PyTorch's ``from_pretrained`` reads them from the source model.
    ``close()`` frees the runtime (also on ``with model:``'s exit).
    """

    config_class = PretrainedConfig
    base_model_prefix = "rmbuild"
    main_input_name = "input_ids"
    _is_stateful = False

    def __init__(
        self,
        config: PretrainedConfig,
        session: BackendSession,
        generation_config: GenerationConfig | None = None,
    ) -> None:
        super().__init__(config)
        loop = session.step_fn
        what = str(session.info.get("artifact", "the artifact"))[:12]
        if not isinstance(loop, KVLoop):
            raise IncompatibleArtifact(
                f"artifact {what} ({session.info.get('target', '?')}) does not run one forward "
                "step at a time through rmbuild: its runtime generates whole sequences",
                hint="use rmbuild.load(...).generate(...) for it, or a target whose backend "
                "rmbuild steps (onnxruntime, openvino, iree, tensorrt)",
            )
        self.session = session
        self.loop = loop
        self._pairs = layer_pairs(loop.past_names, what)
        self._outputs_on = torch.device("cpu")
        if generation_config is not None:
            self.generation_config = generation_config
        if self.generation_config is not None:
            # A static or hybrid cache would make generate() build 4D masks for a compiled
            # torch forward; the graph takes the 2D mask and keeps its own full cache.
            self.generation_config.cache_implementation = None

    @classmethod
    def from_pretrained(  # type: ignore[override]
        cls, model: str, *args: Any, **kwargs: Any
    ) -> RmbuildModelForCausalLM:
        """See :meth:`rmbuild.transformers.AutoModelForCausalLM.from_pretrained`."""
        from rmbuild.transformers.loading import load_model

        return load_model(cls, model, *args, **kwargs)

    # -- where the outputs live -------------------------------------------------------------

    @property
    def device(self) -> torch.device:
        """Where forward's outputs are (CPU unless moved with :meth:`to`); the artifact runs on
        its own runtime's device (``session.info``)."""
        return self._outputs_on

    @property
    def dtype(self) -> torch.dtype:
        return torch.float32

    def to(self, *args: Any, **kwargs: Any) -> RmbuildModelForCausalLM:  # type: ignore[override]
        """Move where the outputs are returned (``model.to("cuda")`` as on a GPU model). The
        artifact's device was chosen when it was loaded; a device torch cannot use here (a
        CPU-only torch) leaves the outputs on the CPU, with a warning, so a script written for
        a GPU runs unchanged."""
        device, _dtype, _non_blocking, _format = torch._C._nn._parse_to(*args, **kwargs)
        if device is None:
            return self
        try:
            torch.empty(0, device=device)
        except (RuntimeError, AssertionError, ValueError) as exc:
            warnings.warn(
                f"rmbuild: outputs stay on the CPU: torch here cannot use {device} "
                f"({str(exc).splitlines()[0]}); the artifact runs on "
                f"{self.session.info.get('target', 'its target')}'s device",
                stacklevel=2,
            )
            return self
        self._outputs_on = device
        return self

    def cuda(self, device: Any = None) -> RmbuildModelForCausalLM:  # type: ignore[override]
        return self.to(torch.device("cuda", device) if isinstance(device, int) else "cuda")

    def cpu(self) -> RmbuildModelForCausalLM:  # type: ignore[override]
        return self.to("cpu")

    def extra_repr(self) -> str:
        info = self.session.info
        return (
            f"artifact={str(info.get('artifact'))[:12]}, model={info.get('model')}, "
            f"target={info.get('target')}"
        )

    # -- the forward ------------------------------------------------------------------------

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        past_key_values: Cache | tuple[Any, ...] | None = None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.LongTensor | None = None,
        use_cache: bool | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        cache_position: torch.LongTensor | None = None,
        logits_to_keep: int = 0,
        **kwargs: Any,
    ) -> CausalLMOutputWithPast | tuple[Any, ...]:
        """Run the artifact on ``input_ids`` after the cached positions.

        As a transformers causal LM's forward: ``attention_mask`` covers the cached and the
        new positions (``[batch, past + new]``, 0 for padding), ``position_ids`` default to
        the positions after the cache, ``past_key_values`` is a ``DynamicCache`` (filled in
        place), a legacy tuple or None. ``logits`` are ``[batch, new, vocab]`` float32 where
        the runtime returns every position (ONNX Runtime, OpenVINO, IREE), else the last
        position's only (``[batch, 1, vocab]``: TensorRT). ``logits_to_keep`` > 0 keeps that
        many last positions (generate's prefill asks for 1). ``cache_position`` is not needed:
        the graph places tokens by the mask and the position ids.
        """
        if input_ids is None:
            raise ValueError(
                "this model runs a compiled graph that takes token ids (input_ids), not "
                "inputs_embeds"
            )
        if output_attentions or output_hidden_states:
            raise ValueError(
                "the compiled graph returns logits and the KV cache only: attentions and "
                "hidden states are not available (output_attentions / output_hidden_states)"
            )
        if use_cache is None:
            use_cache = bool(getattr(self.config, "use_cache", True))
        ids = _host(input_ids, np.int64)
        if ids.ndim == 1:
            ids = ids[None, :]
        rows, new = ids.shape
        past = self._read_cache(past_key_values, rows)
        done = int(past[0].shape[2]) if past else 0
        if attention_mask is None:
            mask = np.ones((rows, done + new), dtype=np.int64)
        else:
            mask = _host(attention_mask, np.int64)
            if mask.shape != (rows, done + new):
                raise ValueError(
                    f"attention_mask has shape {tuple(mask.shape)}; this call needs "
                    f"[{rows}, {done + new}] (the {done} cached and {new} new positions)"
                )
        self._check_length(done, new)
        loop = self.loop
        feeds: dict[str, Any] = {"input_ids": ids}
        if loop.pad:  # leading zero slots some devices need (see KVLoop), masked out
            mask = np.concatenate([np.zeros((rows, loop.pad), dtype=np.int64), mask], axis=1)
            past = [
                np.concatenate(
                    [np.zeros((rows, p.shape[1], loop.pad, p.shape[3]), p.dtype), p], axis=2
                )
                for p in past
            ]
        feeds["attention_mask"] = mask
        if loop.layout.spec("position_ids") is not None:
            if position_ids is None:
                positions = np.broadcast_to(np.arange(done, done + new, dtype=np.int64), ids.shape)
            else:
                positions = _host(position_ids, np.int64).reshape(rows, new)
            feeds["position_ids"] = np.ascontiguousarray(positions)
        feeds.update(zip(loop.past_names, past, strict=True))
        logits, presents = loop.run_positions(feeds)
        logits_t = _tensor(np.asarray(logits, dtype=np.float32))
        if logits_to_keep and logits_to_keep < logits_t.shape[1]:
            logits_t = logits_t[:, -logits_to_keep:]
        loss = None
        if labels is not None:
            if logits_t.shape[1] != new:
                raise ValueError(
                    f"a loss needs the logits of every position; {loop.what}'s runtime returns "
                    "the last position's only"
                )
            loss = self.loss_function(
                logits_t, labels.to(logits_t.device), vocab_size=logits_t.shape[-1]
            )
        cache = self._write_cache(past_key_values, presents) if use_cache else None
        out = CausalLMOutputWithPast(
            loss=loss, logits=logits_t.to(self._outputs_on), past_key_values=cache
        )
        return out if return_dict is not False else out.to_tuple()

    def _check_length(self, done: int, new: int, asked: str = "") -> None:
        """ContextTooLong (exit 6) where ``done`` + ``new`` positions pass the session's limit
        (past a learned position table or a compiled length the graph gives wrong logits or
        a vendor error)."""
        limit = self.session.context_limit
        if limit is None or done + new <= limit.value:
            return
        raise ContextTooLong(
            f"{asked or 'this forward'} takes the sequence to {done + new} positions "
            f"({done} before, {new} new), past this model's limit of {limit.value} "
            f"({limit.source})",
            limit=limit.value,
            prompt_tokens=done,
            max_tokens=new,
            context=limit.describe(),
            hint="ask for fewer new tokens or a shorter prompt; from_pretrained(..., "
            "max_model_len=N) raises the limit where the model's positions allow it",
        )

    def _read_cache(self, cache: Any, rows: int) -> list[np.ndarray]:
        """The graph's past inputs (in ``loop.past_names`` order, without pad slots) from a
        transformers cache, a legacy tuple or None (an empty cache)."""
        specs = self.loop.layout.past
        layers: list[tuple[Any, Any]] = []
        if isinstance(cache, Cache):
            if cache.get_seq_length() > 0:
                layers = list(cache)
        elif cache is not None:
            layers = [(layer[0], layer[1]) for layer in cache]
        past: list[np.ndarray] = [np.empty(0)] * len(specs)
        if not layers:
            for i, spec in enumerate(specs):
                past[i] = np.zeros((rows, spec.shape[1], 0, spec.shape[3]), dtype=spec.dtype)
            return past
        if len(layers) != len(self._pairs):
            raise ValueError(
                f"past_key_values has {len(layers)} layers; the artifact has {len(self._pairs)}"
            )
        for (key_at, value_at), (keys, values) in zip(self._pairs, layers, strict=True):
            past[key_at] = _host(keys, specs[key_at].dtype)
            past[value_at] = _host(values, specs[value_at].dtype)
        if int(past[0].shape[0]) != rows:
            raise ValueError(f"past_key_values holds {past[0].shape[0]} rows; input_ids has {rows}")
        return past

    def _write_cache(self, cache: Any, presents: list[Any]) -> DynamicCache:
        """The presents as the caller's DynamicCache (filled in place) or a new one."""
        pad = self.loop.pad
        tensors = [_tensor(np.asarray(p)[:, :, pad:, :] if pad else p) for p in presents]
        pairs = [(tensors[k], tensors[v]) for k, v in self._pairs]
        if not isinstance(cache, DynamicCache):
            if isinstance(cache, Cache):
                raise ValueError(
                    f"past_key_values is a {type(cache).__name__}; this model keeps its cache "
                    "in a DynamicCache (pass one, or none)"
                )
            cache = DynamicCache()
        _fill(cache, pairs)
        return cache

    # -- generate() -------------------------------------------------------------------------

    def _prepare_cache_for_generation(
        self, generation_config: GenerationConfig, model_kwargs: dict[str, Any], *args: Any
    ) -> None:
        """Always a plain DynamicCache (see ``__init__``); a cache the caller passed is kept."""
        if model_kwargs.get("past_key_values") is None and generation_config.use_cache is not False:
            model_kwargs["past_key_values"] = DynamicCache()

    def _prepare_generated_length(self, generation_config: Any, *args: Any, **kwargs: Any) -> Any:
        """transformers' lengths, then refused up front where they pass the context limit
        (the forward would refuse it midway, after the tokens so far were computed)."""
        config = super()._prepare_generated_length(generation_config, *args, **kwargs)
        prompt = int(args[3]) if len(args) > 3 else int(kwargs.get("input_ids_length", 0))
        if config.max_length is not None and prompt:
            self._check_length(prompt, int(config.max_length) - prompt, "generate()")
        return config

    def get_output_embeddings(self) -> None:
        return None

    def save_pretrained(self, *args: Any, **kwargs: Any) -> None:
        """Not available: the weights are compiled into the artifact, which the store keeps."""
        raise NotImplementedError(
            "an rmbuild model's weights are inside its artifact: `rmbuild checkout "
            f"{str(self.session.info.get('artifact'))[:12]} DIR` writes its files"
        )

    # -- lifetime ---------------------------------------------------------------------------

    def close(self) -> None:
        """Free the runtime and what loading opened (idempotent)."""
        self.session.close()

    def __enter__(self) -> RmbuildModelForCausalLM:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
