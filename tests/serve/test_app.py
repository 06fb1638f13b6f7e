"""``rmbuild serve`` against real clients: the official openai client (sync, async, streaming),
LangChain's ChatOpenAI and raw HTTP for what clients never send (bad JSON, huge prompts)."""

from __future__ import annotations

import asyncio
import json
import math

import pytest

from tests.serve.conftest import CHAT_TEMPLATE, Server

openai = pytest.importorskip("openai")
httpx = pytest.importorskip("httpx")
np = pytest.importorskip("numpy")

PROMPT = "The future of AI is"


def client(server: Server) -> object:
    return openai.OpenAI(base_url=server.base, api_key="unused", max_retries=0)


def test_models_lists_the_logical_model_with_its_limit(server: Server, built) -> None:  # noqa: ANN001
    (model,) = client(server).models.list().data
    assert model.id == "tiny-chat"
    assert model.owned_by == "rmbuild"
    assert model.root == built.key
    assert model.max_model_len == 256  # max_position_embeddings of the example


def test_greedy_completion_equals_the_in_process_session(server: Server, session) -> None:  # noqa: ANN001
    expected = session.generate(PROMPT, 32)
    r = client(server).completions.create(
        model="tiny-chat", prompt=PROMPT, max_tokens=32, temperature=0
    )
    assert r.choices[0].text == expected
    assert r.choices[0].finish_reason == "length"
    assert r.usage.completion_tokens == 32
    assert r.usage.prompt_tokens == len(session.tokenizer.encode(PROMPT))


def test_streamed_completion_has_the_same_text_and_usage_last(server: Server, session) -> None:  # noqa: ANN001
    stream = client(server).completions.create(
        model="tiny-chat",
        prompt=PROMPT,
        max_tokens=24,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 24
    text = "".join(c.choices[0].text for c in chunks if c.choices)
    assert text == session.generate(PROMPT, 24)
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "length"


def test_stop_strings_end_the_text_before_them(server: Server, session) -> None:  # noqa: ANN001
    full = session.generate(PROMPT, 32)
    stop = full[10:14]
    r = client(server).completions.create(
        model="tiny-chat", prompt=PROMPT, max_tokens=32, temperature=0, stop=[stop]
    )
    assert r.choices[0].text == full[: full.index(stop)]
    assert r.choices[0].finish_reason == "stop"


def test_seeded_sampling_is_reproducible(server: Server) -> None:
    c = client(server)
    runs = [
        c.completions.create(
            model="tiny-chat", prompt="The", max_tokens=16, temperature=0.9, seed=7
        )
        .choices[0]
        .text
        for _ in range(2)
    ]
    assert runs[0] == runs[1]


def test_echo_logprobs_equal_the_in_process_logits(server: Server, session) -> None:  # noqa: ANN001
    """What lm-eval's log-likelihood asks: echo, logprobs=1, max_tokens=1."""
    ids = session.tokenizer.encode(PROMPT)
    r = client(server).completions.create(
        model="tiny-chat", prompt=PROMPT, max_tokens=1, temperature=0, echo=True, logprobs=1
    )
    lp = r.choices[0].logprobs
    assert r.choices[0].text.startswith(PROMPT)
    assert lp.token_logprobs[0] is None and len(lp.token_logprobs) == len(ids) + 1
    step = session.step_fn
    for i in range(1, len(ids)):
        step.reset()
        logits = np.asarray(step.step(np.asarray(ids[:i], dtype=np.int64)), dtype=np.float64)
        logz = logits.max() + math.log(np.exp(logits - logits.max()).sum())
        assert lp.token_logprobs[i] == pytest.approx(logits[ids[i]] - logz, abs=1e-5)
        assert max(lp.top_logprobs[i].values()) == pytest.approx(logits.max() - logz, abs=1e-5)


def test_chat_uses_the_models_template(server: Server, session) -> None:  # noqa: ANN001
    messages = [{"role": "user", "content": "What is a compiler?"}]
    r = client(server).chat.completions.create(
        model="tiny-chat", messages=messages, max_tokens=12, temperature=0
    )
    rendered = "<s>user: What is a compiler?\n<s>assistant:"
    assert CHAT_TEMPLATE  # the fixture's template renders to the line above
    ids = session.tokenizer.encode(rendered, add_special_tokens=False)
    expected = session.tokenizer.decode(list(session.generate_ids(ids, 12)))
    assert r.choices[0].message.content == expected
    assert r.choices[0].message.role == "assistant"
    assert r.usage.prompt_tokens == len(ids)


def test_chat_stream_starts_with_the_role_and_ends_with_done(server: Server) -> None:
    with httpx.stream(
        "POST",
        f"{server.base}/chat/completions",
        json={
            "model": "tiny-chat",
            "messages": [{"role": "user", "content": "hi"}],
            "max_tokens": 5,
            "stream": True,
        },
        timeout=60,
    ) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        lines = [line for line in response.iter_lines() if line]
    assert lines[-1] == "data: [DONE]"
    first = json.loads(lines[0].removeprefix("data: "))
    assert first["choices"][0]["delta"]["role"] == "assistant"


def test_async_clients_in_parallel_each_get_their_own_greedy_text(
    server: Server,
    session,  # noqa: ANN001
) -> None:
    prompts = ["The future of AI is", "A cache", "Compilers are", "The", "A tokenizer", "Hello"]
    expected = {p: session.generate(p, 20) for p in prompts}

    async def main() -> dict[str, str]:
        c = openai.AsyncOpenAI(base_url=server.base, api_key="unused", max_retries=0)
        rs = await asyncio.gather(
            *(
                c.completions.create(model="tiny-chat", prompt=p, max_tokens=20, temperature=0)
                for p in prompts
            )
        )
        return {p: r.choices[0].text for p, r in zip(prompts, rs, strict=True)}

    assert asyncio.run(main()) == expected


def test_langchain_chat_openai(server: Server) -> None:
    lc = pytest.importorskip("langchain_openai")
    chat = lc.ChatOpenAI(
        base_url=server.base, api_key="unused", model="tiny-chat", max_tokens=8, temperature=0
    )
    reply = chat.invoke("Say something")
    assert isinstance(reply.content, str) and reply.content
    assert reply.response_metadata["finish_reason"] == "length"


# ---- the other endpoints ----------------------------------------------------------------------


def test_tokenize_detokenize_and_tokenizer_info(server: Server, session) -> None:  # noqa: ANN001
    t = httpx.post(f"{server.url}/tokenize", json={"prompt": PROMPT}).json()
    assert t["tokens"] == session.tokenizer.encode(PROMPT)
    assert t["max_model_len"] == 256
    d = httpx.post(f"{server.url}/detokenize", json={"tokens": t["tokens"]}).json()
    assert d["prompt"] == PROMPT
    info = httpx.get(f"{server.url}/tokenizer_info").json()
    assert info["eos_token"] == "</s>" and info["chat_template"] == CHAT_TEMPLATE


def test_health_version_metrics(server: Server, built) -> None:  # noqa: ANN001
    assert httpx.get(f"{server.url}/health").status_code == 200
    v = httpx.get(f"{server.url}/version").json()
    assert v["artifact"] == built.key and v["backend"] == "onnxruntime"
    assert "onnxruntime" in v["sdk"]
    client(server).completions.create(model="tiny-chat", prompt="A", max_tokens=3)
    text = httpx.get(f"{server.url}/metrics").text
    labels = f'artifact="{built.key[:12]}",backend="onnxruntime",device="cpu",model="tiny-chat"'
    for name in (
        "rmbuild:num_requests_running",
        "rmbuild:num_requests_waiting",
        "rmbuild:prompt_tokens_total",
        "rmbuild:generation_tokens_total",
        "rmbuild:time_to_first_token_seconds_bucket",
        "rmbuild:time_per_output_token_seconds_bucket",
        "rmbuild:e2e_request_latency_seconds_bucket",
        "rmbuild:request_queue_time_seconds_bucket",
    ):
        assert name in text, name
    generated = [
        line for line in text.splitlines() if line.startswith("rmbuild:generation_tokens_total{")
    ]
    assert generated and labels in generated[0] and float(generated[0].split()[-1]) >= 3


# ---- bad input: a clear 4xx in OpenAI's error object, and the server keeps serving ----------


def _post(server: Server, path: str, body: object, raw: bytes | None = None) -> httpx.Response:
    if raw is not None:
        return httpx.post(
            f"{server.base}{path}", content=raw, headers={"content-type": "application/json"}
        )
    return httpx.post(f"{server.base}{path}", json=body, timeout=60)


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"prompt": PROMPT, "max_tokens": -1}, "max_tokens"),
        ({"prompt": PROMPT, "max_tokens": "ten"}, "max_tokens"),
        ({"prompt": PROMPT, "temperature": -0.5}, "temperature"),
        ({"prompt": PROMPT, "n": 2}, "n"),
        ({"prompt": []}, "prompt"),
        ({"prompt": [10**9]}, "prompt"),
        ({"prompt": PROMPT, "max_tokens": 100000}, "max_tokens"),
        ({"prompt": PROMPT, "logprobs": 99}, "logprobs"),
    ],
)
def test_bad_completion_fields_are_400_naming_the_param(
    server: Server, body: dict, param: str
) -> None:
    r = _post(server, "/completions", body)
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert error["param"] == param and error["message"]


