"""Shared output helpers of the CLI: JSON, sizes, ages, the console."""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from typing import Any


def emit_json(value: Any) -> None:
    """Machine-readable output on stdout (``--json``)."""
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
    """``value`` as a rich ``Text``: printed literally, never read as markup (issue 6 #16).

    Every string that comes from a user, a plugin or a file reaches a rich table or ``print``
    through this: as a markup string ``pip install 'rmbuild[onnx]'`` loses its ``[onnx]``,
    taken for a style tag. (``rich.markup.escape`` is no substitute: it doubles a trailing
    backslash.) Mix it with styles through :func:`styled`.
    """
    from rich.text import Text

    return Text("" if value is None else str(value))


def styled(*parts: Any):  # noqa: ANN201 - rich.text.Text
    """A line of text and ``(text, style)`` pairs, none of it read as markup (issue 6 #16).

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
