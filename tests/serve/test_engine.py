"""The engine with a decoder step the test controls: back-pressure (429 with Retry-After),
interleaving requests that each keep their own KV cache, a backend that dies mid-request."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path
from typing import Any

import pytest

np = pytest.importorskip("numpy")
httpx = pytest.importorskip("httpx")
pytest.importorskip("tokenizers")

from rmbuild.runtime.kvloop import KVLoop  # noqa: E402
from rmbuild.runtime.session import BackendSession  # noqa: E402
from rmbuild.runtime.tokenizer import Tokenizer  # noqa: E402
from rmbuild.serve.app import Served, create_app  # noqa: E402
from rmbuild.serve.engine import Engine, Failed, Finished, QueueFull, Request, Token  # noqa: E402
from rmbuild.serve.metrics import Labels, Metrics  # noqa: E402
from rmbuild.serve.model import LogicalModel  # noqa: E402
from rmbuild.serve.textstream import TextStream  # noqa: E402

EXAMPLE_MODEL = Path(__file__).resolve().parents[2] / "examples" / "tiny-llama" / "model"
VOCAB = 1000


class GatedStep:
    """A decoder step (not the shared KV loop, so requests run one after another) that
    predicts ``last token + 1`` and waits at ``gate`` before every step."""

    def __init__(self) -> None:
        self.gate = threading.Event()
        self.gate.set()
        self.fail = False

    def reset(self) -> None:
        pass

    def step(self, token_ids: np.ndarray) -> np.ndarray:
        self.gate.wait(30)
        if self.fail:
            raise RuntimeError("device lost")
        logits = np.zeros(VOCAB, dtype=np.float32)
        logits[(int(token_ids[-1]) + 1) % VOCAB] = 1.0
        return logits


class CountingLoop(KVLoop):
    """The shared KV loop over a fake graph whose "cache" is the tokens seen: the next token
    is the sum of the sequence so far, so a request that saw another's cache goes wrong."""

    def __init__(self) -> None:
        self.layout = None  # type: ignore[assignment]
        self.reset()

    def reset(self) -> None:
        self.past = []
        self.length = 0
        self._checked = True

    def step(self, token_ids: np.ndarray) -> np.ndarray:
        self.past = [*self.past, *map(int, token_ids)]
        self.length = len(self.past)
        logits = np.zeros(VOCAB, dtype=np.float32)
        logits[sum(self.past) % VOCAB] = 1.0
        return logits


def _session(step: object) -> BackendSession:
    return BackendSession(step_fn=step, tokenizer=Tokenizer(EXAMPLE_MODEL))  # type: ignore[arg-type]


def _served(engine: Engine) -> Served:
    labels = Labels(model="m", artifact="0" * 12, backend="fake", device="cpu")
    metrics = Metrics(labels)
    engine.observer = metrics.observe
    return Served(model=LogicalModel(name="m"), engine=engine, metrics=metrics, info={})


async def _run(engine: Engine, prompt: list[int], n: int, **fields: Any) -> list[int]:
    request = engine.submit(Request(prompt_ids=prompt, max_tokens=n, **fields))
    out = []
    while True:
        event = await request.events.get()  # type: ignore[union-attr]
        if isinstance(event, Token):
            out.append(event.token_id)
        elif isinstance(event, Finished):
            return out
        elif isinstance(event, Failed):
            raise event.error


def test_past_the_queue_bound_submit_raises_and_http_says_429() -> None:
    step = GatedStep()
    engine = Engine(_session(step), max_running=1, max_queue=0)
    app = create_app(_served(engine))

    async def main() -> None:
        step.gate.clear()
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
            body = {"prompt": [5, 6], "max_tokens": 3}
            first = asyncio.create_task(c.post("/v1/completions", json=body))
            while engine.num_running == 0:
                await asyncio.sleep(0.01)
            refused = await c.post("/v1/completions", json=body)
            assert refused.status_code == 429
            assert refused.headers["retry-after"] == "1"
            assert refused.json()["error"]["type"] == "rate_limit_error"
            with pytest.raises(QueueFull):
                engine.submit(Request(prompt_ids=[1], max_tokens=1))
            step.gate.set()
            done = await first
            assert done.status_code == 200
            assert done.json()["usage"]["completion_tokens"] == 3

    try:
        asyncio.run(main())
    finally:
        step.gate.set()
        engine.stop(5)


