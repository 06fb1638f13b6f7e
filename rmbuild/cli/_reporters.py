"""How ``compile`` shows progress: a plain line per event, or a live line per stage on a TTY."""

from __future__ import annotations

import threading
import time
from typing import Any

import click

from rmbuild.cli._output import Heartbeat


class PlainReporter:
    """One line per event, for logs, CI and parallel builds (not a TTY); while a stage runs, a
    heartbeat line every 30 s (elapsed time, the tool's latest log line)."""

    def __init__(self, verbose: bool) -> None:
        self.verbose = verbose
        self._beat: Heartbeat | None = None

    def stage_start(self, target: str, index: int, total: int, profile: str, key: str) -> None:
        self._prefix = f"{target} [{index + 1}/{total}] {profile} ({key[:12]})"
        self.close()
        self._beat = Heartbeat(self._prefix).start()

    def stage_waiting(self, profile: str, key: str) -> None:
        click.echo(f"{self._prefix}: another process is building this key; waiting", err=True)

    def stage_line(self, line: str) -> None:
        if self._beat is not None:
            self._beat.line(line)
        if self.verbose:
            click.echo(f"    {line}", err=True)

    def stage_done(self, profile: str, key: str, hit: bool, seconds: float) -> None:
        self.close()
        what = "cache hit" if hit else f"built in {seconds:.1f} s"
        click.echo(f"{self._prefix}: {what}", err=True)

    def close(self) -> None:
        """Stop the heartbeat (a stage ended, or the build failed)."""
        beat, self._beat = self._beat, None
        if beat is not None:
            beat.stop()

    def stage_note(self, profile: str, key: str, message: str) -> None:
        click.echo(f"{self._prefix}: {message}", err=True)


class LiveReporter:
    """A live status line per stage on a TTY: elapsed time and the tool's latest log line."""

    def __init__(self) -> None:
        from rich.console import Console

        self.console = Console(stderr=True, highlight=False)
        self._status: Any = None
        self._line = ""
        self._label = ""
        self._started = 0.0
        self._stop = threading.Event()
        self._ticker: threading.Thread | None = None

    def _render(self) -> str:
        from rich.markup import escape

        elapsed = time.monotonic() - self._started
        width = max(20, self.console.width - len(self._label) - 16)
        line = escape(self._line[:width])
        return f"{self._label} [dim]{elapsed:5.1f}s[/] [dim italic]{line}[/]"

    def _tick(self) -> None:
        while not self._stop.wait(0.2):
            if self._status is not None:
                self._status.update(self._render())

    def stage_start(self, target: str, index: int, total: int, profile: str, key: str) -> None:
        from rich.markup import escape

        self._end()  # a target that failed mid-stage left its line running (--keep-going)
        # Names are text, never markup; "[1/2]" is no tag to rich.
        step = f"[bold][{index + 1}/{total}][/]"
        self._label = f"{escape(target)} {step} {escape(profile)} [dim]{key[:12]}[/]"
        self._line, self._started = "", time.monotonic()
        self._status = self.console.status(self._render())
        self._status.start()
        self._stop.clear()
        self._ticker = threading.Thread(target=self._tick, daemon=True)
        self._ticker.start()

    def stage_waiting(self, profile: str, key: str) -> None:
        self._line = "another process is building this key; waiting for it"

    def stage_line(self, line: str) -> None:
        self._line = line

    def stage_note(self, profile: str, key: str, message: str) -> None:
        from rich.markup import escape

        self.console.print(f"{self._label} [yellow]{escape(message)}[/]")

    def _end(self) -> None:
        self._stop.set()
        if self._ticker is not None:
            self._ticker.join()
        if self._status is not None:
            self._status.stop()
            self._status = None

    def stage_done(self, profile: str, key: str, hit: bool, seconds: float) -> None:
        self._end()
        what = "[green]cache hit[/]" if hit else f"[green]built[/] in {seconds:.1f} s"
        self.console.print(f"{self._label} {what}")

    def close(self) -> None:
        self._end()
