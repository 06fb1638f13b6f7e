"""Flag values that look like credentials: a warning, never a refusal.

A flag's value is written into the action key, and so into the index, ``show --json``,
``why`` and the rendered command line a tool's log starts with. A token put there (``--token
hf_...`` in model.yaml) is stored in plain text wherever the artifact goes. rmbuild cannot know
for sure that a value is a secret, so it warns, naming the flag and where it was set, and says
where a secret belongs instead: the environment, passed to the tool by ``runtime_env`` (or
``key_env``, which keys it by digest).

Two signs, either one is enough:

* the value carries a known token format (Hugging Face ``hf_``, GitHub ``ghp_``/
  ``github_pat_``, AWS ``AKIA``/``ASIA`` key ids, OpenAI-style ``sk-``, Slack ``xox?-``, GitLab
  ``glpat-``, Google ``AIza``, PyPI ``pypi-``, npm ``npm_``);
* the flag is named like a secret (``*token*``, ``*secret*``, ``*password*``, ``*key*``,
  ``*credential*``, ``*auth*``) and its value is a long, high-entropy word (at least 20
  characters, no spaces or slashes, about 3.5 bits of entropy per character or more).
"""

from __future__ import annotations

import math
import re
import sys
from collections import Counter
from collections.abc import Callable, Mapping
from pathlib import Path

# (what it is, pattern): the prefix and the length its issuer uses, so "hf_cache" is no token.
TOKEN_FORMATS: tuple[tuple[str, re.Pattern[str]], ...] = tuple(
    (what, re.compile(rf"(?<![A-Za-z0-9]){pattern}"))
    for what, pattern in (
        ("a Hugging Face token", r"hf_[A-Za-z0-9]{30,}"),
        ("a GitHub token", r"gh[pousr]_[A-Za-z0-9]{30,}"),
        ("a GitHub token", r"github_pat_[A-Za-z0-9_]{40,}"),
        ("an AWS access key id", r"(?:AKIA|ASIA)[0-9A-Z]{16}(?![0-9A-Z])"),
        ("an API secret key", r"sk-[A-Za-z0-9_-]{20,}"),
        ("a Slack token", r"xox[abposr]-[A-Za-z0-9-]{10,}"),
        ("a GitLab token", r"glpat-[A-Za-z0-9_-]{20,}"),
        ("a Google API key", r"AIza[0-9A-Za-z_-]{35}"),
        ("a PyPI token", r"pypi-[A-Za-z0-9_-]{50,}"),
        ("an npm token", r"npm_[A-Za-z0-9]{36}"),
    )
)
SECRET_NAME = re.compile(r"token|secret|passw(or)?d|key|credential|auth", re.IGNORECASE)
MIN_SECRET_LENGTH = 20
MIN_ENTROPY_BITS = 3.5

_warned: set[tuple[str, str]] = set()


def entropy(text: str) -> float:
    """Shannon entropy of ``text`` in bits per character."""
    counts = Counter(text)
    total = len(text)
    return -sum(n / total * math.log2(n / total) for n in counts.values()) if total else 0.0


def looks_like_credential(name: str, value: object) -> str | None:
    """What ``value`` (of flag ``name``) looks like, e.g. "a Hugging Face token"; None when it
    looks like no credential."""
    if not isinstance(value, str):
        return None
    for what, pattern in TOKEN_FORMATS:
        if pattern.search(value):
            return what
    if (
        SECRET_NAME.search(name)
        and len(value) >= MIN_SECRET_LENGTH
        and not re.search(r"[\s/\\]", value)
        and entropy(value) >= MIN_ENTROPY_BITS
    ):
        return "a secret (a long random value under a secret's name)"
    return None


def warn_flags(
    flags: Mapping[str, object],
    where: str | Path,
    line_of: Callable[[str], int | None],
    *,
    write: Callable[[str], object] | None = None,
) -> list[str]:
    """Warn on stderr (once per process, per place and flag) about each flag of ``flags``
    whose value looks like a credential; ``line_of(name)`` gives its line in ``where``. Returns
    the warnings (for tests)."""
    out = write or sys.stderr.write
    said: list[str] = []
    for name, value in flags.items():
        items = value if isinstance(value, list) else [value]
        what = next((w for item in items if (w := looks_like_credential(name, item))), None)
        if what is None or (str(where), name) in _warned:
            continue
        _warned.add((str(where), name))
        line = line_of(name)
        place = f"{where}:{line}" if line is not None else str(where)
        text = (
            f"rmbuild: warning: {place}: flag {name!r} looks like a credential ({what}); a "
            "flag's value is stored in plain text in the action key, the index and `show "
            "--json`. Pass secrets through the environment instead (runtime_env in the "
            "profile or toolchain file)."
        )
        out(text + "\n")
        said.append(text)
    return said
