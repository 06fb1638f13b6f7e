"""BinaryCompilerAdapter: runs a black-box compiler from a profile's template.

It renders the argv (and any config files) from the profile's Jinja template, runs the tool
without a shell in the toolchain's environment with a timeout, streams its merged output into a
log file, and checks the outputs the profile declares. The same rendering, with every path
replaced by its role name, is what enters the action key.
"""

from __future__ import annotations

import collections
import ctypes
import glob
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rmbuild.config import PACKAGE_DIR
from rmbuild.errors import OutputsMissing, SpecError, ToolError, ToolNotFound, ToolTimeout
from rmbuild.spec import BuildProfile, FlagValue
from rmbuild.templating import render, render_argv
from rmbuild.toolchains import Toolchain

TAIL_LINES = 20


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


def _find_prctl() -> Callable[..., int] | None:
    try:
        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):  # not Linux
        return None


# Looked up once in the parent, so the forked child (preexec_fn) only makes one libc call.
_PRCTL = _find_prctl()


def _die_with_parent() -> None:  # pragma: no cover - runs in the child
    # If rmbuild is SIGKILLed mid-build, take the compiler down with it instead of leaving an
    # orphan writing into a build dir nobody will ingest.
    if _PRCTL is not None:
        _PRCTL(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def _kill_group(proc: subprocess.Popen[bytes], wait: bool = True) -> None:
    """Kill the tool and everything it started (it leads its own session)."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass  # already gone
    if wait:
        proc.wait()


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
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text, encoding="utf-8")

        env = dict(os.environ)
        env.update(self.profile.env)
        # The toolchain's bin dir first, so its own helpers win; a private TMPDIR per build
        # because some compilers leave temp files behind (TOOLCHAINS.md, Furiosa).
        env["PATH"] = os.pathsep.join([str(self.toolchain.bin_dir), env.get("PATH", "")])
        tmp = workdir / "tmp"
        tmp.mkdir(exist_ok=True)
        env["TMPDIR"] = str(tmp)
        env.setdefault("PYTHONUNBUFFERED", "1")

        timeout = timeout if timeout is not None else self.profile.timeout
        tool_name = self.profile.tool.name
        tail: collections.deque[str] = collections.deque(maxlen=TAIL_LINES)
        started = time.monotonic()
        with open(log_path, "wb") as log:
            log.write(f"$ {' '.join(command.argv)}\n".encode())
            log.flush()
            try:
                proc = subprocess.Popen(
                    command.argv,
                    cwd=workdir,
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                    preexec_fn=_die_with_parent,
                )
            except OSError as exc:
                raise ToolNotFound(
                    f"cannot start {tool_name}: {exc.strerror or exc}",
                    tool=tool_name,
                    log_path=log_path,
                    hint=self.toolchain.install_hint(),
                ) from None

            def pump() -> None:
                assert proc.stdout is not None
                for raw in iter(proc.stdout.readline, b""):
                    log.write(raw)
                    line = raw.decode("utf-8", "replace").rstrip()
                    if line:
                        tail.append(line)
                        if on_line is not None:
                            on_line(line)
                log.flush()

            reader = threading.Thread(target=pump, daemon=True)
            reader.start()
            try:
                returncode = proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                _kill_group(proc)
                reader.join(timeout=5)
                raise ToolTimeout(
                    f"{tool_name} did not finish within {timeout:g} s and was killed",
                    tool=tool_name,
                    log_path=log_path,
                    tail=list(tail),
                    hint="raise the profile's timeout if the model is large",
                ) from None
            except BaseException:  # Ctrl-C or any error of ours: never leave the tool running
                _kill_group(proc)
                raise
            # Whatever the tool left running in its session (a daemon holding our pipe, a stray
            # worker) dies with it: nothing outlives a build, and the pipe closes at once.
            _kill_group(proc, wait=False)
            reader.join(timeout=30)
            assert proc.stdout is not None
            proc.stdout.close()
        duration = time.monotonic() - started
        if returncode != 0:
            raise ToolError(
                f"{tool_name} failed with exit code {returncode} (the error comes from the tool, "
                "not from rmbuild)",
                tool=tool_name,
                log_path=log_path,
                tail=list(tail),
            )
        return ToolRun(command.argv, returncode, duration, log_path)

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
