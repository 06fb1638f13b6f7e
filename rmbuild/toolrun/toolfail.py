"""A vendor tool's known failures, said in one line a user can act on.

Some failures are the user's choice of input, not the tool's bug, yet the tool reports them at
the end of a long traceback. For those, the adapter replaces the tool's tail with one line
that names the cause and what would work (the full log keeps every word of the tool):

* ``optimum-cli export onnx`` on an architecture optimum-onnx has no ONNX config for (mixtral,
  qwen2_moe, starcoder2 in optimum-onnx 0.1.0) raises a 13-line traceback whose last line
  names the model type. Said instead: the architecture, and the model types that optimum-onnx
  version exports for the task, asked of the toolchain's own optimum.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping

from rmbuild.declare.spec import BuildProfile
from rmbuild.errors import ToolError, UnsupportedArchitecture
from rmbuild.toolrun.toolchains import Toolchain

# optimum.exporters.onnx.convert's words for a model type it has no ONNX config for.
_OPTIMUM_UNSUPPORTED = re.compile(
    r"Trying to export a (?P<arch>\S+) model, that is a custom or unsupported architecture"
)
# What the toolchain's optimum exports for a task (run in its interpreter, isolated).
_SUPPORTED_CODE = """
import importlib.metadata, json, sys
from optimum.exporters.tasks import TasksManager
import optimum.exporters.onnx.model_configs  # registers the ONNX configs
print(json.dumps({
    "version": importlib.metadata.version("optimum-onnx"),
    "types": sorted(TasksManager.get_supported_model_type_for_task(sys.argv[1], "onnx")),
}))
"""
# Importing optimum and torch takes seconds; a probe that hangs must not hold the error back.
PROBE_TIMEOUT_S = 120.0


def explain(
    profile: BuildProfile,
    toolchain: Toolchain,
    argv: list[str],
    error: ToolError,
    env: Mapping[str, str],
) -> ToolError | None:
    """A one-line error for a known failure of ``profile``'s tool, or None (keep ``error``)."""
    if profile.tool.package == "optimum-onnx":
        return _optimum_unsupported(toolchain, argv, error, env)
    return None


def _optimum_unsupported(
    toolchain: Toolchain, argv: list[str], error: ToolError, env: Mapping[str, str]
) -> ToolError | None:
    found = None
    for line in reversed(error.tail):
        found = _OPTIMUM_UNSUPPORTED.search(line)
        if found:
            break
    if found is None:
        return None
    arch = found.group("arch")
    task = argv[argv.index("--task") + 1] if "--task" in argv[:-1] else "text-generation-with-past"
    version, types = supported_model_types(toolchain, task, env)
    what = f"optimum-onnx {version}" if version else "optimum-onnx"
    exports = ", ".join(types) if types else "(its list could not be read; see the log)"
    return UnsupportedArchitecture(
        f"optimum-cli cannot export a {arch} model to ONNX: a custom or unsupported "
        f"architecture for {what}, which exports for {task}: {exports}",
        tool=error.tool,
        log_path=error.log_path,
        hint="use a model of one of those architectures, or export it yourself and give the "
        "folder as `source: {path: …, format: onnx}` (model.onnx with a KV cache, config.json, "
        "tokenizer files)",
        returncode=error.returncode,
    )


def supported_model_types(
    toolchain: Toolchain, task: str, env: Mapping[str, str]
) -> tuple[str | None, list[str]]:
    """(optimum-onnx's version, the model types it exports for ``task``) as the toolchain's
    own optimum says; (None, []) if it cannot be asked."""
    from rmbuild.toolrun.toolenv import python_argv, run_probe

    try:
        done = run_probe(
            python_argv(toolchain.python_path, _SUPPORTED_CODE, task), env, timeout=PROBE_TIMEOUT_S
        )
        answer = json.loads(done.stdout.strip().splitlines()[-1])
        return str(answer["version"]), [str(t) for t in answer["types"]]
    except Exception:  # noqa: BLE001 - the failure is the tool's; this only words it better
        return None, []
