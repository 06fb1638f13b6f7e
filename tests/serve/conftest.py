"""A served model for the server's tests: the example Llama with a chat template, built once
with the real ONNX export and ONNX Runtime into a store of its own, and ``rmbuild serve`` on
it in a child process on a free loopback port."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
pytest.importorskip("onnxruntime")

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "tiny-llama"
CLI_CODE = "import sys; from rmbuild.cli import main; sys.exit(main(sys.argv[1:]))"
# A ChatML-style template, as many instruction models carry in tokenizer_config.json.
CHAT_TEMPLATE = (
    "{% for m in messages %}<s>{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}<s>assistant:{% endif %}"
)


@dataclass
class Built:
    store: Path
    spec: Path
    key: str
    env: dict[str, str]


@pytest.fixture(scope="session")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    """The example model (with a chat template) compiled for ONNX Runtime on the CPU."""
    from artifact_store import Store
    from rmbuild.build import compile_spec

    root = tmp_path_factory.mktemp("serve")
    model = root / "model"
    shutil.copytree(EXAMPLE / "model", model)
    config = json.loads((model / "tokenizer_config.json").read_text())
    config["chat_template"] = CHAT_TEMPLATE
    (model / "tokenizer_config.json").write_text(json.dumps(config))
    spec = root / "model.yaml"
    spec.write_text(
        "name: tiny-chat\nsource: {path: model}\ntargets:\n  cpu: {profile: onnxruntime-cpu}\n"
    )
    store = Store(root / "store")
    try:
        (result,) = compile_spec(spec, store=store)
        key = result.artifact.key
    finally:
        store.close()
    env = {**os.environ, "RMBUILD_STORE": str(root / "store")}
    env.pop("RMBUILD_INDEX_URL", None)
    env.pop("RMBUILD_API_KEY", None)
    return Built(store=root / "store", spec=spec, key=key, env=env)


@dataclass
class Server:
    proc: subprocess.Popen[str]
    url: str  # http://127.0.0.1:PORT
    log: Path

    @property
    def base(self) -> str:
        return f"{self.url}/v1"

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        return self.proc.wait(timeout)

    def output(self) -> str:
        return self.log.read_text()


def start_server(
    built: Built, tmp_path: Path, *args: str, env: dict[str, str] | None = None
) -> Server:
    """``rmbuild serve ARGS --port 0``, waited for until it prints its address."""
    log = tmp_path / f"serve-{time.monotonic_ns()}.log"
    handle = log.open("w")
    proc = subprocess.Popen(
        [sys.executable, "-c", CLI_CODE, "serve", *args, "--port", "0"],
        stdout=handle,
        stderr=subprocess.STDOUT,
        env=env or built.env,
        text=True,
    )
    # A bound on a hang, not on speed: loading takes a second on an idle machine.
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        text = log.read_text()
        found = re.search(r"at (http://[^\s]+)/v1", text)
        if found:
            return Server(proc, found.group(1), log)
        if proc.poll() is not None:
            raise AssertionError(f"rmbuild serve exited {proc.returncode}:\n{text}")
        time.sleep(0.1)
    proc.kill()
    raise AssertionError(f"rmbuild serve did not start:\n{log.read_text()}")


@pytest.fixture(scope="session")
def server(built: Built, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One shared server for the tests that only send requests."""
    srv = start_server(built, tmp_path_factory.mktemp("server"), "tiny-chat")
    yield srv
    srv.stop()


@pytest.fixture(scope="session")
def session(built: Built) -> Iterator[object]:
    """The same artifact loaded in-process, the reference for what the server answers."""
    from artifact_store import Store
    from rmbuild.loading import load

    store = Store(built.store)
    with load(built.key, store=store) as s:
        yield s
    store.close()
