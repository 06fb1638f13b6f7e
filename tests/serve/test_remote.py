"""A remote upstream as a device: ``rmbuild serve`` of the example's CPU artifact plays the
OpenAI-compatible server (a real peer; the vLLM one is test_vllm.py), and a ``remote-openai``
target makes it a candidate of class ``remote``: built without a tool touching the network or
the key, run and loaded like any artifact, served by proxy, and fallen back from when its
server dies under 32 concurrent requests."""

from __future__ import annotations

import asyncio
import json
import os
import signal
from pathlib import Path
from typing import Any

import pytest

from tests.serve.conftest import Built, Server, start_server

httpx = pytest.importorskip("httpx")
openai = pytest.importorskip("openai")

PROMPT = "The future of AI is"
KEY = "upstream-key-3f9a1c7e5b2d8f604a1e9c3b7d5f2a8e"


def _spec(folder: Path, built: Built, targets: dict[str, dict[str, Any]], **extra: Any) -> Path:
    """A model.yaml of the served model (same name, same source) with remote targets."""
    folder.mkdir(parents=True, exist_ok=True)
    body = {
        "name": "tiny-chat",
        "source": {"path": str(built.spec.parent / "model")},
        "targets": {
            name: {"profile": "remote-openai", "flags": flags} for name, flags in targets.items()
        },
        **extra,
    }
    path = folder / "model.yaml"
    path.write_text(json.dumps(body))  # JSON is YAML
    return path


def _compile(spec: Path, store: Path, *targets: str) -> list[str]:
    from artifact_store import Store
    from rmbuild.build import compile_spec

    with Store(store) as s:
        return [r.artifact.key for r in compile_spec(spec, list(targets) or None, store=s)]


def test_a_remote_target_records_the_endpoint_and_runs_like_any_artifact(
    built: Built, server: Server, session: Any, tmp_path: Path
) -> None:
    import rmbuild

    spec = _spec(tmp_path / "p", built, {"remote": {"url": server.base}})
    store = tmp_path / "store"
    (key,) = _compile(spec, store)
    from artifact_store import Store

    with Store(store) as s:
        record = s.get(key)
        tree = s.materialize(key)
        saved = json.loads((tree / "remote.json").read_text())
        assert saved["url"] == server.base and saved["reported_model"] == "tiny-chat"
        assert saved["max_model_len"] == 256  # what the upstream's /v1/models said
        assert (tree / "tokenizer.json").is_file()  # prompts are tokenized here
        assert record.metadata["profile"] == "remote-openai"
    expected = session.generate(PROMPT, 32)
    with rmbuild.load(key, store=str(store)) as remote:
        assert remote.info["backend"] == "remote-openai"
        assert remote.info["device"] == server.url
        assert remote.max_model_len == 256
        assert remote.generate(PROMPT, 32) == expected
        assert "".join(remote.stream(PROMPT, 8)) == session.generate(PROMPT, 8)
    # The logical model by name: its only candidate here is the remote one.
    with rmbuild.load("tiny-chat", store=str(store)) as logical:
        assert logical.target == "remote"
        assert logical.generate(PROMPT, 32) == expected


