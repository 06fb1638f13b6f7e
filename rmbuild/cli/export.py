"""``rmbuild export REF... --to ENGINE DIR``: a bundle a serving engine loads as it is.

The artifact's files in the engine's layout, ``serve.sh`` with the exact command (its flags
the artifact's limits), ``README.md`` and ``versions.json`` (what the serving side must run).
The library is :mod:`rmbuild.handoff`, one module per engine; this is its command-line shell.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from rmbuild.cli._output import emit_json

ENGINE_NAMES = ("triton", "vllm", "vllm-rbln", "furiosa-llm", "ray-serve", "torchserve")


@click.command("export")
@click.argument("refs", nargs=-1, required=True, metavar="REF...")
@click.argument("directory", metavar="DIR", type=click.Path(path_type=Path))
@click.option(
    "--to",
    "engine",
    required=True,
    metavar="ENGINE",
    help="triton, vllm, vllm-rbln, furiosa-llm or ray-serve (torchserve is refused: archived).",
)
@click.option("--name", help="The model name the engine serves (default: the model's).")
@click.option(
    "--max-model-len",
    type=click.IntRange(min=1),
    help="Lower the context limit the command sets (default: the artifact's).",
)
@click.option(
    "--replicas", type=click.IntRange(min=1), default=1, show_default=True, help="Ray Serve."
)
@click.option(
    "--num-cpus", type=click.FloatRange(min=0), help="Ray Serve: CPUs per replica (CPU targets)."
)
@click.option("--port", type=click.IntRange(1, 65535), default=8000, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_obj
def command(
    app: Any,
    refs: tuple[str, ...],
    directory: Path,
    engine: str,
    name: str | None,
    max_model_len: int | None,
    replicas: int,
    num_cpus: float | None,
    port: int,
    as_json: bool,
) -> None:
    """Write the bundle ENGINE loads for artifact REF into DIR (new or empty).

    \b
    REF: an id, a unique prefix, an alias, or MODEL:TARGET (the newest). --to triton takes
    several TensorRT artifacts of one model (a plan per GPU compute capability).
    DIR gets the engine's files, serve.sh (the exact command, flags matching the artifact's
    context limit, batch and devices), README.md and versions.json (what the serving side
    must run). Files from the store are read-only hard links into it: copy before editing.
    """
    from rmbuild.handoff import ExportOptions, engine_module, export
    from rmbuild.storage.store import open_store

    engine_module(engine)  # a refused or unknown engine fails before the store is opened
    store = open_store(app.store_path, app.index_url, read_only=True)
    try:
        options = ExportOptions(
            name=name,
            max_model_len=max_model_len,
            replicas=replicas,
            num_cpus=num_cpus,
            port=port,
        )
        bundle = export(list(refs), engine, directory, store=store, options=options)
    finally:
        store.close()
    plan = bundle.plan
    if as_json:
        emit_json(
            {
                "engine": plan.engine,
                "dir": str(bundle.root),
                "name": plan.name,
                "artifacts": [a.key for a in plan.artifacts],
                "command": plan.command.display(),
                "limits": plan.limits,
                "serving": plan.serving,
                "checked": bundle.checked,
                "warnings": plan.warnings,
            }
        )
        return
    first = plan.artifacts[0]
    click.echo(f"{first.model}:{first.target} {first.key[:12]} -> {bundle.root} ({plan.title})")
    click.echo(f"  start: cd {bundle.root} && ./serve.sh")
    click.echo(f"  runs:  {plan.command.display()}")
    for line in bundle.checked:
        click.echo(f"  checked: {line}")
    for line in plan.warnings:
        click.echo(f"warning: {line}", err=True)
