"""``rmbuild compile model.yaml --target T``: build targets, or say they are cached."""

from __future__ import annotations

import sys
import time
from typing import Any

import click

from rmbuild.cli._output import emit_json
from rmbuild.cli._reporters import LiveReporter, PlainReporter

__all__ = ["LiveReporter", "PlainReporter", "command"]


def _allow_unpinned(value: bool) -> None:
    # Through the environment, so that every process of the build (-j workers) sees it.
    if value:
        import os

        from rmbuild.declare.sources import ALLOW_UNPINNED_ENV

        os.environ[ALLOW_UNPINNED_ENV] = "1"


@click.command("compile")
@click.argument("spec", type=click.Path(dir_okay=False, path_type=str))
@click.option(
    "-t",
    "--target",
    "targets",
    multiple=True,
    help="Target to build (repeatable). Default: every target of the model.",
)
@click.option("--all", "all_targets", is_flag=True, help="Build every target.")
@click.option(
    "--keep-going/--fail-fast",
    "keep_going",
    default=None,
    help="Build every target that can be built although one fails, or stop at the first "
    "failure. Default: keep going for every target (--all, no --target) and for a resource "
    "class; fail fast for named targets. Several targets end with a summary: built, cached, "
    "skipped (with what is missing), failed.",
)
@click.option(
    "--strict",
    is_flag=True,
    help="A target skipped because something it needs is missing here (a toolchain, a "
    "system tool) fails the command (exit 7); by default it is reported and the exit "
    "status is that of the targets that were built.",
)
@click.option(
    "-j",
    "--jobs",
    default=1,
    show_default=True,
    type=click.IntRange(1),
    help="Targets to build in parallel (shared stages are built once).",
)
@click.option(
    "--tag",
    "alias",
    metavar="ALIAS",
    help="Point ALIAS at the artifact (one target only), e.g. chat-main-cpu.",
)
@click.option(
    "--rebuild",
    is_flag=True,
    help="Run every stage's tool again and replace the stored artifacts (a corrupt artifact "
    "is rebuilt without it).",
)
@click.option(
    "--no-retry-failed",
    is_flag=True,
    help="Skip (exit 4, naming its log) a stage whose key already failed with the same "
    "toolchain; by default a failed key is retried. `rmbuild ls --failed` lists failures.",
)
@click.option(
    "--explain",
    is_flag=True,
    help="Print how --target values (names or classes: npu, gpu, cpu) resolve, and why each "
    "candidate is chosen or not; build nothing.",
)
@click.option(
    "--plan",
    "show_plan",
    is_flag=True,
    help="Print what would be built and why (keys, local/remote hit or miss, what is missing "
    "here); run nothing. With --json: the layout of rmbuild/schemas/plan.schema.json.",
)
@click.option(
    "--cache-policy",
    type=click.Choice(["readwrite", "readonly"]),
    default=None,
    help="readonly: never compile; use what is stored (or pulled), else exit 5 with the plan "
    "of what is missing [env: RMBUILD_CACHE_POLICY; config: cache_policy; default: readwrite].",
)
@click.option(
    "--executor",
    type=click.Choice(["local", "ray"]),
    default="local",
    show_default=True,
    help="Where targets build: this machine (-j N processes) or a Ray cluster (one task per "
    "target).",
)
@click.option(
    "--ray-address",
    metavar="ADDR",
    default=None,
    help="Ray cluster to join with --executor ray ('auto', 'ray://host:10001'); default: "
    "$RAY_ADDRESS, else a local Ray.",
)
@click.option(
    "--remote",
    "remote_url",
    metavar="URL",
    help="Remote cache (fsspec URL, e.g. s3://bucket/rmbuild): pull what it has, build what is "
    "missing, push what was built; 'none' turns a configured one off [env: RMBUILD_REMOTE; "
    "config: remote].",
)
@click.option(
    "--allow-unpinned",
    is_flag=True,
    expose_value=False,
    callback=lambda _ctx, _param, value: _allow_unpinned(value),
    help="Build a hub source whose revision is a branch or tag (a moving ref, so not "
    "reproducible); refused by default (exit 3) [env: RMBUILD_ALLOW_UNPINNED=1].",
)
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.pass_obj
def command(
    app: Any,
    spec: str,
    targets: tuple[str, ...],
    all_targets: bool,
    jobs: int,
    alias: str | None,
    rebuild: bool,
    explain: bool,
    no_retry_failed: bool = False,
    show_plan: bool = False,
    cache_policy: str | None = None,
    executor: str = "local",
    ray_address: str | None = None,
    as_json: bool = False,
    remote_url: str | None = None,
    keep_going: bool | None = None,
    strict: bool = False,
) -> None:
    """Build targets of SPEC (a model.yaml). A target already built is a cache hit."""
    readonly = _cache_policy(cache_policy, spec) == "readonly"
    if readonly and rebuild and not show_plan:
        raise click.UsageError("--rebuild (redo) runs the tools; the cache policy is readonly")
    from pathlib import Path

    from rmbuild.storage import remotes

    # The remote first, whichever path serves the compile: flag > RMBUILD_REMOTE > rmbuild.toml
    # > user config. A fast-path hit pushes what the remote lacks, as the full path does.
    remote = remotes.open_remote(remote_url, start=Path(spec).absolute().parent)
    if not (show_plan or explain or rebuild or alias or executor != "local"):
        # A hit without the spec machinery: keys from the plan cache, checked
        # against the stat of everything they came from; any change takes the full path.
        wanted = None if all_targets else list(targets)
        if _fast_hit(app, spec, wanted, as_json, remote, readonly=readonly):
            return
    # The full path reads each profile file once (policy.resolve, then every target's plan).
    from rmbuild.declare.profiles import read_once

    with read_once():
        _full_path(
            app,
            spec,
            targets,
            all_targets=all_targets,
            jobs=jobs,
            alias=alias,
            rebuild=rebuild,
            explain=explain,
            no_retry_failed=no_retry_failed,
            show_plan=show_plan,
            executor=executor,
            ray_address=ray_address,
            as_json=as_json,
            keep_going=keep_going,
            strict=strict,
            readonly=readonly,
            remote=remote,
        )


