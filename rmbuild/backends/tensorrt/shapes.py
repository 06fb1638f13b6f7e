"""trtexec's optimization profile, derived from the graph and the model's declared limits.

A KV-cache LM has dynamic inputs everywhere (batch, new tokens, past length); trtexec needs a
``min``/``opt``/``max`` shape for every one of them, the KV-cache inputs included, or the
engine cannot take the shapes the decode loop feeds. They follow from the graph's inputs
(``kv_layout.json``, or the ONNX file itself) and two flags, ``max_batch`` and ``max_seq``
(the longest context, prompt + generated tokens):

=================  ==========  ==========================  ==========================
input              min         opt                         max
=================  ==========  ==========================  ==========================
input_ids          1 x 1       opt_batch x 1 (decode)      max_batch x max_seq
position_ids       1 x 1       opt_batch x 1               max_batch x max_seq
attention_mask     1 x 1       opt_batch x (opt_past+1)    max_batch x max_seq
past_key_values.*  1xHx0xD     opt_batch x H x opt_past xD  max_batch x H x (max_seq-1) x D
=================  ==========  ==========================  ==========================

Static dims keep the graph's value. A past length of 0 (the prefill step) is an empty tensor,
which TensorRT accepts in a profile. ``SHAPE_RULE`` is in the key: a change to this table
must miss.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from rmbuild.errors import SpecError
from rmbuild.runtime import kvlayout

SHAPE_RULE = 1


@dataclass(frozen=True)
class Profile:
    """One optimization profile as trtexec's three option values."""

    min: str
    opt: str
    max: str

    def as_flags(self) -> dict[str, str]:
        return {"min_shapes": self.min, "opt_shapes": self.opt, "max_shapes": self.max}


def layout_of(input_dir: Path) -> kvlayout.KVLayout:
    """The graph's inputs: ``kv_layout.json`` beside the ONNX, else the ONNX file (needs
    ``onnx``); neither: a SpecError saying how to give the shapes by hand."""
    layout = kvlayout.read_sidecar(input_dir)
    if layout is not None:
        return layout
    model = input_dir / "model.onnx"
    try:
        return kvlayout.from_onnx(model, kvlayout.read_config(input_dir))
    except ImportError:
        why = "the onnx package is not installed, and the input has no kv_layout.json"
    except Exception as exc:  # noqa: BLE001 - no graph, a broken graph: say so
        why = f"{model.name}: {exc}"
    raise SpecError(
        f"cannot derive trtexec's shape profile from the input ({why})",
        field="flags.min_shapes",
        hint="install rmbuild[onnx] (its export writes kv_layout.json), or set min_shapes, "
        "opt_shapes and max_shapes in the target's flags",
    )


def _dims(spec: kvlayout.InputSpec, wanted: tuple[int, ...]) -> str:
    return "x".join(str(w if d is None else d) for d, w in zip(spec.shape, wanted, strict=True))


def derive(
    layout: kvlayout.KVLayout,
    *,
    max_batch: int,
    max_seq: int,
    opt_batch: int | None = None,
    opt_past: int | None = None,
) -> Profile:
    """The profile for every dynamic input of ``layout`` (see the module's table)."""
    if max_batch < 1 or max_seq < 2:
        raise SpecError(
            f"max_batch must be >= 1 and max_seq >= 2 (got {max_batch}, {max_seq})",
            field="flags.max_seq",
        )
    ob = min(opt_batch or 1, max_batch)
    op = min(opt_past if opt_past is not None else max_seq // 2, max_seq - 1)
    rows: dict[str, list[str]] = {"min": [], "opt": [], "max": []}
    for spec in layout.inputs:
        if all(d is not None for d in spec.shape):
            continue  # static: trtexec needs no shape for it
        if spec.name.startswith(kvlayout.PAST_PREFIX):
            heads, head_dim = spec.shape[1] or 1, spec.shape[3] or 1
            sizes = {
                "min": (1, heads, 0, head_dim),
                "opt": (ob, heads, op, head_dim),
                "max": (max_batch, heads, max_seq - 1, head_dim),
            }
        elif spec.name == "attention_mask":
            sizes = {"min": (1, 1), "opt": (ob, op + 1), "max": (max_batch, max_seq)}
        elif len(spec.shape) == 2:  # input_ids, position_ids
            sizes = {"min": (1, 1), "opt": (ob, 1), "max": (max_batch, max_seq)}
        else:
            raise SpecError(
                f"cannot derive a shape for input {spec.name!r} {spec.describe()}",
                field="flags.min_shapes",
                hint="set min_shapes, opt_shapes and max_shapes in the target's flags",
            )
        for which, wanted in sizes.items():
            rows[which].append(f"{spec.name}:{_dims(spec, wanted)}")
    return Profile(*(",".join(rows[w]) for w in ("min", "opt", "max")))


def parse(spec: str) -> dict[str, tuple[int, ...]]:
    """``a:1x2,b:3`` -> ``{"a": (1, 2), "b": (3,)}`` (trtexec's --minShapes syntax)."""
    out: dict[str, tuple[int, ...]] = {}
    for item in filter(None, (part.strip() for part in spec.split(","))):
        name, _, dims = item.rpartition(":")
        out[name.strip("'")] = tuple(int(d) for d in dims.split("x")) if dims else ()
    return out
