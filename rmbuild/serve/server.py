"""Putting a served model together (store -> logical model -> session -> engine) and running
it under uvicorn with a graceful shutdown."""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
from collections.abc import Iterator
from typing import Any

import uvicorn

from rmbuild.serve.app import Served, create_app
from rmbuild.serve.engine import Engine
from rmbuild.serve.metrics import Labels, Metrics
from rmbuild.serve.model import load_first, resolve_model


def build(
    ref: str,
    *,
    store_path: str | None = None,
    index_url: str | None = None,
    served_name: str | None = None,
    options: dict[str, Any] | None = None,
    verify: bool = False,
    max_running: int = 8,
    max_queue: int = 64,
) -> Served:
    """Resolve ``ref`` to its best stored artifact here, load it and start its engine."""
    from rmbuild.store import open_store

    # Read-only: a serving host never writes the index (it works on a full disk too).
    store = open_store(store_path, index_url, read_only=True)
    model = resolve_model(store, ref)
    index, session = load_first(model, store=store, options={**(options or {}), "verify": verify})
    if served_name and served_name != model.name:
        model.aliases.add(model.name)
        model.name = served_name
    record = model.candidates[index].record
    toolchain = record.metadata.get("toolchain") or {}
    info = {
        **session.info,
        "target": record.target,
        "sdk": dict(toolchain.get("packages") or {}) if isinstance(toolchain, dict) else {},
    }
    labels = Labels(
        model=model.name,
        artifact=record.key[:12],
        backend=str(info.get("backend", record.backend)),
        device=str(info.get("device", "")),
    )
    metrics = Metrics(labels)
    engine = Engine(session, max_running=max_running, max_queue=max_queue, observer=metrics.observe)
    served = Served(model=model, engine=engine, metrics=metrics, info=info)
    session.closers.append(store.close)
    return served


def run(
    served: Served,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    api_key: str | None = None,
    shutdown_timeout: float = 30.0,
) -> None:
    """Serve until SIGTERM or Ctrl-C, then let running requests finish (at most
    ``shutdown_timeout`` s), stop the engine and close the session."""
    app = create_app(served, api_key=api_key)
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=shutdown_timeout,
        lifespan="off",
    )
    server = _Server(config, served)
    try:
        server.run()
    finally:
        served.engine.stop(timeout=shutdown_timeout)
        served.session.close()


class _Server(uvicorn.Server):
    """uvicorn's server, announcing its address, draining without re-raising the signal.

    uvicorn re-raises SIGTERM after its graceful shutdown, which would end the process with
    143 after a clean drain; a server asked to stop that stopped cleanly exits 0.
    """

    def __init__(self, config: uvicorn.Config, served: Served) -> None:
        super().__init__(config)
        self.served = served

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        handled = (signal.SIGINT, signal.SIGTERM)
        original = {sig: signal.signal(sig, self.handle_exit) for sig in handled}
        try:
            yield
        finally:
            for sig, handler in original.items():
                signal.signal(sig, handler)

    async def startup(self, sockets: Any = None) -> None:
        await super().startup(sockets=sockets)
        if self.should_exit:
            return
        bound = self.servers[0].sockets[0].getsockname() if self.servers else None
        host, port = (bound[0], bound[1]) if bound else (self.config.host, self.config.port)
        where = f"[{host}]" if ":" in str(host) else host
        info = self.served.info
        print(
            f"serving {self.served.model.name} (artifact {str(info.get('artifact'))[:12]}, "
            f"{info.get('backend')} on {info.get('device')}) at http://{where}:{port}/v1",
            file=sys.stderr,
            flush=True,
        )
