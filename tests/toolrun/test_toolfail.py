"""An architecture the exporter cannot handle is one line: the model type and what the
exporter supports for the task, not optimum's 13-line traceback with the type in its last."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rmbuild.errors import EXIT_TOOL, ToolError, UnsupportedArchitecture

# What optimum-cli 2.1 / optimum-onnx 0.1.0 printed for a tiny mixtral (the tail rmbuild kept).
TRACEBACK = """\
Traceback (most recent call last):
  File "/venv/bin/optimum-cli", line 6, in <module>
    sys.exit(main())
             ^^^^^^
  File "/venv/lib/python3.11/site-packages/optimum/commands/optimum_cli.py", line 219, in main
    service.run()
  File "/venv/lib/python3.11/site-packages/optimum/commands/export/onnx.py", line 264, in run
    main_export(
  File "/venv/lib/python3.11/site-packages/optimum/exporters/onnx/__main__.py", line 399, in main_export
    onnx_export_from_model(
  File "/venv/lib/python3.11/site-packages/optimum/exporters/onnx/convert.py", line 944, in onnx_export_from_model
    raise ValueError(
ValueError: Trying to export a mixtral model, that is a custom or unsupported architecture, but no custom onnx configuration was passed as `custom_onnx_configs`. Please refer to https://huggingface.co/docs/optimum/main/en/exporters/onnx/usage_guides/export_a_model#custom-export-of-transformers-models for an example on how to export custom models. Please open an issue at https://github.com/huggingface/optimum/issues if you would like the model type mixtral to be supported natively in the ONNX export.
"""  # noqa: E501 - the tool's own lines


def _onnx_export() -> tuple[object, object]:
    from rmbuild.declare.profiles import find_profile
    from rmbuild.toolrun.toolchains import find_toolchain

    profile = find_profile("onnx-export").profile
    return profile, find_toolchain(profile.toolchain)


def test_optimums_unsupported_architecture_traceback_becomes_one_line(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from rmbuild.toolrun import toolfail

    asked: list[str] = []

    def supported(toolchain: object, task: str, env: object) -> tuple[str, list[str]]:
        asked.append(task)
        return "0.1.0", ["gpt2", "llama", "mistral", "qwen2"]

    monkeypatch.setattr(toolfail, "supported_model_types", supported)
    profile, toolchain = _onnx_export()
    log = tmp_path / "export.log"
    error = ToolError(
        "optimum-cli failed with exit code 1 (the error comes from the tool, not from rmbuild)",
        tool="optimum-cli",
        log_path=log,
        tail=TRACEBACK.splitlines(),
        returncode=1,
    )
    argv = ["optimum-cli", "export", "onnx", "--model", "/m", "--task", "text-generation", "/o"]
    better = toolfail.explain(profile, toolchain, argv, error, {})  # type: ignore[arg-type]
    assert isinstance(better, UnsupportedArchitecture)
    assert better.message == (
        "optimum-cli cannot export a mixtral model to ONNX: a custom or unsupported "
        "architecture for optimum-onnx 0.1.0, which exports for text-generation: "
        "gpt2, llama, mistral, qwen2"
    )
    assert "\n" not in better.message and asked == ["text-generation"]
    assert better.context == [f"full log: {log}"]  # the traceback stays in the log
    assert better.exit_code == EXIT_TOOL and better.code == "unsupported-architecture"
    assert better.returncode == 1 and "format: onnx" in (better.hint or "")


def test_other_failures_of_the_exporter_keep_their_tail() -> None:
    from rmbuild.toolrun import toolfail

    profile, toolchain = _onnx_export()
    error = ToolError(
        "optimum-cli failed", tool="optimum-cli", tail=["RuntimeError: out of memory"]
    )
    assert toolfail.explain(profile, toolchain, [], error, {}) is None  # type: ignore[arg-type]


@pytest.mark.slow
def test_a_real_mixtral_export_fails_in_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """optimum-onnx 0.1.0 has no ONNX config for mixtral: the real exporter, the real list."""
    transformers = pytest.importorskip("transformers")
    pytest.importorskip("optimum.exporters.onnx")
    from artifact_store import Store
    from rmbuild.build import compile_spec

    config = transformers.AutoConfig.for_model(
        "mixtral",
        vocab_size=1000,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=1,
        num_attention_heads=4,
        num_key_value_heads=2,
        num_local_experts=2,
        max_position_embeddings=128,
    )
    model = tmp_path / "model"
    transformers.AutoModelForCausalLM.from_config(config).save_pretrained(model)
    spec = tmp_path / "model.yaml"
    spec.write_text(
        f"name: moe\nsource: {{path: {json.dumps(str(model))}, format: hf}}\n"
        "targets:\n  onnx: {profile: onnx-export}\n"
    )
    monkeypatch.setenv("RMBUILD_CONFIG_DIR", str(tmp_path / "config"))
    with Store(tmp_path / "store") as store, pytest.raises(UnsupportedArchitecture) as err:
        compile_spec(spec, store=store)
    message = err.value.message
    assert message.startswith("optimum-cli cannot export a mixtral model to ONNX")
    assert "for text-generation-with-past: " in message and "llama" in message.split(": ")[-1]
    assert "mixtral" not in message.split(": ")[-1]
    assert len(err.value.context) == 1 and err.value.context[0].startswith("full log: ")
