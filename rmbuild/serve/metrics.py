"""Prometheus metrics under vLLM's names, prefixed ``rmbuild:`` instead of ``vllm:``.

Each series carries ``model``, ``artifact``, ``backend`` and ``device`` labels, so one
dashboard shows which artifact on which device answered; a vLLM dashboard works by changing the
prefix (and its ``model_name`` label to ``model``). ``rmbuild:fallback_total`` counts moves of
the model from one target to another, with why.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

if TYPE_CHECKING:
    from rmbuild.serve.engine import Engine, Request

LABELS = ("model", "artifact", "backend", "device")
# vLLM's buckets for the latency histograms (seconds).
_TTFT = (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 10.0)
_TPOT = (0.001, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5)
_E2E = (0.01, 0.05, 0.1, 0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 60.0)


@dataclass
class Labels:
    """What the current session is: the label values of every series."""

    model: str
    artifact: str
    backend: str
    device: str

    def values(self) -> tuple[str, str, str, str]:
        return (self.model, self.artifact, self.backend, self.device)


class Metrics:
    """The server's metrics, in a registry of their own (no process-global state)."""

    def __init__(self, labels: Labels) -> None:
        self.labels = labels
        self.registry = CollectorRegistry()
        r = self.registry
        self.running = Gauge(
            "rmbuild:num_requests_running", "Requests decoding now.", LABELS, registry=r
        )
        self.waiting = Gauge(
            "rmbuild:num_requests_waiting", "Requests waiting to start.", LABELS, registry=r
        )
        self.prompt_tokens = Counter(
            "rmbuild:prompt_tokens", "Prompt tokens processed.", LABELS, registry=r
        )
        self.generation_tokens = Counter(
            "rmbuild:generation_tokens", "Tokens generated.", LABELS, registry=r
        )
        self.requests = Counter(
            "rmbuild:request_success",
            "Requests ended, by finish reason.",
            (*LABELS, "finished_reason"),
            registry=r,
        )
        self.ttft = Histogram(
            "rmbuild:time_to_first_token_seconds",
            "Arrival to first token.",
            LABELS,
            buckets=_TTFT,
            registry=r,
        )
        self.tpot = Histogram(
            "rmbuild:time_per_output_token_seconds",
            "Time between output tokens.",
            LABELS,
            buckets=_TPOT,
            registry=r,
        )
        self.e2e = Histogram(
            "rmbuild:e2e_request_latency_seconds",
            "Arrival to last token.",
            LABELS,
            buckets=_E2E,
            registry=r,
        )
        self.queue_time = Histogram(
            "rmbuild:request_queue_time_seconds",
            "Arrival to the start of the prefill.",
            LABELS,
            buckets=_E2E,
            registry=r,
        )
        self.fallbacks = Counter(
            "rmbuild:fallback",
            "Moves of the model from one target to another.",
            ("from", "to", "reason"),
            registry=r,
        )

    def observe(self, request: Request, outcome: str) -> None:
        """Record one ended request (called from the engine's thread)."""
        v = self.labels.values()
        self.requests.labels(*v, outcome).inc()
        if request.started is None:
            return
        self.prompt_tokens.labels(*v).inc(len(request.prompt_ids))
        self.generation_tokens.labels(*v).inc(request.completion_tokens)
        self.queue_time.labels(*v).observe(request.started - request.arrival)
        end = request.finished_at or time.monotonic()
        self.e2e.labels(*v).observe(end - request.arrival)
        if request.first_token is not None:
            self.ttft.labels(*v).observe(request.first_token - request.arrival)
            if request.completion_tokens > 1:
                per = (end - request.first_token) / (request.completion_tokens - 1)
                self.tpot.labels(*v).observe(per)

    def sample_engine(self, engine: Engine) -> None:
        """Refresh the gauges from the engine (before each scrape)."""
        v = self.labels.values()
        self.running.labels(*v).set(engine.num_running)
        self.waiting.labels(*v).set(engine.num_waiting)
