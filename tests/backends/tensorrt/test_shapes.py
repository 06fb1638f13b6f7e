"""trtexec's optimization profile from the graph's inputs and max batch/sequence."""

from __future__ import annotations

from pathlib import Path

import pytest

from rmbuild.backends.tensorrt import shapes
from rmbuild.errors import SpecError
from rmbuild.runtime.kvlayout import KVLayout


def test_every_dynamic_input_gets_min_opt_max_within_the_limits(
    kit,
) -> None:
    profile = shapes.derive(KVLayout.from_json(kit.LAYOUT), max_batch=4, max_seq=128)
    mins, opts, maxs = (shapes.parse(p) for p in (profile.min, profile.opt, profile.max))
    names = {i["name"] for i in kit.LAYOUT["inputs"]}
    assert set(mins) == set(opts) == set(maxs) == names
    assert mins["past_key_values.1.value"] == (1, 2, 0, 32)
    assert opts["past_key_values.1.value"] == (1, 2, 64, 32)
    assert maxs["past_key_values.1.value"] == (4, 2, 127, 32)
    assert maxs["input_ids"] == (4, 128) and maxs["attention_mask"] == (4, 128)
    for name in names:
        assert all(a <= b <= c for a, b, c in zip(mins[name], opts[name], maxs[name], strict=True))


def test_static_inputs_are_left_out_and_static_dims_kept(
    kit,
) -> None:
    data = {
        **kit.LAYOUT,
        "inputs": [
            {"name": "input_ids", "dtype": "int64", "shape": [1, None]},
            {"name": "attention_mask", "dtype": "int64", "shape": [1, 16]},
            *kit.LAYOUT["inputs"][3:],
        ],
    }
    profile = shapes.derive(KVLayout.from_json(data), max_batch=8, max_seq=16)
    maxs = shapes.parse(profile.max)
    assert "attention_mask" not in maxs  # fully static: trtexec needs no shape
    assert maxs["input_ids"] == (1, 16)  # the static batch of 1 stays 1


def test_impossible_limits_are_a_spec_error(
    kit,
) -> None:
    with pytest.raises(SpecError, match="max_seq >= 2"):
        shapes.derive(KVLayout.from_json(kit.LAYOUT), max_batch=1, max_seq=1)


def test_no_layout_and_no_readable_graph_says_how_to_give_shapes(tmp_path: Path) -> None:
    (tmp_path / "model.onnx").write_bytes(b"not a graph")
    with pytest.raises(SpecError) as caught:
        shapes.layout_of(tmp_path)
    assert "min_shapes, opt_shapes and max_shapes" in (caught.value.hint or "")


def test_part_of_a_shape_profile_is_refused_naming_what_was_given(tmp_path: Path) -> None:
    from types import SimpleNamespace

    from rmbuild.backends.tensorrt.plugin import TensorRTBackend

    flags = {"trt_major": 10, "min_shapes": "input_ids:1x1", "opt_shapes": "", "max_shapes": ""}
    profile = SimpleNamespace(stage="compile", name="trtexec-fp16.yaml", flags=flags)
    with pytest.raises(SpecError, match=r"or none \(got only min_shapes\)") as err:
        TensorRTBackend().stage_flags(profile, flags, tmp_path)  # type: ignore[arg-type]
    assert err.value.field == "flags.min_shapes"
