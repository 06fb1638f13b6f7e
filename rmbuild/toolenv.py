"""The environment a vendor tool runs in: built, never inherited (issue 6 #2, #3).

Closed-source compilers must not see the caller's secrets (``AWS_SECRET_ACCESS_KEY``,
``HF_TOKEN``), nor be steered by the caller's ``LD_LIBRARY_PATH`` or ``PATH``: what a tool can
read from its environment is either in the action key or declared harmless. A tool gets:

* a small base: ``PATH`` = the toolchain's bin dir, then ``/usr/local/bin:/usr/bin:/bin``
  (nothing from the caller's PATH); ``HOME``, ``LANG``, ``LC_*`` and ``TZ`` from the caller;
  ``TMPDIR`` = a private folder of this build; ``PYTHONUNBUFFERED=1`` (live log lines);
* the variables the toolchain file and the profile pass through by name:
  ``key_env`` (the value enters the action key) and ``runtime_env`` (runtime-only: it reaches
  the tool but never the key; for knobs that cannot change the artifact, e.g. a licence server
  or a thread count);
* the fixed ``env`` values of the toolchain file, then of the profile (both keyed).

The same environment runs a profile's ``version_command`` (tool identity, issue 6 #4).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rmbuild.spec import BuildProfile
    from rmbuild.toolchains import Toolchain

SYSTEM_PATH = ("/usr/local/bin", "/usr/bin", "/bin")
BASE_VARS = frozenset({"HOME", "LANG", "TZ"})
BASE_PREFIXES = ("LC_",)


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
) -> dict[str, str]:
    """The environment for ``profile``'s tool (``environ`` defaults to ``os.environ``).

    ``profile=None``: a process of the toolchain that no profile runs (a device query in a
    vendor SDK's environment), scrubbed the same way."""
    caller = os.environ if environ is None else environ
    env = {
        name: value
        for name, value in caller.items()
        if name in BASE_VARS or name.startswith(BASE_PREFIXES)
    }
    env["PATH"] = os.pathsep.join([str(toolchain.bin_dir), *SYSTEM_PATH])
    if tmpdir is not None:
        # Private per build: some compilers leave temp files behind (TOOLCHAINS.md, Furiosa).
        env["TMPDIR"] = str(tmpdir)
    env["PYTHONUNBUFFERED"] = "1"
    for name in passthrough_names(profile, toolchain):
        if name in caller:
            env[name] = caller[name]
    env.update(toolchain.env)
    if profile is not None:
        env.update(profile.env)
    return env


def key_env(
    profile: BuildProfile, toolchain: Toolchain, environ: Mapping[str, str] | None = None
) -> dict[str, str]:
    """What of the tool's environment enters the action key: the fixed values and the
    ``key_env`` variables (an unset one as ""); never the base or ``runtime_env``."""
    caller = os.environ if environ is None else environ
    names = [*toolchain.key_env, *profile.key_env]
    return {
        **toolchain.env,
        **profile.env,
        **{name: caller.get(name, "") for name in names},
    }