def test_context_limit_error_says_the_limit(server: Server) -> None:
    error = _post(server, "/completions", {"prompt": PROMPT, "max_tokens": 100000}).json()["error"]
    assert "256" in error["message"]


def test_malformed_json_unknown_model_and_a_huge_body(server: Server) -> None:
    r = _post(server, "/completions", None, raw=b'{"prompt": "x",')
    assert r.status_code == 400 and "JSON" in r.json()["error"]["message"]
    r = _post(server, "/completions", {"model": "other", "prompt": "x"})
    assert r.status_code == 404 and r.json()["error"]["param"] == "model"
    r = _post(server, "/completions", {"prompt": "x" * (10 * 1024 * 1024)})
    assert r.status_code in (400, 413)
    assert "error" in r.json()
    # Unknown fields are ignored, as OpenAI's API does.
    r = _post(server, "/completions", {"prompt": "A", "max_tokens": 2, "frobnicate": True})
    assert r.status_code == 200


def test_a_model_without_a_chat_template_is_400_naming_it(built, tmp_path) -> None:  # noqa: ANN001
    # The example itself declares no template; serve its artifact by id.
    from artifact_store import Store
    from rmbuild.build import compile_spec
    from tests.serve.conftest import EXAMPLE, start_server

    store = Store(built.store)
    try:
        (result,) = compile_spec(EXAMPLE / "model.yaml", store=store, targets=["cpu"])
    finally:
        store.close()
    srv = start_server(built, tmp_path, result.artifact.key)
    try:
        r = httpx.post(
            f"{srv.base}/chat/completions",
            json={"messages": [{"role": "user", "content": "hi"}]},
        )
        assert r.status_code == 400
        assert "chat template" in r.json()["error"]["message"]
        assert r.json()["error"]["param"] == "messages"
    finally:
        assert srv.stop() == 0
