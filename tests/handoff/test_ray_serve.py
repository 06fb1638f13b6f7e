"""``--to ray-serve``: rmbuild's app as a Ray Serve deployment. Each target's replica
resources; the bundle's serve.sh on a local Ray serving the demo text over OpenAI's API."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace

import pytest

from rmbuild.handoff import ray_serve
from rmbuild.handoff.artifact import Artifact
from rmbuild.handoff.bundle import ExportOptions


def _artifact(tmp_path: Path, backend: str, **metadata) -> Artifact:  # noqa: ANN003
    tree = tmp_path / backend
    tree.mkdir(exist_ok=True)
    (tree / "config.json").write_text(json.dumps({"model_type": "llama"}))
    record = SimpleNamespace(
        key="ab" * 32,
        model="m",
        target="t",
        backend=backend,
        manifest_digest="0" * 64,
        created_at=datetime(2026, 11, 30, tzinfo=UTC),
        metadata={"profile": metadata.pop("profile", "onnxruntime-cpu"), **metadata},
    )
    store = SimpleNamespace(get=lambda _key: None, root=tmp_path)
    return Artifact(record, tree, {"config.json": "x"}, store)  # type: ignore[arg-type]


def test_each_target_asks_ray_for_what_it_runs_on(tmp_path: Path) -> None:
    from rmbuild.errors import EngineRefused

    options = ExportOptions(num_cpus=4)
    cpu, _ = ray_serve.actor_options(_artifact(tmp_path, "onnxruntime"), options)
    assert cpu == {"num_cpus": 4}
    gpu, _ = ray_serve.actor_options(
        _artifact(tmp_path, "tensorrt", profile="tensorrt-fp16"), options
    )
    assert gpu == {"num_cpus": 1, "num_gpus": 1}
    iree_cuda, _ = ray_serve.actor_options(
        _artifact(tmp_path, "iree", profile="iree-cuda"), options
    )
    assert iree_cuda["num_gpus"] == 1
    atom, why = ray_serve.actor_options(
        _artifact(tmp_path, "rbln", profile="rbln-ca25", flags={"num_devices": 2}), options
    )
    assert atom == {"num_cpus": 1, "resources": {"RBLN": 2}} and "RBLN" in why
    npu, _ = ray_serve.actor_options(
        _artifact(tmp_path, "openvino", profile="openvino-npu", runtime_flags={"device": "NPU"}),
        options,
    )
    assert npu["resources"] == {"intel_npu": 1}
    with pytest.raises(EngineRefused, match="furiosa-llm"):
        ray_serve.actor_options(_artifact(tmp_path, "furiosa", profile="furiosa-rngd"), options)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_serve_sh_runs_the_deployment_on_a_local_ray(example, demo, tmp_path: Path) -> None:  # noqa: ANN001
    """The bundle's own serve.sh (``serve run`` of its config) on a local Ray: two replicas of
    rmbuild's app answer OpenAI's completions with the artifact's greedy text."""
    pytest.importorskip("ray.serve.schema", reason="ray[serve] is not installed (ray extra)")
    import httpx

    from artifact_store import Store
    from rmbuild.handoff import export

    prompt, expected = demo
    port = _free_port()
    with Store(example.store) as store:
        bundle = export(
            [example.artifacts["cpu"]],
            "ray-serve",
            tmp_path / "b",
            store=store,
            options=ExportOptions(port=port, replicas=2, num_cpus=0.5),
        )
    settings = json.loads((bundle.root / "bundle.json").read_text())
    assert settings["replicas"] == 2 and settings["ray_actor_options"] == {"num_cpus": 0.5}
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}",
        "RMBUILD_STORE": str(example.store),
        # A local Ray 2.60 wants a token unless told otherwise; the dashboard is not needed.
        "RAY_AUTH_MODE": "disabled",
        "RAY_ENABLE_RECORD_ACTOR_TASK_LOGGING": "0",
    }
    env.pop("RAY_ADDRESS", None)
    log = tmp_path / "serve.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [str(bundle.root / "serve.sh")],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=tmp_path,
            start_new_session=True,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 240  # a bound on a hang: Ray starts in ~30-60 s here
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise AssertionError(f"serve exited {proc.returncode}:\n{log.read_text()[-3000:]}")
            try:
                if httpx.get(f"{base}/v1/models", timeout=5).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(2)
        else:
            raise AssertionError(f"serve did not start:\n{log.read_text()[-3000:]}")
        models = httpx.get(f"{base}/v1/models", timeout=30).json()
        assert models["data"][0]["id"] == "tiny-llama"
        assert models["data"][0]["root"] == example.artifacts["cpu"]
        body = {"model": "tiny-llama", "prompt": prompt, "max_tokens": 32, "temperature": 0}
        for _ in range(3):  # more than one request: both replicas may take one
            answer = httpx.post(f"{base}/v1/completions", json=body, timeout=120).json()
            assert answer["choices"][0]["text"] == expected
        streamed = httpx.post(
            f"{base}/v1/completions", json={**body, "stream": True}, timeout=120
        ).text
        assert streamed.rstrip().endswith("data: [DONE]")
        assert "Adding 2 replicas" in log.read_text() or "2 replica" in log.read_text()
    finally:
        os.killpg(proc.pid, signal.SIGINT)  # serve run shuts Serve and the local Ray down
        try:
            proc.wait(90)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(30)
