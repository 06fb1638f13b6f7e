"""Shared output helpers of the CLI: JSON, sizes, ages, the console, the heartbeat."""

from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

# Seconds between two heartbeat lines of a long step whose output is not a terminal.
HEARTBEAT_S = 30.0


# Whether this command has written its JSON result to stdout (``main`` then prints no error
# object after it: one JSON document per run).
_json_written = False


def reset_json_written() -> None:
    """Forget earlier JSON output (``main`` runs once per command; tests run many)."""
    global _json_written
    _json_written = False


def json_written() -> bool:
    """Has this command begun writing its JSON result to stdout?"""
    return _json_written


def note_json_written() -> None:
    """Mark that a JSON result went to stdout (a command that streams writes it itself)."""
    global _json_written
    _json_written = True


def emit_json(value: Any) -> None:
    """Machine-readable output on stdout (``--json``)."""
    note_json_written()
    sys.stdout.write(json.dumps(value, indent=2, default=str) + "\n")


def human_size(size: int) -> str:
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} B"


def parse_size(text: str) -> int:
    """'500M', '5G', '1024' -> bytes."""
    units = {"k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}
    text = text.strip().lower().removesuffix("ib").removesuffix("b")
    if text and text[-1] in units:
        return int(float(text[:-1]) * units[text[-1]])
    return int(text)


def age(when: datetime) -> str:
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    seconds = max(0, int((datetime.now(UTC) - when).total_seconds()))
    for unit, span in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= span:
            return f"{seconds // span}{unit} ago"
    return f"{seconds}s ago"


def plain(value: Any):  # noqa: ANN201 - rich.text.Text
    """``value`` as a rich ``Text``: printed literally, never read as markup.

    Every string that comes from a user, a plugin or a file reaches a rich table or ``print``
    through this: as a markup string ``pip install 'rmbuild[onnx]'`` loses its ``[onnx]``,
    taken for a style tag. (``rich.markup.escape`` is no substitute: it doubles a trailing
    backslash.) Mix it with styles through :func:`styled`.
    """
    from rich.text import Text

    return Text("" if value is None else str(value))


def styled(*parts: Any):  # noqa: ANN201 - rich.text.Text
    """A line of text and ``(text, style)`` pairs, none of it read as markup.

    ``styled(("unavailable", "red"), ": ", reason)`` prints ``reason`` exactly as it is.
    """
    from rich.text import Text

    return Text.assemble(*(p if isinstance(p, tuple) else str(p) for p in parts))


def console(stderr: bool = False):  # noqa: ANN201 - rich.console.Console
    from rich.console import Console

    stream = sys.stderr if stderr else sys.stdout
    # Piped output is read by scripts and people alike: don't squeeze tables into 80 columns.
    width = None if stream.isatty() else 200
    return Console(stderr=stderr, highlight=False, soft_wrap=False, width=width)


def record_summary(record: Any) -> dict[str, Any]:
    """The fields `ls --json` prints for one artifact."""
    meta = record.metadata
    return {
        "id": record.key,
        "model": record.model,
        "target": record.target,
        "profile": meta.get("profile"),
        "stage": meta.get("stage"),
        "backend": record.backend,
        "toolchain": toolchain_versions(meta),
        "size": record.size,
        "created_at": record.created_at.isoformat(),
        "last_used_at": record.last_used_at.isoformat() if record.last_used_at else None,
        "aliases": list(record.aliases),
        # Every (model, target) the artifact serves; model/target above are its first builder.
        "uses": [{"model": m, "target": t} for m, t in record.uses],
    }


def toolchain_versions(meta: dict[str, Any]) -> dict[str, str]:
    """The versions that matter for an artifact: its tool's package, then the rest."""
    tool = meta.get("tool") or {}
    packages = (meta.get("toolchain") or {}).get("packages") or {}
    out = {}
    if tool.get("package") and tool.get("version"):
        out[tool["package"]] = tool["version"]
    for name, version in packages.items():
        if version and name not in out:
            out[name] = version
    return out


def elapsed(seconds: float) -> str:
    """``4s``, ``2m05s``, ``1h02m``: a duration as a person reads it."""
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


class Heartbeat:
    """A line every ``interval`` seconds while a long step runs, for output that is no terminal.

    A piped compile or toolchain install would otherwise say nothing for minutes (a CI log looks
    hung). Each line gives the step, the time since it began and the tool's latest log line:
    ``rngd [2/2] furiosa-rngd (ab12…): still running, 2m30s; last: Compiling kernel 7/8``.
    Picklable (a reporter carrying one goes to ``-j`` workers): the thread is not.
    """

    def __init__(
        self,
        label: str,
        interval: float | None = None,
        write: Callable[[str], None] | None = None,
    ) -> None:
        self.label = label
        self.interval = HEARTBEAT_S if interval is None else interval
        self._write = write
        self._last = ""
        self._started = time.monotonic()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __reduce__(self) -> tuple[Any, ...]:
        return (Heartbeat, (self.label, self.interval))

    def line(self, text: str) -> None:
        """The tool's latest log line, shown by the next beat."""
        self._last = text

    def text(self) -> str:
        """The heartbeat line as of now."""
        out = f"{self.label}: still running, {elapsed(time.monotonic() - self._started)}"
        return f"{out}; last: {self._last[:200]}" if self._last else out

    def beat(self) -> None:
        """Write one heartbeat line (to stderr unless told otherwise)."""
        line = self.text()
        if self._write is not None:
            self._write(line)
        else:
            import click

            click.echo(line, err=True)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.beat()
            except (OSError, ValueError):
                return  # stderr closed under us: nobody is listening any more

    def start(self) -> Heartbeat:
        """Begin beating (the clock starts now); returns self."""
        self._started = time.monotonic()
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="rmbuild-heartbeat", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop beating; idempotent."""
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None and thread is not threading.current_thread():
            thread.join()

    def __enter__(self) -> Heartbeat:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
