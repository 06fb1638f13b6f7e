"""Hugging Face drop-in: transformers' ``generate()`` over rmbuild's artifacts.

::

    from rmbuild.transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained("tiny-llama")
    model = AutoModelForCausalLM.from_pretrained("tiny-llama", device="auto")
    inputs = tokenizer("The future of AI is", return_tensors="pt").to(model.device)
    print(tokenizer.decode(model.generate(**inputs, max_new_tokens=30)[0]))

The model is a ``transformers.PreTrainedModel`` with ``GenerationMixin``: decoding (greedy,
sampling, beam search, processors, stopping criteria, streamers) is transformers' own; only
the forward (logits and KV cache) runs the artifact. Every other name is transformers' own
(``from rmbuild.transformers import TextStreamer, set_seed``), so an app migrates by changing
``from transformers import`` to ``from rmbuild.transformers import`` and the name it loads.
Needs ``transformers`` and ``torch`` (``pip install 'rmbuild[onnx]'``); ``import rmbuild``
alone imports neither.
"""

from __future__ import annotations

try:
    import torch  # noqa: F401
    import transformers
except ImportError as exc:  # say which extra brings them, not only the missing module
    raise ImportError(
        f"rmbuild.transformers needs transformers and torch ({exc}): pip install 'rmbuild[onnx]'"
    ) from exc

from rmbuild.transformers.auto import AutoModelForCausalLM, AutoTokenizer  # noqa: E402
from rmbuild.transformers.modeling import RmbuildModelForCausalLM  # noqa: E402

__all__ = ["AutoModelForCausalLM", "AutoTokenizer", "RmbuildModelForCausalLM"]


def __getattr__(name: str) -> object:
    # Any other transformers name (TextStreamer, set_seed, StoppingCriteria...) is
    # transformers' own: an app's one import line changes, nothing else.
    try:
        return getattr(transformers, name)
    except AttributeError:
        raise AttributeError(f"module 'rmbuild.transformers' has no attribute {name!r}") from None


def __dir__() -> list[str]:
    return sorted({*globals(), *dir(transformers)})
