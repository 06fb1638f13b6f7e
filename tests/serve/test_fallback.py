"""Fallback and switching of a served model, with sessions the test controls: a backend that
fails mid-request under 32 concurrent requests (collected ones replayed on the next candidate,
streams already sending end with an error event and [DONE]), a candidate that fails to load,
a live switch that drops no queued request, and the end of the candidates.

The same with real processes (a remote upstream killed under 32 requests): test_remote.py."""

from __future__ import annotations

import asyncio
import json
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

np = pytest.importorskip("numpy")
httpx = pytest.importorskip("httpx")
pytest.importorskip("fastapi")
pytest.importorskip("prometheus_client")
pytest.importorskip("tokenizers")

from artifact_store import ArtifactRecord  # noqa: E402
from rmbuild.errors import ArtifactUnloadable, UsageError  # noqa: E402
from rmbuild.runtime.kvloop import KVLoop  # noqa: E402
from rmbuild.runtime.session import BackendSession  # noqa: E402
from rmbuild.runtime.tokenizer import Tokenizer  # noqa: E402
from rmbuild.serve.app import Served, create_app  # noqa: E402
from rmbuild.serve.model import Candidate, LogicalModel  # noqa: E402
from rmbuild.serve.router import ServedModel  # noqa: E402

EXAMPLE_MODEL = Path(__file__).resolve().parents[2] / "examples" / "tiny-llama" / "model"
VOCAB = 1000


class Step(KVLoop):
    """The shared KV loop (so requests decode together, each with its own cache) over a fake
    graph that predicts ``last token + shift``; after ``fail_after`` steps every step raises,
    as a device that was lost."""

    def __init__(self, shift: int = 1, fail_after: int | None = None) -> None:
        self.layout = None  # type: ignore[assignment]
        self.shift = shift
        self.fail_after = fail_after
        self.steps = 0
        self.gate = threading.Event()
        self.gate.set()
        self.closed = False
        self.reset()

    def reset(self) -> None:
        self.past: list[int] = []
        self.length = 0
        self._checked = True

    def step(self, token_ids: Any) -> Any:
        self.gate.wait(30)
        self.steps += 1
        self.past = [*self.past, *map(int, token_ids)]
        self.length = len(self.past)
        if self.fail_after is not None and self.steps > self.fail_after:
            raise RuntimeError("device lost")
        logits = np.zeros(VOCAB, dtype=np.float32)
        logits[(int(token_ids[-1]) + self.shift) % VOCAB] = 1.0
        return logits

    def close(self) -> None:
        self.closed = True


def _record(target: str, backend: str) -> ArtifactRecord:
    now = datetime.now(UTC)
    return ArtifactRecord(
        key=(target.encode().hex() + "0" * 64)[:64],
        manifest_digest="",
        model="m",
        target=target,
        backend=backend,
        created_at=now,
        last_used_at=now,
        size=0,
    )


def _model(*targets: tuple[str, str]) -> LogicalModel:
    return LogicalModel(
        name="m",
        candidates=[Candidate(_record(t, "fake"), resource) for t, resource in targets],
    )


