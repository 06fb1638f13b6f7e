"""The environment a vendor tool runs in: built, never inherited.

Closed-source compilers must not see the caller's secrets (``AWS_SECRET_ACCESS_KEY``,
``HF_TOKEN``), nor be steered by the caller's ``LD_LIBRARY_PATH``, ``LD_PRELOAD``,
``PYTHONPATH`` or ``PATH``: what a tool can read from its environment is either in the action
key or declared harmless. A tool gets:

* a small base: ``PATH`` = the toolchain's bin dir, then ``/usr/local/bin:/usr/bin:/bin``
  (nothing from the caller's PATH); ``HOME``, ``LANG``, ``LC_*`` and ``TZ`` from the caller;
  ``TMPDIR`` = a private folder of this build; ``PYTHONUNBUFFERED=1`` (live log lines);
  ``PYTHONNOUSERSITE=1`` (the identity probe runs isolated, so the tools must not see the
  user's site-packages either: the packages that key a stage are the packages that run);
* the variables the toolchain file and the profile pass through by name:
  ``key_env`` (the value enters the action key, as a digest) and ``runtime_env``
  (runtime-only: it reaches the tool but never the key; for knobs that cannot change the
  artifact, e.g. a licence server or a thread count);
* the fixed ``env`` values of the toolchain file, then of the profile (both keyed).

Every process rmbuild starts gets its environment from this module: the tools, a profile's
``version_command``, the toolchain identity and install probes, device queries (``nvidia-smi``,
``rbln-smi``, ``furiosa_smi``, ``iree-compile``'s target probe) and the package installer (which
also gets the caller's installer and network settings: :func:`installer_env`). A Python probe
also runs isolated (``-I``: :func:`python_argv`), so neither ``PYTHONPATH`` nor the user site
can change what it reports.

Building a child's environment first makes this process non-dumpable (:func:`protect_process`):
a tool started with the result cannot read rmbuild's own ``/proc/<pid>/environ`` (which still
holds the caller's secrets), although the supervisor's argv names that pid.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rmbuild.declare.spec import BuildProfile
    from rmbuild.toolrun.toolchains import Toolchain

SYSTEM_PATH = ("/usr/local/bin", "/usr/bin", "/bin")
BASE_VARS = frozenset({"HOME", "LANG", "TZ"})
BASE_PREFIXES = ("LC_",)
# What a package installer (uv, pip) reads besides the base: its own settings, the proxy and
# the certificate bundle of a corporate network. Never cloud or registry tokens of other tools.
INSTALLER_VARS = frozenset(
    {
        "SSL_CERT_FILE",
        "SSL_CERT_DIR",
        "REQUESTS_CA_BUNDLE",
        "CURL_CA_BUNDLE",
        "NETRC",
        "XDG_CACHE_HOME",
        "XDG_CONFIG_HOME",
        *(f"{proxy}_PROXY" for proxy in ("HTTP", "HTTPS", "NO", "ALL")),
        *(f"{proxy}_proxy" for proxy in ("http", "https", "no", "all")),
    }
)
INSTALLER_PREFIXES = ("PIP_", "UV_")

PR_SET_DUMPABLE = 4
_protected = False


def protect_process() -> bool:
    """Make this process non-dumpable (Linux ``prctl(PR_SET_DUMPABLE, 0)``), once.

    What it buys: a process of the same user without ``CAP_SYS_PTRACE`` (a tool rmbuild
    started, or anything else the user runs) can no longer open this process's
    ``/proc/<pid>/environ`` or ``mem``, nor ptrace it; the kernel makes those files root's.
    What it does not: root can still read them (this was measured: root without
    ``CAP_SYS_PTRACE`` too), and a child gets its dumpability back at ``exec``, so the tools
    themselves stay debuggable. False where it is not available (not Linux).
    """
    global _protected
    if _protected:
        return True
    if not sys.platform.startswith("linux"):
        return False
    import ctypes

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        _protected = libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False
    return _protected


def base_env(
    bin_dir: Path | None = None,
    tmpdir: Path | None = None,
    environ: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The base every child gets: ``PATH`` = ``bin_dir`` (if any) + the system dirs, ``HOME``,
    ``LANG``, ``LC_*``, ``TZ``, ``TMPDIR`` (``tmpdir``), ``PYTHONUNBUFFERED``,
    ``PYTHONNOUSERSITE``. For a process outside any toolchain (``nvidia-smi``), as is."""
    protect_process()  # every child's environment is built here, so none starts before
    caller = os.environ if environ is None else environ
    env = {
        name: value
        for name, value in caller.items()
        if name in BASE_VARS or name.startswith(BASE_PREFIXES)
    }
    env["PATH"] = os.pathsep.join([*([str(bin_dir)] if bin_dir else []), *SYSTEM_PATH])
    if tmpdir is not None:
        # Private per build: some compilers leave temp files behind (docs/toolchains.md, Furiosa).
        env["TMPDIR"] = str(tmpdir)
    env["PYTHONUNBUFFERED"] = "1"
    env["PYTHONNOUSERSITE"] = "1"
    return env


