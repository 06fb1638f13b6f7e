"""Names the store accepts: keys and aliases (which name files), hex prefixes, safe URLs."""

from __future__ import annotations

import re

from artifact_store.errors import InvalidAlias, InvalidArgument

MIN_PREFIX = 4
# Keys and aliases name files (trees/<key>, locks/<key>.lock), so both are kept to a
# filesystem-safe alphabet.
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,199}")
HEX_RE = re.compile(r"[0-9a-fA-F]+")


def validate_alias(alias: str) -> None:
    """Raise :class:`InvalidAlias` unless ``alias`` is usable.

    An alias must match ``[A-Za-z0-9][A-Za-z0-9._-]*`` (at most 200 characters) and must not be
    all hex of length >= 4, because ``resolve`` would then not know whether it is an alias or a
    key prefix.
    """
    if not isinstance(alias, str) or not NAME_RE.fullmatch(alias):
        raise InvalidAlias(alias, "use letters, digits, '.', '_' or '-', starting alphanumeric")
    if len(alias) >= MIN_PREFIX and HEX_RE.fullmatch(alias):
        raise InvalidAlias(alias, "all-hex names look like key prefixes; add a non-hex letter")


def check_key(key: str) -> None:
    """Raise :class:`InvalidArgument` unless ``key`` can name a file (a caller's bug)."""
    if not isinstance(key, str) or not NAME_RE.fullmatch(key):
        raise InvalidArgument(f"invalid key {key!r}: use at most 200 of [A-Za-z0-9._-]")


def safe_url(url: str) -> str:
    """The URL without its password, for messages."""
    return re.sub(r"(://[^:/@]+):[^@]*@", r"\1:***@", url)
