"""``rmbuild redo model.yaml -t X``: build targets again, replacing what is stored.

The same as ``rmbuild compile --rebuild``: every stage's tool runs again (once per stage where
targets share it) and its artifact replaces the stored one.
"""

from __future__ import annotations

import click


@click.command("redo", context_settings={"ignore_unknown_options": False})
@click.argument("spec", type=click.Path(dir_okay=False, path_type=str))
@click.option("-t", "--target", "targets", multiple=True, help="Target to rebuild (repeatable).")
@click.option("--all", "all_targets", is_flag=True, help="Rebuild every target.")
@click.option("-j", "--jobs", default=1, show_default=True, type=click.IntRange(1))
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.pass_context
def command(
    ctx: click.Context,
    spec: str,
    targets: tuple[str, ...],
    all_targets: bool,
    jobs: int,
    as_json: bool,
) -> None:
    """Rebuild targets of SPEC: `compile --rebuild` under a name of its own."""
    from rmbuild.cli import compile as compile_cmd

    ctx.invoke(
        compile_cmd.command,
        spec=spec,
        targets=targets,
        all_targets=all_targets,
        jobs=jobs,
        alias=None,
        rebuild=True,
        explain=False,
        as_json=as_json,
    )
