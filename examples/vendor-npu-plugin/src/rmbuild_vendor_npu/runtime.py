"""The decoder step over libvnpu: rmbuild's session calls ``reset`` and ``step``.

The VN runtime keeps the KV cache on the device inside its context, so this is not one of
rmbuild's graph runtimes (which feed the cache as tensors through ``rmbuild.runtime.kvloop``):
a step hands the new token ids to ``vnpu_context_step`` and gets the last position's logits
back. rmbuild's session does the rest (tokenizer, sampling, stop strings, streaming).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from rmbuild.errors import ArtifactInputMismatch, IncompatibleArtifact, SessionClosed
from rmbuild.runtime.limits import Bound

from rmbuild_vendor_npu import capi

BLOB = "model.vnpu"


def incompatible(exc: capi.VnpuError, what: str) -> IncompatibleArtifact:
    """A refusal of the runtime as rmbuild's exit 6, in the runtime's own words."""
    hint = (
        "rebuild it for a SKU present here (flag sku), or run it on a host with that device"
        if exc.status == capi.ERR_DEVICE
        else "rebuild it with `rmbuild compile ... --rebuild`"
    )
    return IncompatibleArtifact(f"the VN runtime refused {what}: {exc}", hint=hint)


class VnpuStep:
    """:class:`rmbuild.runtime.session.DecoderStep` over one device context."""

    def __init__(self, folder: Path, device: int) -> None:
        lib = capi.load()
        try:
            self.model = capi.Model(lib, folder / BLOB, device)
        except capi.VnpuError as exc:
            raise incompatible(exc, f"{folder / BLOB}") from exc
        self.context: capi.Context | None = capi.Context(self.model)
        self.vocab = self.model.info.vocab_size

    def reset(self) -> None:
        self._live().reset()

    def step(self, token_ids: np.ndarray) -> np.ndarray:
        context = self._live()
        ids = [int(t) for t in np.asarray(token_ids).reshape(-1)]
        try:
            logits = context.step(ids)
        except capi.VnpuError as exc:
            if exc.status == capi.ERR_CAPACITY:
                limit = self.model.info.max_seq
                raise ArtifactInputMismatch(
                    f"model.vnpu cannot take {len(ids)} more tokens: {exc}",
                    input="input_ids",
                    expected=f"at most {limit} tokens in all",
                    given=f"{len(context) + len(ids)} tokens",
                ) from exc
            raise
        return np.ctypeslib.as_array(logits).copy()

    def compiled_limit(self) -> Bound:
        """The KV cache's capacity, fixed at compile time (flag ``max_seq``)."""
        return Bound(
            int(self.model.info.max_seq),
            "max_seq of model.vnpu",
            "rebuild with a larger max_seq flag",
        )

    def _live(self) -> capi.Context:
        if self.context is None:
            raise SessionClosed("the VN session is closed", hint="load the artifact again")
        return self.context

    def close(self) -> None:
        # The context first: the header forbids freeing a model under a live context.
        if self.context is not None:
            self.context.close()
            self.context = None
        self.model.close()


def header(data: bytes) -> dict[str, Any]:
    """The facts of a model.vnpu header (``rmbuild show``), read without the runtime."""
    import struct

    magic, fmt, sku, compiler = struct.unpack_from("<4sI16s16s", data, 0)
    if magic != b"VNPU":
        raise ValueError("not a vnpu blob")
    dims = struct.unpack_from("<8I", data, 40)
    names = ("vocab", "hidden", "inter", "layers", "heads", "kv_heads", "head_dim", "max_seq")
    return {
        "format": fmt,
        "sku": sku.rstrip(b"\0").decode(),
        "compiler": compiler.rstrip(b"\0").decode(),
        **dict(zip(names, dims, strict=True)),
    }