def _full_path(
    app: Any,
    spec: str,
    targets: tuple[str, ...],
    *,
    all_targets: bool,
    jobs: int,
    alias: str | None,
    rebuild: bool,
    explain: bool,
    no_retry_failed: bool,
    show_plan: bool,
    executor: str,
    ray_address: str | None,
    as_json: bool,
    keep_going: bool | None,
    strict: bool,
    readonly: bool,
    remote: Any,
) -> None:
    """``compile`` past the plan cache: load the spec, resolve classes, build."""
    from rmbuild.build import compile_targets
    from rmbuild.declare.spec import load_model_spec

    loaded = load_model_spec(spec)
    names = list(loaded.spec.targets) if all_targets or not targets else list(targets)
    class_cache: tuple[Any, str, list[str], list[str]] | None = None
    # Every target (or a class's candidates): keep going past one that fails, by default.
    many = all_targets or not targets
    if targets and not all_targets:
        # A target name or a resource class: rmbuild.planning.policy decides.
        from rmbuild.planning import policy

        # A class's decision is recorded for the fast path; what it depends on is stat'ed
        # once the candidates are planned, before anything is checked.
        cacheable = len(names) == 1 and not (explain or show_plan)
        snaps: list[Any] = []

        def planned(spec_: Any, chains: list[list[Any]]) -> None:
            from rmbuild.planning import plancache

            snaps.append(plancache.class_snapshot(spec_, chains))

        # A plan shows the blocked candidates too, instead of exit 7.
        resolution = policy.resolve(
            loaded,
            names,
            strict=not (explain or show_plan),
            on_planned=planned if cacheable else None,
        )
        if explain:
            _explain(resolution, as_json)
            return
        skipped = _skip_lines(resolution)
        for line in skipped:
            click.echo(line, err=True)
        many = many or bool(resolution.classes)
        if resolution.classes and snaps and resolution.spec is loaded:
            class_cache = (snaps[0], resolution.classes[0], list(resolution.names), skipped)
        if resolution.spec is not loaded:
            jobs = 1  # default targets exist only in this process's spec, not in model.yaml
        loaded, names = resolution.spec, resolution.names
        if show_plan:
            # Every candidate of a class, the blocked ones too: a plan says why each cannot be
            # built here (on a machine with no toolchain for the class, that is all of them).
            names += [c.target for c in resolution.candidates if c.target not in names]
    if alias:
        if len(names) != 1:
            raise click.UsageError("--tag needs exactly one --target")
        from artifact_store.store import validate_alias

        validate_alias(alias)  # before the build, not after it
    store = app.store()
    if show_plan:
        _print_plan(loaded, names, store, remote, as_json)
        return
    # Ray tasks get the reporter pickled, as -j workers do: plain lines, no live display.
    parallel = (jobs > 1 and len(names) > 1) or executor == "ray"
    live = sys.stderr.isatty() and not as_json and not parallel
    reporter: Any = LiveReporter() if live else PlainReporter(app.verbose)
    started = time.monotonic()
    from rmbuild.build import TargetFailure
    from rmbuild.cli import _summary

    try:
        outcomes = compile_targets(
            loaded,
            names,
            store=store,
            reporter=reporter,
            jobs=jobs,
            rebuild=rebuild,
            retry_failed=not no_retry_failed,
            readonly=readonly,
            executor=executor,
            ray_address=ray_address,
            remote=remote,
            keep_going=many if keep_going is None else keep_going,
            strict=strict,
        )
        failed = _summary.first_failure(outcomes, strict=True if len(names) == 1 else strict)
        if failed is not None and len(names) == 1:
            raise failed  # one target: its error is the answer, as it always was
    except Exception as exc:
        raise _readonly_plan(exc, loaded, names, store, remote) from None
    finally:
        reporter.close()  # the live line, or the plain heartbeat of a stage that failed
    results = [o for o in outcomes if not isinstance(o, TargetFailure)]
    if class_cache is not None and len(results) == len(names):
        from rmbuild.planning import plancache

        plancache.remember_class(class_cache[0], store, *class_cache[1:])
    if alias:
        store.tag(alias, results[0].artifact.key)
    if as_json:
        emit_json(_summary.rows(loaded.spec.name, names, outcomes))
    else:
        for r in results:
            state = "cached, no tool ran" if r.hit else "built"
            tagged = f", tagged {alias}" if alias else ""
            click.echo(f"{r.model}:{r.target} -> {r.artifact.key}  ({state}{tagged})")
    if len(names) > 1:
        _summary.print_summary(names, outcomes, time.monotonic() - started, strict)
    if failed is not None:
        # After the summary, the first failure in full (its log's last lines, its hint) and
        # its exit code; with --json the rows above already hold every error.
        raise _readonly_plan(failed, loaded, names, store, remote)


