"""Source URLs: which engine a URL names, and its form without secrets. Light: no driver imports."""

from __future__ import annotations

from typing import Literal
from urllib.parse import urlsplit, urlunsplit

EngineName = Literal["postgresql", "mysql"]
_SCHEMES: dict[str, EngineName] = {
    "postgresql": "postgresql",
    "postgres": "postgresql",
    "mysql": "mysql",
    "mariadb": "mysql",
}


def engine_of(source: str) -> EngineName | None:
    """The engine a source URL names by its scheme, or None when it names none."""
    return _SCHEMES.get(urlsplit(source).scheme)


def redact(source: str) -> str:
    """The source URL without its password: the only form that may appear in output, metadata or logs."""
    parts = urlsplit(source)
    if parts.password is None:
        return source
    netloc = parts.netloc.rsplit("@", 1)[1]
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}@{netloc}" if user else netloc))
