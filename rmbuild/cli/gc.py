"""``rmbuild gc``: drop unreferenced blobs and stale temp dirs, optionally cap the store size."""

from __future__ import annotations

import time
from dataclasses import asdict
from datetime import datetime
from typing import Any

import click

from rmbuild.cli._output import elapsed, emit_json, human_size, parse_size

# Seconds per unit of a duration (--grace).
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


class Size(click.ParamType):
    """A byte size such as 500M, 5G or 1024."""

    name = "size"

    def convert(
        self, value: object, param: click.Parameter | None, ctx: click.Context | None
    ) -> int:
        if isinstance(value, int):
            return value
        try:
            size = parse_size(str(value))
        except ValueError:
            self.fail(f"{value!r} is not a size (e.g. 500M, 5G, 1024)", param, ctx)
        if size < 0:
            self.fail("a size cannot be negative", param, ctx)
        return size


class Duration(click.ParamType):
    """A duration such as 1h, 30m, 90s or 0 (a bare number is seconds)."""

    name = "duration"

    def convert(
        self, value: object, param: click.Parameter | None, ctx: click.Context | None
    ) -> float:
        if isinstance(value, int | float):
            return float(value)
        text = str(value).strip().lower()
        unit = _UNITS.get(text[-1:], None)
        try:
            seconds = float(text[:-1] if unit else text) * (unit or 1)
        except ValueError:
            self.fail(f"{value!r} is not a duration (e.g. 1h, 30m, 90s, 0)", param, ctx)
        if seconds < 0:
            self.fail("a duration cannot be negative", param, ctx)
        return seconds


@click.command("gc")
@click.option("--dry-run", is_flag=True, help="Say what would be freed; delete nothing.")
@click.option(
    "--max-size",
    type=Size(),
    help="Evict least-recently-used artifacts until the store fits (e.g. 5G).",
)
@click.option(
    "--keep-logs",
    "keep_logs_days",
    type=click.FloatRange(0),
    default=14,
    show_default=True,
    metavar="DAYS",
    help="Keep failed builds' logs (the store's logs/) this many days.",
)
@click.option(
    "--grace",
    type=Duration(),
    default="1h",
    show_default=True,
    metavar="DURATION",
    help="Keep unreferenced blobs younger than this (they may belong to a build storing its "
    "files right now); 0 frees them at once.",
)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option(
    "--remote",
    "remote_url",
    metavar="URL",
    is_flag=False,
    flag_value="",
    help="Collect this remote cache's leftovers instead: temp objects of pushes that died "
    "(untouched for an hour) and S3 multipart uploads never finished (started over a day "
    "ago). Without URL, the configured one (RMBUILD_REMOTE, rmbuild.toml, config.toml).",
)
@click.pass_obj
def command(
    app: Any,
    dry_run: bool,
    max_size: int | None,
    keep_logs_days: float,
    as_json: bool,
    remote_url: str | None = None,
    grace: float = 3600.0,
) -> None:
    """Collect garbage in the store.

    Removes blobs no artifact references, stale scratch dirs and trees, failed builds' logs
    older than --keep-logs, lock files of keys without an artifact that no process holds,
    and stat-cache rows of files gone or changed. gc waits for builds that are storing their
    results and never evicts an artifact a build or `rmbuild run` is using.

    \b
    Grace period: an unreferenced blob younger than --grace (default 1h) is kept, since a
    build may be storing it right now. So the files of an artifact built within the hour and
    evicted by --max-size (or deleted) stay on disk until a later gc; gc says how many bytes
    wait and from when a gc frees them. `rmbuild gc --grace 0` frees them now.

    With --remote, the remote cache instead: what pushes that died left there (a failed push
    cleans up after itself). Its artifacts are never removed.
    """
    if remote_url is not None:
        if max_size is not None:
            raise click.UsageError("--max-size caps the local store; it does not go with --remote")
        _collect_remote(remote_url, dry_run=dry_run, as_json=as_json)
        return
    report = app.store().gc(
        dry_run=dry_run, max_size=max_size, log_retention=keep_logs_days * 86400, grace=grace
    )
    if as_json:
        emit_json(asdict(report))
        return
    for line in report_lines(report, max_size):
        click.echo(f"gc: {line}")


def _collect_remote(url: str, *, dry_run: bool, as_json: bool) -> None:
    """``gc --remote``: see :mod:`artifact_store.remote_gc`."""
    from artifact_store.remote_gc import collect_remote
    from rmbuild.storage import remotes

    remote = remotes.open_remote(url or None, required=True)
    assert remote is not None
    report = remotes.call(collect_remote, remote, dry_run=dry_run)
    if as_json:
        emit_json(asdict(report))
        return
    click.echo(f"gc {report.summary()}")


def report_lines(report: Any, max_size: int | None = None) -> list[str]:
    """A gc report for people: what went now, what the grace period keeps until when, and the
    size of what artifacts reference (the figure --max-size caps)."""
    would = report.dry_run
    lines = [
        f"{'would free' if would else 'freed'} {human_size(report.bytes_freed)} now: "
        f"{report.blobs_removed} blobs, {len(report.evicted_keys)} evicted artifacts, "
        f"{report.tmp_removed} tmp dirs, {report.trees_removed} trees, "
        f"{report.logs_removed} logs, {report.locks_removed} locks, "
        f"{report.stat_rows_removed} stat rows"
    ]
    if report.skipped_in_use:
        lines.append(f"{len(report.skipped_in_use)} artifacts in use by a build or run were kept")
    if report.pending_blobs:
        grace = elapsed(report.grace_s)
        when = ""
        if report.pending_until is not None:
            wait = max(0.0, report.pending_until - time.time())
            clock = datetime.fromtimestamp(report.pending_until).strftime("%H:%M")
            when = f"; a gc from {clock} (in {elapsed(wait)}) frees them"
        lines.append(
            f"{human_size(report.pending_bytes)} {'would wait' if would else 'waits'} in "
            f"{report.pending_blobs} unreferenced blobs younger than the {grace} grace period"
            f"{when}, or `rmbuild gc --grace 0` now"
        )
    cap = f" (--max-size {human_size(max_size)})" if max_size is not None else ""
    lines.append(
        f"referenced by artifacts: {human_size(report.size_before)} -> "
        f"{human_size(report.size_after)}{cap}"
    )
    return lines