def _cache_policy(explicit: str | None, spec: str) -> str:
    """--cache-policy, else $RMBUILD_CACHE_POLICY, else the config files' cache_policy."""
    from pathlib import Path

    from rmbuild import config

    value = config.setting("cache_policy", explicit, "RMBUILD_CACHE_POLICY", Path(spec).parent)
    value = (value or "readwrite").lower()
    if value not in ("readwrite", "readonly"):
        from rmbuild.errors import InvalidName

        raise InvalidName(
            f"cache policy {value!r} is not one of readwrite, readonly",
            hint="set --cache-policy, RMBUILD_CACHE_POLICY or cache_policy in the config file",
        )
    return value


def _fast_hit(
    app: Any,
    spec: str,
    targets: list[str] | None,
    as_json: bool,
    remote: Any = None,
    *,
    readonly: bool = False,
) -> bool:
    """Serve an all-hit compile from the plan cache; False: take the full path. With a
    remote, what it lacks of the hits is pushed (:func:`rmbuild.storage.remotes.share`), as every
    target's :func:`rmbuild.build.build` does."""
    from rmbuild.planning import plancache

    try:
        store = app.store()
    except Exception:  # noqa: BLE001 - the full path reports the store's problem
        return False
    notes: list[str] = []
    if targets:
        # A resource class (--target npu) as the policy last resolved it, if nothing it
        # depended on changed since (rmbuild.planning.plancache); else the full path decides again.
        expanded = plancache.expand_classes(spec, store.root, targets)
        if expanded is None:
            return False
        targets, notes = expanded
    results = plancache.fast_compile(spec, store, targets or None, record_hits=not readonly)
    if results is None:
        return False
    for line in notes:  # what the class skipped and why, as the full path says it
        click.echo(line, err=True)
    if remote is not None:
        from rmbuild.storage import remotes

        pushed = set(remotes.share(remote, store, [r.stages[-1].key for r in results]))
        for r in results:
            if r.stages[-1].key in pushed:
                click.echo(f"{r.target}: pushed to {remote.display}", err=True)
    if as_json:
        emit_json(
            [
                {
                    "model": r.model,
                    "target": r.target,
                    "status": "hit",
                    "artifact": r.stages[-1].key,
                    "hit": True,
                    "stages": [
                        {"profile": s.profile, "key": s.key, "hit": True, "seconds": 0.0}
                        for s in r.stages
                    ],
                }
                for r in results
            ]
        )
        return True
    for r in results:
        for i, s in enumerate(r.stages):
            click.echo(
                f"{r.target} [{i + 1}/{len(r.stages)}] {s.profile} ({s.key[:12]}): cache hit",
                err=True,
            )
    for r in results:
        click.echo(f"{r.model}:{r.target} -> {r.stages[-1].key}  (cached, no tool ran)")
    return True


