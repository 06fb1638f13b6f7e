"""Token selection: greedy by default, temperature and nucleus (top-p) sampling on request."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # numpy comes with the backends' extras; `rmbuild run --help` needs none
    import numpy as np


@dataclass(frozen=True)
class SamplingParams:
    """How the next token is picked, and when generation stops early.

    ``temperature == 0`` means greedy; ``top_p`` < 1 keeps the smallest set of tokens whose
    probability reaches it; ``seed`` makes sampling reproducible; ``stop`` strings end the
    text where one first appears (the stop string itself is not returned, as in OpenAI's API).
    """

    temperature: float = 0.0
    top_p: float = 1.0
    seed: int | None = None
    stop: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.temperature < 0:
            raise ValueError("temperature must be >= 0")
        if not 0 < self.top_p <= 1:
            raise ValueError("top_p must be in (0, 1]")
        stop = (self.stop,) if isinstance(self.stop, str) else tuple(self.stop or ())
        if not all(isinstance(s, str) and s for s in stop):
            raise ValueError("stop must be a non-empty string or a sequence of them")
        object.__setattr__(self, "stop", stop)


def sampling_params(
    params: SamplingParams | None = None,
    *,
    temperature: float | None = None,
    top_p: float | None = None,
    seed: int | None = None,
    stop: str | Sequence[str] | None = None,
) -> SamplingParams:
    """``params`` (default: greedy) with the keyword arguments that are given replacing its
    fields: what ``generate``, ``stream`` and ``generate_ids`` accept, one way for all three."""
    given = {
        name: value
        for name, value in (
            ("temperature", temperature),
            ("top_p", top_p),
            ("seed", seed),
            ("stop", stop),
        )
        if value is not None
    }
    base = params if params is not None else SamplingParams()
    if not isinstance(base, SamplingParams):
        raise TypeError(f"params must be a SamplingParams, not {type(base).__name__}")
    return replace(base, **given) if given else base


def sample(logits: np.ndarray, params: SamplingParams, rng: np.random.Generator) -> int:
    """Pick the next token from a 1-D logits vector."""
    import numpy as np

    if params.temperature == 0:
        return int(np.argmax(logits))
    scaled = logits.astype(np.float64) / params.temperature
    scaled -= scaled.max()
    probs = np.exp(scaled)
    probs /= probs.sum()
    if params.top_p < 1.0:
        order = np.argsort(-probs)
        cumulative = np.cumsum(probs[order])
        # Keep the smallest prefix whose mass reaches top_p (always at least one token).
        keep = order[: int(np.searchsorted(cumulative, params.top_p) + 1)]
        mask = np.zeros_like(probs)
        mask[keep] = probs[keep]
        probs = mask / mask.sum()
    return int(rng.choice(len(probs), p=probs))
