"""The server's life: the API key beyond loopback, many connections dropped, and SIGTERM
draining what runs before exiting 0."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.serve.conftest import CLI_CODE, Built, Server, start_server

httpx = pytest.importorskip("httpx")


def test_binding_beyond_loopback_needs_an_api_key(built: Built) -> None:
    env = {k: v for k, v in built.env.items() if k != "RMBUILD_API_KEY"}
    done = subprocess.run(
        [sys.executable, "-c", CLI_CODE, "serve", "tiny-chat", "--host", "0.0.0.0"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    assert "--api-key" in done.stderr


def test_every_request_must_carry_the_key(built: Built, tmp_path: Path) -> None:
    env = {**built.env, "RMBUILD_API_KEY": "s3cret-key"}
    srv = start_server(built, tmp_path, "tiny-chat", env=env)
    try:
        assert httpx.get(f"{srv.base}/models").status_code == 401
        wrong = httpx.get(f"{srv.base}/models", headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401 and wrong.json()["error"]["type"] == "authentication_error"
        assert httpx.get(f"{srv.url}/health").status_code == 401
        ok = httpx.get(f"{srv.base}/models", headers={"Authorization": "Bearer s3cret-key"})
        assert ok.status_code == 200
    finally:
        assert srv.stop() == 0
    assert "s3cret-key" not in srv.output()


def test_many_connections_opened_and_dropped_leave_the_server_serving(server: Server) -> None:
    import socket

    host, port = server.url.removeprefix("http://").split(":")
    for _ in range(200):
        s = socket.create_connection((host, int(port)), timeout=5)
        s.close()
    assert httpx.get(f"{server.url}/health").status_code == 200


def test_sigterm_drains_running_streams_then_exits_0(built: Built, tmp_path: Path) -> None:
    srv = start_server(built, tmp_path, "tiny-chat", "--shutdown-timeout", "120")
    body = {"prompt": "The", "max_tokens": 120, "temperature": 0, "stream": True}
    lines: list[str] = []
    with httpx.stream("POST", f"{srv.base}/completions", json=body, timeout=120) as r:
        it = r.iter_lines()
        for line in it:
            if line.startswith("data: {"):
                lines.append(line)
                srv.proc.send_signal(signal.SIGTERM)
                break
        lines.extend(line for line in it if line)
    assert lines[-1] == "data: [DONE]"
    finishes = [
        json.loads(line[6:])["choices"][0]["finish_reason"]
        for line in lines
        if line.startswith("data: {")
    ]
    # The stream ran to its end (its length or the model's EOS), not cut by the shutdown.
    assert finishes[-1] in ("length", "stop")
    assert srv.proc.wait(60) == 0
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{srv.url}/health", timeout=2)
