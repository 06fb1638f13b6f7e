"""The optional polygraphy-trt profile renders Polygraphy's options from the same flags and
derived shapes as trtexec's. Contract-checked by rendering only."""

from __future__ import annotations

from rmbuild.declare.templating import render_argv


def test_polygraphy_convert_gets_polygraphy_shapes_and_the_timing_cache() -> None:
    from rmbuild.declare.profiles import find_profile

    profile = find_profile("polygraphy-trt").profile
    flags = {
        **profile.flags,
        "min_shapes": "input_ids:1x1,past_key_values.0.key:1x2x0x32",
        "opt_shapes": "input_ids:1x1,past_key_values.0.key:1x2x128x32",
        "max_shapes": "input_ids:1x256,past_key_values.0.key:1x2x255x32",
    }
    argv = render_argv(
        profile.template,
        {
            "flags": flags,
            "inputs": {"model": "/in"},
            "output": "/out",
            "workdir": "/w",
            "tool": "/bin/polygraphy",
        },
    )
    assert argv[:7] == [
        "/bin/polygraphy",
        "convert",
        "/in/model.onnx",
        "--convert-to",
        "trt",
        "-o",
        "/out/model.plan",
    ]
    at = argv.index("--trt-max-shapes")
    assert argv[at + 1 : at + 3] == ["input_ids:[1,256]", "past_key_values.0.key:[1,2,255,32]"]
    assert "--fp16" in argv and "workspace:4096M" in argv
    assert argv[argv.index("--save-timing-cache") + 1] == "/w/compiler-cache/timing.cache"