@pytest.fixture
def steps(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """target -> the Step its sessions run (or an exception its load raises)."""
    table: dict[str, Any] = {}
    tokenizer = Tokenizer(EXAMPLE_MODEL)

    def load(key: str, **options: Any) -> BackendSession:
        target = next(t for t in table if _record(t, "fake").key == key)
        found = table[target]
        if isinstance(found, BaseException):
            raise found
        return BackendSession(
            step_fn=found,
            tokenizer=tokenizer,
            info={"backend": "fake", "device": target, "artifact": key},
        )

    monkeypatch.setattr("rmbuild.loading.load", load)
    return table


def _app(served_model: ServedModel) -> Any:
    served = Served(
        model=served_model.model,
        engine=served_model,  # type: ignore[arg-type]
        metrics=served_model.metrics,
        info=served_model.info,
    )
    return create_app(served)


def _client(app: Any) -> httpx.AsyncClient:
    # A loopback base URL: /admin/switch takes a keyless request only from this machine.
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1")


def _expected(prompt: int, n: int, shift: int) -> list[int]:
    return [(prompt + shift * (i + 1)) % VOCAB for i in range(n)]


def _metric(text: str, name: str, **labels: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def _sse(text: str) -> list[Any]:
    events = []
    for block in text.split("\n\n"):
        if block.startswith("data: "):
            data = block[len("data: ") :]
            events.append(data if data == "[DONE]" else json.loads(data))
    return events


def test_a_backend_failure_under_32_requests_moves_to_the_next_candidate(
    steps: dict[str, Any],
) -> None:
    # The primary dies after 40 steps: some requests are mid-way, some not started yet.
    steps["npu-t"] = Step(shift=1, fail_after=40)
    steps["cpu-t"] = Step(shift=1)
    served = ServedModel.start(
        _model(("npu-t", "npu"), ("cpu-t", "cpu")), store=None, max_running=8
    )  # type: ignore[arg-type]
    app = _app(served)

    async def one(c: httpx.AsyncClient, i: int) -> tuple[str, Any]:
        body = {"prompt": [i + 1], "max_tokens": 6, "temperature": 0}
        if i % 2:
            r = await c.post("/v1/completions", json={**body, "stream": True})
            return "stream", (r.status_code, _sse(r.text))
        r = await c.post("/v1/completions", json=body)
        return "plain", (r.status_code, r.json())

    async def main() -> tuple[list[Any], Any, Any]:
        async with _client(app) as c:
            # All 32 are queued before the first step ends, so 8 decode together when the
            # device is lost, whatever the machine's speed: some streams are mid-way then.
            steps["npu-t"].gate.clear()
            tasks = [asyncio.create_task(one(c, i)) for i in range(32)]
            while served.num_running + served.num_waiting < 32:
                await asyncio.sleep(0.01)
            steps["npu-t"].gate.set()
            results = await asyncio.gather(*tasks)
            return results, (await c.get("/health")), (await c.get("/metrics")).text

    try:
        results, health, metrics = asyncio.run(main())
    finally:
        steps["npu-t"].gate.set()
        served.stop(10)
    plain = [(i, r) for i, (kind, r) in enumerate(results) if kind == "plain"]
    streams = [(i, r) for i, (kind, r) in enumerate(results) if kind == "stream"]
    # 0 collected requests fail, and each one's answer is whole (no token of the dead run).
    tokenizer = Tokenizer(EXAMPLE_MODEL)
    for i, (status, body) in plain:
        assert status == 200, body
        assert body["usage"]["completion_tokens"] == 6
        assert body["choices"][0]["text"] == tokenizer.decode(_expected(i + 1, 6, 1))
    errors = 0
    for _i, (status, events) in streams:
        if status != 200:  # refused before its first token: a plain HTTP error
            pytest.fail(f"a stream that had sent nothing was not replayed: {events}")
        assert events[-1] == "[DONE]"
        last = events[-2]
        if "error" in last:
            errors += 1
            assert "device lost" in last["error"]["message"]
        else:
            assert last["choices"][0]["finish_reason"] == "length"
    assert _metric(metrics, "rmbuild:fallback_total", **{"from": "npu-t", "to": "cpu-t"}) == 1
    assert 'reason="backend_error"' in metrics
    assert health.status_code == 200
    assert health.json()["target"] == "cpu-t" and health.json()["device"] == "cpu-t"
    assert health.json()["moves"][0]["reason"] == "backend_error"
    # The metrics' labels follow the model: the requests served after the move count there.
    assert 'device="cpu-t"' in metrics
    assert steps["npu-t"].closed  # the dead session was closed
    # Streams were mid-way when the device was lost (8 decode together): they end with the
    # error, the others (not started, or started on the next candidate) finish.
    assert 0 < errors < len(streams)


def test_collected_requests_with_tokens_are_replayed_whole(steps: dict[str, Any]) -> None:
    # Different predictions on the two devices: a replay that kept the dead run's tokens
    # would mix them.
    steps["gpu-t"] = Step(shift=1, fail_after=3)
    steps["cpu-t"] = Step(shift=2)
    served = ServedModel.start(_model(("gpu-t", "gpu"), ("cpu-t", "cpu")), store=None)  # type: ignore[arg-type]
    app = _app(served)

    async def main() -> Any:
        async with _client(app) as c:
            r = await c.post(
                "/v1/completions", json={"prompt": [10], "max_tokens": 5, "temperature": 0}
            )
            return r.status_code, r.json()

    try:
        status, body = asyncio.run(main())
    finally:
        served.stop(10)
    assert status == 200, body
    assert body["usage"]["completion_tokens"] == 5
    tokenizer = Tokenizer(EXAMPLE_MODEL)
    assert body["choices"][0]["text"] == tokenizer.decode(_expected(10, 5, 2))


def test_a_candidate_that_fails_to_load_is_skipped_and_counted(steps: dict[str, Any]) -> None:
    steps["npu-t"] = ArtifactUnloadable("the npu runtime could not load it")
    steps["cpu-t"] = Step()
    served = ServedModel.start(_model(("npu-t", "npu"), ("cpu-t", "cpu")), store=None)  # type: ignore[arg-type]
    try:
        assert served.info["target"] == "cpu-t"
        status = served.status()
        assert status["candidates"][0]["failure"] == "the npu runtime could not load it"
        assert status["moves"][0]["reason"] == "load_failed"
        value = served.metrics.fallbacks.labels("npu-t", "cpu-t", "load_failed")._value.get()
        assert value == 1
    finally:
        served.stop(10)


def test_the_last_candidate_failing_fails_its_requests_and_health_says_why(
    steps: dict[str, Any],
) -> None:
    steps["cpu-t"] = Step(fail_after=0)
    served = ServedModel.start(_model(("cpu-t", "cpu")), store=None)  # type: ignore[arg-type]
    app = _app(served)

    async def main() -> tuple[Any, Any, Any]:
        async with _client(app) as c:
            r = await c.post("/v1/completions", json={"prompt": [1], "max_tokens": 2})
            again = await c.post("/v1/completions", json={"prompt": [1], "max_tokens": 2})
            return r, again, await c.get("/health")

    try:
        r, again, health = asyncio.run(main())
    finally:
        served.stop(10)
    assert r.status_code == 500 and "device lost" in r.json()["error"]["message"]
    assert again.status_code == 503
    assert health.status_code == 503 and "device lost" in health.json()["reason"]


def test_switch_moves_the_live_model_without_dropping_queued_requests(
    steps: dict[str, Any],
) -> None:
    gpu, cpu = Step(shift=1), Step(shift=1)
    steps["gpu-t"], steps["cpu-t"] = gpu, cpu
    served = ServedModel.start(
        _model(("gpu-t", "gpu"), ("cpu-t", "cpu")),
        store=None,  # type: ignore[arg-type]
        max_running=1,
        max_queue=16,
    )
    app = _app(served)

    async def main() -> tuple[list[Any], Any, Any, Any]:
        async with _client(app) as c:
            gpu.gate.clear()  # one request runs (stuck), the others wait in the queue
            tasks = [
                asyncio.create_task(
                    c.post("/v1/completions", json={"prompt": [i + 1], "max_tokens": 4})
                )
                for i in range(6)
            ]
            while served.num_waiting < 5:
                await asyncio.sleep(0.01)
            switching = asyncio.create_task(c.post("/admin/switch", json={"to": "cpu"}))
            while served.info.get("target") != "cpu-t":
                await asyncio.sleep(0.01)
            gpu.gate.set()
            done = await asyncio.gather(*tasks)
            bad = await c.post("/admin/switch", json={"to": "tpu"})
            return done, await switching, bad, await c.get("/health")

    try:
        done, switched, bad, health = asyncio.run(main())
    finally:
        gpu.gate.set()
        served.stop(10)
    assert [r.status_code for r in done] == [200] * 6
    assert all(r.json()["usage"]["completion_tokens"] == 4 for r in done)
    assert switched.status_code == 200 and switched.json()["target"] == "cpu-t"
    assert cpu.steps >= 5 * 4  # the waiting requests ran on the new session
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "to"
    assert "gpu-t" in bad.json()["error"]["message"]  # the candidates are named
    assert health.json()["moves"][-1]["reason"] == "switch"
    assert served.metrics.fallbacks.labels("gpu-t", "cpu-t", "switch")._value.get() == 1
    # The old session closes once its running request finished.
    for _ in range(100):
        if gpu.closed:
            break
        threading.Event().wait(0.05)
    assert gpu.closed


def test_switch_api_names_what_it_cannot_switch_to(steps: dict[str, Any]) -> None:
    steps["cpu-t"] = Step()
    served = ServedModel.start(_model(("cpu-t", "cpu")), store=None)  # type: ignore[arg-type]
    try:
        with pytest.raises(UsageError, match="no candidate 'npu'"):
            served.switch("npu")
        assert served.switch("cpu")["target"] == "cpu-t"  # already there: nothing moves
        assert served.moves == []
    finally:
        served.stop(10)


def test_admin_switch_needs_the_key_when_the_server_has_one(steps: dict[str, Any]) -> None:
    steps["gpu-t"], steps["cpu-t"] = Step(), Step()
    served = ServedModel.start(_model(("gpu-t", "gpu"), ("cpu-t", "cpu")), store=None)  # type: ignore[arg-type]
    served_app = Served(
        model=served.model,
        engine=served,  # type: ignore[arg-type]
        metrics=served.metrics,
        info=served.info,
    )
    app = create_app(served_app, api_key="k1")

    async def main() -> tuple[Any, Any]:
        async with _client(app) as c:
            anonymous = await c.post("/admin/switch", json={"to": "cpu"})
            keyed = await c.post(
                "/admin/switch", json={"to": "cpu"}, headers={"Authorization": "Bearer k1"}
            )
            return anonymous, keyed

    try:
        anonymous, keyed = asyncio.run(main())
    finally:
        served.stop(10)
    assert anonymous.status_code == 401
    assert keyed.status_code == 200 and keyed.json()["target"] == "cpu-t"


def test_admin_switch_without_a_key_is_refused_off_loopback(steps: dict[str, Any]) -> None:
    steps["gpu-t"], steps["cpu-t"] = Step(), Step()
    served = ServedModel.start(_model(("gpu-t", "gpu"), ("cpu-t", "cpu")), store=None)  # type: ignore[arg-type]
    app = _app(served)

    async def main() -> Any:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://10.1.2.3") as c:
            return await c.post("/admin/switch", json={"to": "cpu"})

    try:
        refused = asyncio.run(main())
    finally:
        served.stop(10)
    assert refused.status_code == 403
    assert served.info["target"] == "gpu-t"


# ---- the Python API: rmbuild.load("NAME") -> ModelSession ------------------------------------


def _model_session(*targets: tuple[str, str]) -> Any:
    from rmbuild.serve.session import ModelSession

    return ModelSession(_model(*targets), store=None)  # type: ignore[arg-type]


def test_model_session_generate_moves_to_the_next_candidate(steps: dict[str, Any]) -> None:
    steps["npu-t"] = ArtifactUnloadable("no NPU runtime")
    steps["gpu-t"] = Step(shift=1, fail_after=3)
    steps["cpu-t"] = Step(shift=2)
    session = _model_session(("npu-t", "npu"), ("gpu-t", "gpu"), ("cpu-t", "cpu"))
    try:
        assert session.target == "gpu-t"
        assert session.moves == [{"from": "npu-t", "to": "gpu-t", "reason": "load_failed"}]
        ids = session.tokenizer.encode("The")
        text = session.generate("The", 5)
        # Run again whole on the CPU's session (its own predictions, none of the GPU's).
        assert text == session.tokenizer.decode(_expected(ids[-1], 5, 2))
        assert session.target == "cpu-t" and steps["gpu-t"].closed
        assert session.moves[-1] == {"from": "gpu-t", "to": "cpu-t", "reason": "backend_error"}
    finally:
        session.close()


def test_model_session_stream_moves_only_before_its_first_piece(steps: dict[str, Any]) -> None:
    steps["gpu-t"] = Step(shift=1, fail_after=0)  # fails at the prefill
    steps["cpu-t"] = Step(shift=1, fail_after=3)  # fails after its first pieces
    session = _model_session(("gpu-t", "gpu"), ("cpu-t", "cpu"))
    try:
        pieces = session.stream("The", 8)
        assert session.target == "cpu-t"  # moved before anything was yielded
        got = [next(pieces)]
        with pytest.raises(RuntimeError, match="device lost"):
            got += list(pieces)
        assert got[0]
    finally:
        session.close()


def test_model_session_switch_and_caller_errors_do_not_move(steps: dict[str, Any]) -> None:
    from rmbuild.errors import ContextTooLong
    from rmbuild.runtime.limits import resolve

    steps["cpu-t"], steps["gpu-t"] = Step(shift=1), Step(shift=2)
    session = _model_session(("cpu-t", "cpu"), ("gpu-t", "gpu"))
    try:
        session.session.context_limit = resolve({"max_position_embeddings": 8}, None)
        with pytest.raises(ContextTooLong):
            session.generate("The future of AI is", 32)
        assert session.target == "cpu-t" and session.moves == []  # the caller's mistake
        session.switch("gpu")
        assert session.target == "gpu-t" and steps["cpu-t"].closed
        assert session.moves == [{"from": "cpu-t", "to": "gpu-t", "reason": "switch"}]
        with pytest.raises(UsageError, match="no candidate 'npu'"):
            session.switch("npu")
        assert session.target == "gpu-t"
    finally:
        session.close()