def _print_plan(loaded: Any, names: list[str], store: Any, remote: Any, as_json: bool) -> None:
    from rmbuild.planning.plan import plan_spec, render_text

    result = plan_spec(loaded, names, store, remote=remote)
    if as_json:
        emit_json(result.to_json())
        return
    for line in render_text(result):
        click.echo(line)


def _readonly_plan(
    exc: BaseException, loaded: Any, names: list[str], store: Any, remote: Any
) -> Any:
    """``exc`` to raise: a readonly miss gets the plan of what is missing; others as they are."""
    from rmbuild.errors import ReadOnlyMiss

    if isinstance(exc, ReadOnlyMiss):
        return _with_plan(exc, loaded, names, store, remote)
    return exc


def _with_plan(exc: Any, loaded: Any, names: list[str], store: Any, remote: Any) -> Any:
    """A readonly miss, with the plan of everything that is missing."""
    from rmbuild.errors import ReadOnlyMiss
    from rmbuild.planning.plan import plan_spec

    try:
        missing = plan_spec(loaded, names, store, remote=remote).missing()
    except Exception:  # noqa: BLE001 - the miss itself is the error to show
        missing = []
    return ReadOnlyMiss(
        exc.message,
        context=["missing (readonly cache policy):", *missing],
        hint="pull these from a remote (--remote), or build them where compiling is allowed "
        "(`rmbuild compile --plan` lists them)",
    )


def _skip_lines(resolution: Any) -> list[str]:
    """One line per gap of each class candidate the policy skipped, with what gets it."""
    lines = []
    for cand in resolution.candidates:
        if not cand.chosen:
            for gap in cand.missing:
                install = f" -> {gap['install']}" if gap["install"] else ""
                lines.append(
                    f"{cand.resource}: skipping {cand.target} ({cand.profile}): "
                    f"{gap['what']}{install}"
                )
    return lines


def _explain(resolution: Any, as_json: bool) -> None:
    """The policy's decision table."""
    rows = resolution.table()
    if as_json:
        emit_json({"classes": resolution.classes, "targets": resolution.names, "candidates": rows})
        return
    from rich.table import Table

    from rmbuild.cli._output import console, plain, styled

    if not rows:
        click.echo(f"targets named: {', '.join(resolution.names)} (no resource class asked)")
        return
    table = Table(box=None, header_style="bold")
    for col in ("candidate", "class", "profile", "origin", "toolchain", "device", "decision"):
        table.add_column(col)
    for row in rows:
        yes = styled(("yes", "green"))
        no = styled(("no", "red"))
        decision = (
            styled(("chosen", "green"), f": {row['why']}")
            if row["chosen"]
            else styled(("skipped", "red"), f": {row['why']}")
        )
        table.add_row(
            plain(row["target"]),
            plain(row["resource"]),
            plain(f"{row['profile']} ({row['backend']})"),
            plain(row["origin"]),
            styled(("yes", "green"), f" {', '.join(row['toolchains'])}")
            if row["toolchain_present"]
            else no,
            yes if row["device_present"] else no,
            decision,
        )
    console().print(table)
    for row in rows:
        for gap in row["missing"]:
            if gap["install"]:
                console().print(plain(f"  {row['target']}: {gap['install']}"))
