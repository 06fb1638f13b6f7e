"""``rmbuild serve MODEL``: an OpenAI-compatible endpoint for one logical model."""

from __future__ import annotations

import ipaddress
from typing import Any

import click

from rmbuild.errors import BackendUnavailable, UsageError


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@click.command("serve")
@click.argument("ref", metavar="MODEL")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind.")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(0, 65535))
@click.option(
    "--api-key",
    envvar="RMBUILD_API_KEY",
    help="Bearer key every request must carry [env: RMBUILD_API_KEY]; required to bind "
    "anything but loopback.",
)
@click.option(
    "--served-model-name", help="The model id clients ask for (default: the model's name)."
)
@click.option(
    "--device",
    help="Pin one candidate: a target name, a device class (npu, gpu, cpu, remote) or a "
    "backend; no fallback beyond it. Another value (e.g. GPU.1) is the backend's runtime "
    "device, as for `run --device`.",
)
@click.option(
    "--remote",
    "remote",
    metavar="URL",
    default=None,
    is_flag=False,
    flag_value="",
    help="Pull the model's targets this store lacks from this remote cache before choosing "
    "(without URL, or by default: the configured one [env: RMBUILD_REMOTE; config: remote]; "
    "'none': no remote, the store is only read).",
)
@click.option(
    "--build",
    "compile_missing",
    is_flag=True,
    help="Compile the best target this machine runs when it is not stored (MODEL must be a "
    "model.yaml); without it, serve never compiles.",
)
@click.option("--max-model-len", type=click.IntRange(1), help="Context limit (see `run`).")
@click.option(
    "--max-running",
    default=8,
    show_default=True,
    type=click.IntRange(1),
    help="Requests decoding together.",
)
@click.option(
    "--max-queue",
    default=64,
    show_default=True,
    type=click.IntRange(0),
    help="Requests waiting beyond --max-running; more are answered 429 with Retry-After.",
)
@click.option(
    "--shutdown-timeout",
    default=30.0,
    show_default=True,
    type=click.FloatRange(0),
    help="On SIGTERM or Ctrl-C: seconds to let running requests finish before exiting.",
)
@click.option(
    "--threads",
    type=click.IntRange(1),
    help="CPU threads of a runtime that takes a count (ONNX Runtime), where the artifact's "
    "profile sets none. Default: every core but one, left to the HTTP front end.",
)
@click.option(
    "--chunk-interval",
    default=0.01,
    show_default=True,
    type=click.FloatRange(0),
    help="Seconds of generated text a stream sends as one chunk (the first token always at "
    "once), times the number of streams running, up to 0.05 s; 0 sends every token as its "
    "own chunk.",
)
@click.option("--verify", is_flag=True, help="Re-hash the artifact's files before loading.")
@click.option(
    "--trust",
    metavar="POLICY",
    help='Trust policy: "signed-by:KEY.pub" serves only artifacts with a signature by that key '
    'that holds; "none" turns a configured one off [env: RMBUILD_TRUST; config: trust].',
)
@click.pass_obj
def command(
    app: Any,
    ref: str,
    host: str,
    port: int,
    api_key: str | None,
    served_model_name: str | None,
    device: str | None,
    remote: str | None,
    compile_missing: bool,
    max_model_len: int | None,
    max_running: int,
    max_queue: int,
    shutdown_timeout: float,
    threads: int | None,
    chunk_interval: float,
    verify: bool,
    trust: str | None,
) -> None:
    """Serve MODEL (a model.yaml, model name, alias or artifact id) over OpenAI's HTTP API.

    \b
    Of the model's stored artifacts, the first that loads here serves, in device order
    NPU, GPU, CPU, remote (model.yaml's serve.order may say otherwise); the others are
    its fallback, in order. Nothing is compiled without --build. Endpoints: /v1/models,
    /v1/completions, /v1/chat/completions, /tokenize, /detokenize, /tokenizer_info,
    /health, /version, /metrics, POST /admin/switch.
    """
    if not _loopback(host) and not api_key:
        raise UsageError(
            f"--host {host} exposes the server beyond this machine without a key",
            hint="give --api-key (or RMBUILD_API_KEY), or bind 127.0.0.1",
        )
    try:
        import uvicorn  # noqa: F401
        from fastapi import FastAPI  # noqa: F401
    except ImportError as exc:
        raise BackendUnavailable(
            f"rmbuild serve needs the serve extra ({exc.name} is not installed)",
            hint="pip install 'rmbuild[serve]'",
        ) from None

    from rmbuild.serve.server import build, run

    served = build(
        ref,
        store_path=app.store_path,
        index_url=app.index_url,
        served_name=served_model_name,
        options={
            **({"max_model_len": max_model_len} if max_model_len else {}),
            # Every candidate loads through the loader, which applies the policy.
            **({"trust": trust} if trust else {}),
        },
        verify=verify,
        max_running=max_running,
        max_queue=max_queue,
        device=device,
        remote=remote,
        compile_missing=compile_missing,
        notes=lambda message: click.echo(f"serve: {message}", err=True),
        threads=threads,
    )
    run(
        served,
        host=host,
        port=port,
        api_key=api_key,
        shutdown_timeout=shutdown_timeout,
        chunk_interval=chunk_interval,
    )