def test_interleaved_requests_keep_their_own_cache() -> None:
    engine = Engine(_session(CountingLoop()), max_running=4, max_queue=8)

    def alone(prompt: list[int], n: int) -> list[int]:
        seq, out = list(prompt), []
        for _ in range(n):
            token = sum(seq) % VOCAB
            out.append(token)
            seq.append(token)
        return out

    prompts = [[5], [7, 8], [100], [3, 3, 3], [11], [400, 1]]

    async def main() -> list[list[int]]:
        return await asyncio.gather(*(_run(engine, p, 6) for p in prompts))

    try:
        assert asyncio.run(main()) == [alone(p, 6) for p in prompts]
    finally:
        engine.stop(5)


@pytest.mark.parametrize("refused", [False, True], ids=["one-pass", "runtime-refuses-it"])
def test_requests_that_arrive_together_share_one_prefill_and_get_their_own_tokens(
    refused: bool,
) -> None:
    """Three requests waiting together run their prompts in one left-padded pass; where the
    runtime refuses such a pass, each prompt runs alone and still gets its own tokens."""
    from tests.runtime.test_batching import FakeGraph, _alone

    class Recorded(FakeGraph):
        """Records each pass's (rows, tokens); the first pass waits for ``gate``."""

        def __init__(self) -> None:
            super().__init__()
            self.passes: list[tuple[int, int]] = []
            self.gate = threading.Event()

        def _run_batch(self, feeds):  # noqa: ANN001, ANN202
            self.gate.wait(30)
            rows, tokens = feeds["input_ids"].shape
            if refused and rows > 1 and tokens > 1:
                raise RuntimeError("this runtime takes one prompt per pass")
            self.passes.append((rows, tokens))
            return super()._run_batch(feeds)

    step = Recorded()
    engine = Engine(_session(step), max_running=8, max_queue=8)
    first, burst = [7, 7], [[5, 9, 2], [400], [1, 2, 3, 4, 5, 6, 7]]

    def run(prompt: list[int]) -> Any:
        return _run(engine, prompt, 5, ignore_eos=True)

    async def main() -> list[list[int]]:
        held = asyncio.ensure_future(run(first))  # its prefill waits at the gate
        while not step.passes and not engine.num_running:
            await asyncio.sleep(0.01)
        rest = [asyncio.ensure_future(run(p)) for p in burst]
        while engine.num_waiting < len(burst):
            await asyncio.sleep(0.01)
        step.gate.set()
        return await asyncio.gather(held, *rest)

    try:
        got = asyncio.run(main())
    finally:
        step.gate.set()
        engine.stop(5)
    assert got == [_alone(p, 5) for p in [first, *burst]]
    assert engine.dead is None
    prefills = [shape for shape in step.passes if shape[1] > 1]
    if refused:  # each prompt of the burst alone ([400] is one token: a one-token pass)
        assert prefills == [(1, 2), (1, 3), (1, 7)]
        assert (1, 1) in step.passes
    else:  # first's, then the burst's: one pass, left-padded to the longest prompt
        assert prefills == [(1, 2), (3, 7)]


def test_a_backend_failure_fails_the_running_request_and_marks_the_engine_dead() -> None:
    step = GatedStep()
    engine = Engine(_session(step), max_running=1, max_queue=4)
    app = create_app(_served(engine))

    async def main() -> None:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
            assert (await c.get("/health")).status_code == 200
            step.fail = True
            r = await c.post("/v1/completions", json={"prompt": [1], "max_tokens": 2})
            assert r.status_code == 500
            assert "device lost" in r.json()["error"]["message"]
            health = await c.get("/health")
            assert health.status_code == 503 and "device lost" in health.json()["reason"]

    try:
        asyncio.run(main())
    finally:
        engine.stop(5)


class CountedStep(GatedStep):
    """Runs one step per release of ``steps`` and counts them."""

    def __init__(self) -> None:
        super().__init__()
        self.steps = threading.Semaphore(0)
        self.count = 0

    def step(self, token_ids: np.ndarray) -> np.ndarray:
        assert self.steps.acquire(timeout=30), "the test stopped releasing steps"
        self.count += 1
        return super().step(token_ids)


