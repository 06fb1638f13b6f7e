"""A session whose device is an OpenAI-compatible server: ``generate`` and ``stream`` are
proxied to its ``/v1/completions`` (streaming, with httpx); ``rmbuild serve`` runs it through
:class:`rmbuild.serve.remote.RemoteEngine`, which proxies each request the same way.

The prompt is tokenized here, with the tokenizer carried into the artifact from the model's
source, and sent as token ids, so the upstream decodes from exactly the tokens a local session
would (and a prompt past the context limit is refused here, before any request goes out).
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from rmbuild.backends.remote.client import Upstream
from rmbuild.errors import IncompatibleArtifact
from rmbuild.runtime.limits import Bound
from rmbuild.runtime.sampling import SamplingParams, sampling_params
from rmbuild.runtime.session import BackendSession, GenerationStats


class RemoteStep:
    """The decoder step of a remote session: there is none here (the upstream decodes).
    It carries the upstream's context limit for :mod:`rmbuild.runtime.limits`."""

    def __init__(self, max_model_len: int | None, where: str) -> None:
        self.max_model_len = max_model_len
        self.where = where

    def compiled_limit(self) -> Bound | None:
        if not self.max_model_len:
            return None
        return Bound(
            int(self.max_model_len),
            f"max_model_len of the upstream {self.where} (its /v1/models)",
            "start the upstream with a larger --max-model-len",
        )

    def reset(self) -> None:
        pass

    def step(self, token_ids: Any) -> Any:
        raise IncompatibleArtifact(
            f"a remote session ({self.where}) does not run forward steps here: the upstream "
            "decodes",
            hint="use generate() or stream(), or rmbuild serve, which proxy to it",
        )


@dataclass
class RemoteSession(BackendSession):
    """A :class:`BackendSession` proxied to ``upstream`` serving ``model``."""

    upstream: Upstream | None = None
    model: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def payload(
        self, prompt_ids: list[int], max_tokens: int, params: SamplingParams, **more: Any
    ) -> dict[str, Any]:
        """The ``/v1/completions`` body for a request (greedy: temperature 0)."""
        body: dict[str, Any] = {
            "model": self.model,
            "prompt": prompt_ids,
            "max_tokens": max_tokens,
            "temperature": params.temperature,
            "top_p": params.top_p,
        }
        if params.seed is not None:
            body["seed"] = params.seed
        if params.stop:
            body["stop"] = list(params.stop)
        body.update({k: v for k, v in more.items() if v is not None})
        return body

    def stream(
        self,
        prompt: str,
        max_tokens: int = 32,
        params: SamplingParams | None = None,
        *,
        temperature: float | None = None,
        top_p: float | None = None,
        seed: int | None = None,
        stop: str | Sequence[str] | None = None,
    ) -> Iterator[str]:
        """Yield the upstream's text pieces as they arrive (the checks run now)."""
        params = sampling_params(params, temperature=temperature, top_p=top_p, seed=seed, stop=stop)
        self._check_open()
        ids = self.admit(self.tokenizer.encode(prompt), max_tokens, params)
        payload = self.payload(ids, max_tokens, params, stream_options={"include_usage": True})
        return self._pieces_from(payload, len(ids))

    def _pieces_from(self, payload: dict[str, Any], prompt_tokens: int) -> Iterator[str]:
        assert self.upstream is not None
        stats = self.last_stats = GenerationStats(prompt_tokens=prompt_tokens)
        t0 = time.perf_counter()
        first: float | None = None
        for event in self.upstream.stream(payload):
            usage = event.get("usage")
            if isinstance(usage, dict):
                stats.new_tokens = int(usage.get("completion_tokens") or 0)
            for choice in event.get("choices") or []:
                text = choice.get("text") or ""
                if choice.get("finish_reason"):
                    stats.stopped = {"length": "max_tokens"}.get(
                        choice["finish_reason"], choice["finish_reason"]
                    )
                if text:
                    if first is None:
                        first = time.perf_counter()
                        stats.prefill_s = first - t0
                    yield text
        stats.decode_s = time.perf_counter() - (first or t0)

    def generate_ids(self, *args: Any, **kwargs: Any) -> Iterator[int]:
        raise IncompatibleArtifact(
            "a remote session gives text, not token ids: the upstream decodes",
            hint="use generate() or stream()",
        )

    def serving_engine(self, **kwargs: Any) -> Any:
        """What ``rmbuild serve`` runs this session with: an engine that proxies requests."""
        from rmbuild.serve.remote import RemoteEngine

        return RemoteEngine(self, **kwargs)
