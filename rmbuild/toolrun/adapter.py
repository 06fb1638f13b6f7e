"""BinaryCompilerAdapter: runs a black-box compiler from a profile's template.

It renders the argv (and any config files) from the profile's Jinja template, runs the tool
without a shell, in a scrubbed environment (rmbuild.toolrun.toolenv), under a supervisor that
kills its whole process tree on exit, timeout, cancel or rmbuild's death
(rmbuild.toolrun.toolproc), streams its merged output into a log file, and checks the outputs
the profile declares. The same rendering, with every path replaced by its role name, is what
enters the action key.
"""

from __future__ import annotations

import glob
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rmbuild.config import PACKAGE_DIR
from rmbuild.declare.spec import BuildProfile, FlagValue
from rmbuild.declare.templating import render, render_argv
from rmbuild.errors import (
    DiskFull,
    OutputsMissing,
    SpecError,
    ToolError,
    ToolNotFound,
    is_disk_full,
)
from rmbuild.toolrun.toolchains import Toolchain
from rmbuild.toolrun.toolenv import tool_env
from rmbuild.toolrun.toolproc import TAIL_LINES, run_supervised

__all__ = ["TAIL_LINES", "BinaryCompilerAdapter", "RenderedCommand", "ToolRun"]


@dataclass(frozen=True)
class RenderedCommand:
    """A rendered invocation: argv plus config files (relative path -> text)."""

    argv: list[str]
    configs: dict[str, str]


@dataclass(frozen=True)
class ToolRun:
    """What a finished tool run left behind."""

    argv: list[str]
    returncode: int
    duration_s: float
    log_path: Path


# One argument per rendered line: a line break inside a value would split it into two, and
# \x00/\x01 are the markers render_argv brackets values with (no argv can hold \x00 anyway).
_FORBIDDEN = ("\n", "\r", "\x00", "\x01")


def _check_values(profile: BuildProfile, values: dict[str, object], what: str) -> None:
    for name, value in values.items():
        for item in value if isinstance(value, list) else [value]:
            if isinstance(item, str) and any(ch in item for ch in _FORBIDDEN):
                raise SpecError(
                    f"{what} cannot contain line breaks or NUL characters",
                    field=f"{what}.{name}" if what == "flags" else name,
                    file=profile.name,
                )