def test_a_client_that_disconnects_mid_stream_stops_within_a_step() -> None:
    uvicorn = pytest.importorskip("uvicorn")
    step = CountedStep()
    engine = Engine(_session(step), max_running=1, max_queue=4)
    served = _served(engine)
    config = uvicorn.Config(create_app(served), host="127.0.0.1", port=0, log_level="error")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        while not server.started:
            threading.Event().wait(0.01)
        port = server.servers[0].sockets[0].getsockname()[1]
        # Greedy: tokens 6, 7, … whose text is never empty, so the first one is sent at once
        # (a sampled byte token can be half a character, held back until the next).
        body = {"prompt": [5], "max_tokens": 200, "stream": True, "temperature": 0}
        step.steps.release(2)  # the prefill and one decode step
        with httpx.stream(
            "POST", f"http://127.0.0.1:{port}/v1/completions", json=body, timeout=30
        ) as r:
            for line in r.iter_lines():
                if line.startswith("data: {"):
                    break  # one token, then hang up

        # The server learns of the hang-up when it next writes to the client: the next token
        # (or, on a busy machine, one of the next few) finds it gone, and the request is marked.
        def marked() -> bool:
            return all(r.cancelled for r in list(engine._running))

        released = 0
        while not marked() and released < 5:
            step.steps.release()
            released += 1
            until = time.monotonic() + 2
            while not marked() and time.monotonic() < until:
                threading.Event().wait(0.01)
        assert marked(), "5 tokens after the hang-up, the server still had not noticed"
        # Marked: the step under way may finish; no other runs, whatever is released.
        at_mark = step.count
        step.steps.release(3)
        deadline = time.monotonic() + 30
        while engine.num_running and time.monotonic() < deadline:
            threading.Event().wait(0.01)
        assert engine.num_running == 0
        assert step.count <= at_mark + 1  # of the 200 tokens asked for
        text = served.metrics.requests.labels(*served.metrics.labels.values(), "cancelled")
        # The engine counts the outcome just after the request leaves the running list.
        while text._value.get() == 0 and time.monotonic() < deadline:
            threading.Event().wait(0.01)
        assert text._value.get() == 1
    finally:
        step.steps.release(1000)
        server.should_exit = True
        thread.join(10)
        engine.stop(5)


def test_text_decoded_on_hand_over_joins_to_the_full_decode_and_a_collect_wakes_rarely(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Without stop strings or log-probabilities the engine's thread sends ids only; the event
    # loop decodes what waited together. A collected request is not handed its tokens one by
    # one (each hand-over wakes the loop and takes the GIL from the engine).
    tokenizer = Tokenizer(EXAMPLE_MODEL)
    engine = Engine(_session(CountingLoop()), max_running=4)
    handovers = 0
    real = Request._hand_over

    def counted(self: Request) -> None:
        nonlocal handovers
        handovers += 1
        real(self)

    monkeypatch.setattr(Request, "_hand_over", counted)
    app = create_app(_served(engine))

    async def main() -> tuple[list[Token], Finished, str]:
        request = engine.submit(Request(prompt_ids=[3, 4], max_tokens=40, stream=True))
        tokens: list[Token] = []
        while True:
            event = await request.events.get()  # type: ignore[union-attr]
            if isinstance(event, Token):
                tokens.append(event)
            else:
                assert isinstance(event, Finished)
                break
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
            before = handovers
            body = {"prompt": [3, 4], "max_tokens": 40, "temperature": 0}
            r = await c.post("/v1/completions", json=body)
            assert handovers - before <= 3, handovers - before
        return tokens, event, r.json()["choices"][0]["text"]

    try:
        tokens, end, collected = asyncio.run(main())
    finally:
        engine.stop(5)
    ids = [t.token_id for t in tokens]
    assert len(ids) == 40
    assert all(t.text is not None for t in tokens) and end.text is not None
    full = tokenizer.decode(ids)
    assert "".join(t.text for t in tokens) + end.text == full  # type: ignore[misc]
    assert collected == full


def test_a_decode_that_fails_on_the_event_loop_fails_the_request_not_hangs_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The text of a request without stop strings is decoded on the event loop, in a callback
    # whose exception would only be logged: the consumer is told, and the engine drops it.
    def broken(self: TextStream, tokens: list[int]) -> str:
        raise RuntimeError("tokenizer exploded")

    monkeypatch.setattr(TextStream, "push_many", broken)
    engine = Engine(_session(CountingLoop()), max_running=2)

    async def main() -> list[object]:
        request = engine.submit(Request(prompt_ids=[3, 4], max_tokens=1000))
        got: list[object] = []
        while not got or isinstance(got[-1], Token):
            got.append(await asyncio.wait_for(request.events.get(), 30))  # type: ignore[union-attr]
        return got

    try:
        got = asyncio.run(main())
        deadline = time.monotonic() + 30
        while engine.num_running and time.monotonic() < deadline:
            time.sleep(0.01)
        assert engine.num_running == 0  # dropped, not generating its 1000 tokens
    finally:
        engine.stop(5)
    assert isinstance(got[-1], Failed) and "tokenizer exploded" in str(got[-1].error)