def passthrough_names(profile: BuildProfile | None, toolchain: Toolchain) -> list[str]:
    """Every caller variable the tool may see, keyed or runtime-only."""
    names = [*toolchain.key_env, *toolchain.runtime_env]
    if profile is not None:
        names += [*profile.key_env, *profile.runtime_env]
    return list(dict.fromkeys(names))


def tool_env(
    profile: BuildProfile | None,
    toolchain: Toolchain,
    tmpdir: Path | None,
    environ: Mapping[str, str] | None = None,
    *,
    bin_dir: Path | None = None,
) -> dict[str, str]:
    """The environment for ``profile``'s tool (``environ`` defaults to ``os.environ``).

    ``profile=None``: a process of the toolchain that no profile runs (a device query in a
    vendor SDK's environment, its identity probe), scrubbed the same way. ``bin_dir``: the
    toolchain's bin dir when it is not where it will be (an install in progress)."""
    caller = os.environ if environ is None else environ
    env = base_env(bin_dir or toolchain.bin_dir, tmpdir, caller)
    for name in passthrough_names(profile, toolchain):
        if name in caller:
            env[name] = caller[name]
    env.update(toolchain.env)
    if profile is not None:
        env.update(profile.env)
    return env


def installer_env(bin_dir: Path, environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """What the package installer runs with: the base, plus its own settings (``PIP_*``,
    ``UV_*``), the proxy and certificate variables; never the caller's other secrets (an
    sdist's build backend runs arbitrary code from the registry)."""
    caller = os.environ if environ is None else environ
    env = base_env(bin_dir, None, caller)
    for name, value in caller.items():
        if name in INSTALLER_VARS or name.startswith(INSTALLER_PREFIXES):
            env[name] = value
    return env


def python_argv(python: Path | str, code: str, *args: str) -> list[str]:
    """``python -I -c code args…``: isolated (no ``PYTHON*`` variables, no user site, no
    script dir on sys.path), so what a probe reports is the environment's own."""
    return [str(python), "-I", "-c", code, *args]


def run_probe(
    argv: Sequence[str],
    env: Mapping[str, str],
    *,
    timeout: float,
    input: str | None = None,
    check: bool = False,
) -> subprocess.CompletedProcess[str]:
    """Run a short process rmbuild needs an answer from (an identity probe, a device query):
    no shell, ``env`` only (built by this module), stdin closed unless ``input`` is given,
    output captured as text."""
    protect_process()
    return subprocess.run(  # noqa: S603 - argv built by rmbuild, no shell
        list(argv),
        env=dict(env),
        input=input,
        stdin=None if input is not None else subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=check,
    )


def secret_digest(value: str) -> str:
    """How a ``key_env`` value enters a key and every display of it: ``sha256:<hex>`` of the
    value ("" stays "": an unset variable has nothing to hide)."""
    if not value:
        return ""
    import hashlib

    return "sha256:" + hashlib.sha256(value.encode("utf-8", "surrogateescape")).hexdigest()


def key_env(
    profile: BuildProfile, toolchain: Toolchain, environ: Mapping[str, str] | None = None
) -> dict[str, str]:
    """What of the tool's environment enters the action key: the fixed values (as written in
    the toolchain and profile files) and the ``key_env`` variables as digests of their values
    (an unset one as ""); never the base or ``runtime_env``.

    A ``key_env`` variable may hold a token (``HF_TOKEN`` picks a gated model's revision): the
    key, the index, ``show --json``, the plan cache and ``why`` only ever see its digest."""
    caller = os.environ if environ is None else environ
    names = [*toolchain.key_env, *profile.key_env]
    return {
        **toolchain.env,
        **profile.env,
        **{name: secret_digest(caller.get(name, "")) for name in names},
    }