def test_the_key_is_read_from_the_environment_and_never_stored(
    built: Built, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import rmbuild
    from rmbuild.errors import BackendUnavailable

    upstream = start_server(built, tmp_path, "tiny-chat", "--api-key", KEY)
    try:
        spec = _spec(
            tmp_path / "p",
            built,
            {"keyed": {"url": upstream.base, "api_key_env": "TINY_UPSTREAM_KEY"}},
        )
        store = tmp_path / "store"
        monkeypatch.delenv("TINY_UPSTREAM_KEY", raising=False)
        from rmbuild.errors import RmbuildError

        with pytest.raises(RmbuildError, match=r"\$TINY_UPSTREAM_KEY"):
            _compile(spec, store)
        monkeypatch.setenv("TINY_UPSTREAM_KEY", KEY)
        (key,) = _compile(spec, store)
        with rmbuild.load(key, store=str(store)) as remote:
            assert remote.generate(PROMPT, 4)
        # Nowhere in the store: not in the record, the index, the metadata or the tool's log.
        for path in store.rglob("*"):
            if path.is_file():
                assert KEY.encode() not in path.read_bytes(), path
        monkeypatch.setenv("TINY_UPSTREAM_KEY", "wrong")
        with pytest.raises(BackendUnavailable, match="401"):
            rmbuild.load(key, store=str(store))
    finally:
        upstream.stop()


def test_a_bad_remote_target_is_refused_before_anything_runs(built: Built, tmp_path: Path) -> None:
    from rmbuild.errors import SpecError

    store = tmp_path / "store"
    for flags, words in [
        ({}, "flags.url"),
        ({"url": "http://user:pw@host:8000/v1"}, "user, password"),
        ({"url": "http://h:1/v1", "api_key_env": "sk-abc def"}, "never the key itself"),
    ]:
        spec = _spec(tmp_path / "p", built, {"r": flags})
        with pytest.raises(SpecError, match=words):
            _compile(spec, store)
    assert not (store / "logs").exists() or not any((store / "logs").iterdir())


def test_an_unreachable_upstream_fails_the_build_and_is_not_available(
    built: Built, tmp_path: Path
) -> None:
    from rmbuild.errors import BackendUnavailable

    spec = _spec(tmp_path / "p", built, {"r": {"url": "http://127.0.0.1:9/v1"}})
    with pytest.raises(BackendUnavailable, match="not reachable"):
        _compile(spec, tmp_path / "store")


def test_serve_proxies_to_the_remote_upstream(
    built: Built, server: Server, session: Any, tmp_path: Path
) -> None:
    spec = _spec(tmp_path / "p", built, {"remote": {"url": server.base}})
    store = tmp_path / "store"
    _compile(spec, store)
    env = {**built.env, "RMBUILD_STORE": str(store)}
    proxy = start_server(built, tmp_path, str(spec), env=env)
    try:
        client = openai.OpenAI(base_url=proxy.base, api_key="unused", max_retries=0)
        r = client.completions.create(
            model="tiny-chat", prompt=PROMPT, max_tokens=32, temperature=0
        )
        assert r.choices[0].text == session.generate(PROMPT, 32)
        assert r.usage.completion_tokens == 32
        chunks = list(
            client.completions.create(
                model="tiny-chat",
                prompt=PROMPT,
                max_tokens=12,
                temperature=0,
                stream=True,
                stream_options={"include_usage": True},
            )
        )
        assert "".join(c.choices[0].text for c in chunks if c.choices) == session.generate(
            PROMPT, 12
        )
        assert chunks[-1].usage.completion_tokens == 12
        # Log-probabilities come through from the upstream (the peer's in-process logits).
        lp = client.completions.create(
            model="tiny-chat", prompt=PROMPT, max_tokens=3, temperature=0, logprobs=2
        )
        direct = openai.OpenAI(base_url=server.base, api_key="x", max_retries=0)
        ref = direct.completions.create(
            model="tiny-chat", prompt=PROMPT, max_tokens=3, temperature=0, logprobs=2
        )
        assert lp.choices[0].logprobs.token_logprobs == pytest.approx(
            ref.choices[0].logprobs.token_logprobs, abs=1e-6
        )
        health = httpx.get(f"{proxy.url}/health").json()
        assert health["backend"] == "remote-openai" and health["resource"] == "remote"
        assert health["device"] == server.url
    finally:
        proxy.stop()


async def _hammer(base: str, n: int) -> list[tuple[str, Any]]:
    """``n`` concurrent requests, every other one streamed."""

    async def one(c: httpx.AsyncClient, i: int) -> tuple[str, Any]:
        body = {"prompt": f"{PROMPT} {i}", "max_tokens": 48, "temperature": 0}
        if i % 2:
            r = await c.post(f"{base}/completions", json={**body, "stream": True})
            events = [
                block[len("data: ") :]
                for block in r.text.split("\n\n")
                if block.startswith("data: ")
            ]
            return "stream", (r.status_code, events)
        r = await c.post(f"{base}/completions", json=body)
        return "plain", (r.status_code, r.json())

    async with httpx.AsyncClient(timeout=300) as c:
        return await asyncio.gather(*(one(c, i) for i in range(n)))


def test_chaos_the_primary_upstream_dies_under_32_concurrent_requests(
    built: Built, server: Server, tmp_path: Path
) -> None:
    """Two remote candidates: the primary's server is killed (SIGKILL) while 32 requests
    run through ``rmbuild serve``: 0 collected requests fail, every stream finishes or ends
    with an error event and [DONE], and the fallback counter says what happened."""
    primary = start_server(built, tmp_path, "tiny-chat", "--max-running", "2")
    store = tmp_path / "store"
    spec = _spec(
        tmp_path / "p",
        built,
        {"backup": {"url": server.base}, "primary": {"url": primary.base}},
    )
    _compile(spec, store, "backup")
    _compile(spec, store, "primary")  # newer: first among candidates of one class
    env = {**built.env, "RMBUILD_STORE": str(store)}
    proxy = start_server(built, tmp_path, str(spec), "--max-running", "32", env=env)
    try:
        assert httpx.get(f"{proxy.url}/health").json()["target"] == "primary"

        async def main() -> list[tuple[str, Any]]:
            task = asyncio.create_task(_hammer(proxy.base, 32))
            # Kill the primary mid-way: some requests done, two decoding, the rest queued.
            while True:
                metrics = (await asyncio.to_thread(httpx.get, f"{primary.url}/metrics")).text
                done = sum(
                    float(line.rsplit(" ", 1)[1])
                    for line in metrics.splitlines()
                    if line.startswith("rmbuild:request_success_total{")
                )
                if done >= 2:
                    break
                await asyncio.sleep(0.02)
            os.kill(primary.proc.pid, signal.SIGKILL)
            return await task

        results = asyncio.run(main())
        plain = [r for kind, r in results if kind == "plain"]
        streams = [r for kind, r in results if kind == "stream"]
        assert [status for status, _ in plain] == [200] * 16, plain
        assert all(body["usage"]["completion_tokens"] > 0 for _, body in plain)
        errors = 0
        for status, events in streams:
            assert status == 200
            assert events[-1] == "[DONE]"
            last = json.loads(events[-2])
            if "error" in last:
                errors += 1
            else:
                assert last["choices"][0]["finish_reason"] in ("length", "stop")
        health = httpx.get(f"{proxy.url}/health").json()
        assert health["target"] == "backup" and health["moves"][0]["reason"] == "backend_error"
        metrics = httpx.get(f"{proxy.url}/metrics").text
        assert (
            'rmbuild:fallback_total{from="primary",reason="backend_error",to="backup"} 1.0'
            in metrics
        )
        print(f"chaos: {errors} of {len(streams)} streams ended with an error event")
    finally:
        proxy.stop()
        if primary.proc.poll() is None:
            primary.stop()