class BinaryCompilerAdapter:
    """Renders and runs one profile's tool."""

    def __init__(self, profile: BuildProfile, toolchain: Toolchain, start: Path | None) -> None:
        self.profile = profile
        self.toolchain = toolchain
        self.start = start

    # ------------------------------------------------------------------ identity

    def script_path(self) -> Path | None:
        if self.profile.tool.script is None:
            return None
        path = PACKAGE_DIR / "tools" / f"{self.profile.tool.script}.py"
        if not path.is_file():
            raise SpecError(
                f"tool script {self.profile.tool.script!r} is not shipped with rmbuild",
                field="tool.script",
                file=self.profile.name,
            )
        return path

    def resolve_tool(self) -> Path:
        """The executable to run: the shipped script's interpreter, or the named tool."""
        if self.profile.tool.script is not None:
            python = self.toolchain.python_path
            if not python.exists():
                raise ToolNotFound(
                    f"toolchain {self.toolchain.name!r}: interpreter {python} not found",
                    tool=str(python),
                    hint=self.toolchain.install_hint(),
                )
            return python
        return self.toolchain.which(self.profile.tool.name)

    # ------------------------------------------------------------------ rendering

    def _context(
        self,
        flags: dict[str, FlagValue],
        *,
        inputs: dict[str, str],
        output: str,
        workdir: str,
        tool: str,
        script: str,
        python: str,
        configs: dict[str, str],
    ) -> dict[str, Any]:
        return {
            "flags": flags,
            "inputs": inputs,
            "output": output,
            "workdir": workdir,
            "tool": tool,
            "script": script,
            "python": python,
            "configs": configs,
            "profile": {"name": self.profile.name, "backend": self.profile.backend},
        }

    def _render(self, context: dict[str, Any]) -> RenderedCommand:
        argv = render_argv(self.profile.template, context, self.start)
        configs = {
            rel: render(template, context, self.start)
            for rel, template in sorted(self.profile.configs.items())
        }
        return RenderedCommand(argv=argv, configs=configs)

    def render_for_key(
        self, flags: dict[str, FlagValue], input_roles: list[str]
    ) -> RenderedCommand:
        """Render with every path replaced by its role name and runtime flags by placeholders."""
        _check_values(self.profile, flags, "flags")
        keyed = {
            name: (f"<runtime:{name}>" if name in self.profile.runtime_flags else value)
            for name, value in flags.items()
        }
        context = self._context(
            keyed,
            inputs={role: f"<input:{role}>" for role in input_roles},
            output="<output>",
            workdir="<workdir>",
            tool=f"<tool:{self.profile.tool.name}>",
            script=f"<script:{self.profile.tool.script}>",
            python="<python>",
            configs={rel: f"<config:{rel}>" for rel in self.profile.configs},
        )
        return self._render(context)

    def render_for_run(
        self, flags: dict[str, FlagValue], *, inputs: dict[str, Path], output: Path, workdir: Path
    ) -> RenderedCommand:
        """Render the real command for this machine."""
        _check_values(self.profile, flags, "flags")
        paths = {f"input {role}": str(path) for role, path in inputs.items()}
        _check_values(
            self.profile, {**paths, "output": str(output), "work dir": str(workdir)}, "paths"
        )
        tool = self.resolve_tool()
        script = self.script_path()
        context = self._context(
            flags,
            inputs={role: str(path) for role, path in inputs.items()},
            output=str(output),
            workdir=str(workdir),
            tool=str(tool),
            script=str(script) if script else "",
            python=str(self.toolchain.python_path),
            configs={rel: str(workdir / rel) for rel in self.profile.configs},
        )
        return self._render(context)

    # ------------------------------------------------------------------ running

    def run(
        self,
        command: RenderedCommand,
        *,
        workdir: Path,
        log_path: Path,
        timeout: float | None = None,
        on_line: Callable[[str], None] | None = None,
    ) -> ToolRun:
        """Run the tool; raise a ToolError carrying its last log lines on any failure."""
        for rel, text in command.configs.items():
            target = (workdir / rel).resolve()
            if not target.is_relative_to(workdir.resolve()):
                raise SpecError(
                    "config path escapes the work dir",
                    field=f"configs.{rel}",
                    file=self.profile.name,
                )
            try:
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(text, encoding="utf-8")
            except OSError as exc:
                if is_disk_full(exc):
                    raise DiskFull.from_oserror(exc, target, what="writing the config") from None
                raise

        tmp = workdir / "tmp"
        tmp.mkdir(exist_ok=True)
        env = tool_env(self.profile, self.toolchain, tmp)
        try:
            finished = run_supervised(
                command.argv,
                cwd=workdir,
                env=env,
                log_path=log_path,
                timeout=timeout if timeout is not None else self.profile.timeout,
                tool=self.profile.tool.name,
                hint=self.toolchain.install_hint(),
                on_line=on_line,
            )
        except ToolError as exc:
            from rmbuild.toolrun import toolfail

            # A known failure (an architecture the exporter has no config for) in one line.
            better = toolfail.explain(self.profile, self.toolchain, command.argv, exc, env)
            if better is None:
                raise
            raise better from None
        return ToolRun(command.argv, finished.returncode, finished.duration_s, log_path)

    def check_outputs(self, output: Path, log_path: Path | None = None) -> None:
        """Every declared output pattern must match at least one file."""
        missing = [
            pattern
            for pattern in self.profile.outputs
            if not glob.glob(glob.escape(str(output)) + "/" + pattern, recursive=True)
        ]
        if missing:
            raise OutputsMissing(
                f"{self.profile.tool.name} exited 0 but did not write its declared outputs: "
                f"{', '.join(missing)}",
                tool=self.profile.tool.name,
                log_path=log_path,
                hint=f"check the template {self.profile.template} and the profile's outputs",
            )
