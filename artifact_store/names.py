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


# Query parameters whose values are secrets (libpq's ``?password=``, a presigned URL's
# signature, an API token): masked in messages by name.
SECRET_PARAM = re.compile(
    r"pass(word|wd)?|pwd|secret|token|key|sig(nature)?|credential|auth", re.IGNORECASE
)


def safe_url(url: str) -> str:
    """The URL as messages may show it: the user info (name and password: an S3 access key id
    is a user name) replaced by ``***``, and the value of every password-like query parameter
    (``password``, ``secret``, ``token``, ``key``, ``sig``...) by ``***``."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    before_query, qmark, after = rest.partition("?")
    if "@" in before_query:
        # Up to the last "@": an unencoded "/" or "@" in a password must not end the mask early.
        before_query = "***@" + before_query.rsplit("@", 1)[1]
    rest = before_query + qmark + after

    def mask(match: re.Match[str]) -> str:
        name = match.group(2)
        return f"{match.group(1)}{name}=***" if SECRET_PARAM.search(name) else match.group(0)

    head, qmark, query = rest.partition("?")
    if qmark:
        query = re.sub(r"(^|[&;])([^=&;#]*)=([^&;#]*)", mask, query)
    return f"{scheme}://{head}{qmark}{query}"
