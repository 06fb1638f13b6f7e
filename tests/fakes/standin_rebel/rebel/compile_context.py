"""STAND-IN for ``rebel.compile_context`` (tests only): weight sharing between the graphs of
one model (prefill and decoders) is recorded, not performed."""

from __future__ import annotations

from typing import Any

from rebel import _register_custom_ops

_register_custom_ops()


class CompileContext:
    def __init__(self, use_weight_sharing: bool = False) -> None:
        self.use_weight_sharing = use_weight_sharing
        self.static: dict[str, Any] = {}

    def mark_static_address(self, tensor: Any, name: str | None = None) -> None:
        self.static[name or str(len(self.static))] = tuple(getattr(tensor, "shape", ()))
