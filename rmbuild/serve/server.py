"""Putting a served model together (store -> logical model -> session -> engine) and running
it under uvicorn with a graceful shutdown."""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from typing import Any

import uvicorn

from rmbuild.serve.app import CHUNK_INTERVAL, Served, create_app


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
    device: str | None = None,
    remote: str | None = None,
    compile_missing: bool = False,
    notes: Callable[[str], None] | None = None,
    threads: int | None = None,
) -> Served:
    """Resolve ``ref`` to its candidates here, load the best one that loads and start its
    engine (see :mod:`rmbuild.serve.model` and :mod:`rmbuild.serve.router`).

    ``device`` pins one candidate: a target name, a device class (npu, gpu, cpu, remote) or
    a backend; a device name no candidate answers to (e.g. ``GPU.1``) is passed to the
    backend as its runtime device, as ``rmbuild run --device`` does. ``remote`` (a URL, or
    "" for the configured one, also used when None; "none": no remote) pulls the targets
    this store lacks; ``compile_missing`` (``--build``) compiles the best target this
    machine runs when it is not stored. ``threads`` is the CPU threads of a runtime that
    takes a count (ONNX Runtime's intra-op threads), where the artifact's profile sets none;
    default :func:`serving_threads`."""
    from rmbuild.serve.model import resolve_model
    from rmbuild.serve.router import ServedModel
    from rmbuild.storage.remotes import open_remote
    from rmbuild.storage.store import open_store

    # A remote given, or configured (unless --remote none): what the store lacks is pulled.
    pulls = open_remote(remote or None, required=remote == "")
    # Read-only unless pulling or building: a serving host never writes the index otherwise
    # (it works on a full disk too).
    store = open_store(store_path, index_url, read_only=pulls is None and not compile_missing)
    try:
        model = resolve_model(store, ref, notes=notes, remote=pulls, build=compile_missing)
        options = {
            **(options or {}),
            "verify": verify,
            "serve_threads": threads or serving_threads(),
        }
        if device:
            if any(c.matches(device) for c in model.candidates):
                model.pin(device)
            else:
                options["device"] = device
        if served_name and served_name != model.name:
            model.aliases.add(model.name)
            model.name = served_name
        served_model = ServedModel.start(
            model, store=store, options=options, max_running=max_running, max_queue=max_queue
        )
    except BaseException:
        store.close()
        raise
    return Served(
        model=model, engine=served_model, metrics=served_model.metrics, info=served_model.info
    )


def serving_threads() -> int:
    """CPU threads for a served model's runtime by default: every core this process may use
    but one, which the HTTP front end, the tokenizer and clients on the same host need (a
    runtime that spins on every core starves them, and then itself); at least one."""
    return max(1, len(os.sched_getaffinity(0)) - 1)


def run(
    served: Served,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    api_key: str | None = None,
    shutdown_timeout: float = 30.0,
    chunk_interval: float = CHUNK_INTERVAL,
) -> None:
    """Serve until SIGTERM or Ctrl-C, then let running requests finish (at most
    ``shutdown_timeout`` s), stop the engine and close the session."""
    app = create_app(served, api_key=api_key, chunk_interval=chunk_interval)
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
        store = getattr(served.engine, "store", None)
        if store is not None:
            store.close()


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
