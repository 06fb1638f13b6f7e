"""``rmbuild why model.yaml --target X``: why a stage would be built, before anything runs."""

from __future__ import annotations

from typing import Any

import click

from rmbuild.cli._output import emit_json


@click.command("why")
@click.argument("spec", type=click.Path(dir_okay=False, path_type=str))
@click.option(
    "-t",
    "--target",
    "target",
    required=True,
    help="The target to explain, or a resource class (npu, gpu, cpu): each of its targets.",
)
@click.option(
    "--remote",
    "remote_url",
    metavar="URL",
    help="Also compare with what the remote holds [env: RMBUILD_REMOTE; config: remote].",
)
@click.option("--json", "as_json", is_flag=True, help="Print the target's plan as JSON.")
@click.pass_obj
def command(app: Any, spec: str, target: str, remote_url: str | None, as_json: bool) -> None:
    """Diff the key factors of TARGET's stages against the nearest stored entry.

    For each stage: its key, whether it is stored, and for a miss which factors differ from
    the stored entry of the same model, target and profile that differs least (inputs, flags,
    command line, tool, toolchain packages, host facts, env, key version). TARGET may be a
    resource class, as for `compile --target`: then every target of the class, with what
    those that cannot be built here lack. With --json a class gives {"classes", "targets"}.
    """
    from rmbuild.declare.spec import load_model_spec
    from rmbuild.planning.plan import blocked_reason, why_targets
    from rmbuild.storage import remotes

    loaded = load_model_spec(spec)
    store = app.store()
    remote = remotes.open_remote(remote_url, start=loaded.root)
    classes, plans = why_targets(store, loaded, target, remote=remote)
    if as_json:
        if classes:
            emit_json({"classes": classes, "targets": [p.to_json() for p in plans]})
        else:
            emit_json(plans[0].to_json())
        return
    if classes:
        names = ", ".join(p.target for p in plans) or "none"
        click.echo(f"{target}: a resource class; its targets: {names}")
    for result in plans:
        click.echo(f"{loaded.spec.name}:{result.target} ({result.profile}): {result.status}")
        for s in result.stages:
            key = s.key[:12] if s.key else "?" * 12
            if s.action == "reuse":
                click.echo(f"  {s.profile:<20} {key}  stored: cache hit")
            elif s.blocked and s.reason == blocked_reason(s.blocked):
                click.echo(f"  {s.profile:<20} {key}  blocked: cannot be built here")
            else:
                click.echo(f"  {s.profile:<20} {key}  {s.action}: {s.reason or 'no stored entry'}")
            for gap in s.blocked:
                install = f" -> {gap['install']}" if gap["install"] else ""
                click.echo(f"      cannot build here: {gap['what']}{install}")
