"""``rmbuild why model.yaml --target X``: why a stage would be built, before anything runs."""

from __future__ import annotations

from typing import Any

import click

from rmbuild.cli._output import emit_json


@click.command("why")
@click.argument("spec", type=click.Path(dir_okay=False, path_type=str))
@click.option("-t", "--target", "target", required=True, help="The target to explain.")
@click.option(
    "--remote",
    "remote_url",
    metavar="URL",
    help="Also compare with what the remote holds [env: RMBUILD_REMOTE; config: remote].",
)
@click.option("--json", "as_json", is_flag=True, help="Print the target's plan as JSON.")
@click.pass_obj
def command(app: Any, spec: str, target: str, remote_url: str | None, as_json: bool) -> None:
    """Diff the key factors of TARGET's stages against the nearest stored entry (issue 9).

    For each stage: its key, whether it is stored, and for a miss which factors differ from
    the stored entry of the same model, target and profile that differs least (inputs, flags,
    command line, tool, toolchain packages, host facts, env, key version).
    """
    from rmbuild import remotes
    from rmbuild.spec import load_model_spec
    from rmbuild.why import why_target

    loaded = load_model_spec(spec)
    store = app.store()
    remote = remotes.open_remote(remote_url, start=loaded.root)
    result = why_target(store, loaded, target, remote=remote)
    if as_json:
        emit_json(result.to_json())
        return
    click.echo(f"{loaded.spec.name}:{target} ({result.profile}): {result.status}")
    for s in result.stages:
        key = s.key[:12] if s.key else "?" * 12
        if s.action == "reuse":
            click.echo(f"  {s.profile:<20} {key}  stored: cache hit")
        else:
            click.echo(f"  {s.profile:<20} {key}  {s.action}: {s.reason or 'no stored entry'}")
        for gap in s.blocked:
            install = f" -> {gap['install']}" if gap["install"] else ""
            click.echo(f"      cannot build here: {gap['what']}{install}")
