"""Source URLs and the engines they name: the registry, and a URL's form without secrets. Light: no driver imports."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

# A registered engine's name: the key of ENGINES, held by each TablePlan and SkippedTable.
EngineName = str


@dataclass(frozen=True)
class Registered:
    """What the light core knows of an engine without loading its driver."""

    module: str  # the engine's module (see dbexport.sources.Engine), imported when first asked for
    # False where a table is named `database.table` (MySQL): ExportOnly's forms and export_tables_info follow.
    schemas: bool = True
    label: str = ""  # how messages name the engine


# Tests register an engine of their own by adding to both.
ENGINES: dict[EngineName, Registered] = {
    "postgresql": Registered("dbexport.sources.postgres", label="PostgreSQL"),
    "mysql": Registered("dbexport.sources.mysql", schemas=False, label="MySQL"),
}
SCHEMES: dict[str, EngineName] = {
    "postgresql": "postgresql",
    "postgres": "postgresql",
    "mysql": "mysql",
    "mariadb": "mysql",
}


def engine_of(source: str) -> EngineName | None:
    """The engine a source URL names by its scheme, or None when it names none."""
    return SCHEMES.get(urlsplit(source).scheme)


def has_schemas(engine: EngineName | None) -> bool:
    """Whether the engine's tables live in schemas; an engine not known yet (an Aurora ARN) may have them."""
    registered = ENGINES.get(engine) if engine is not None else None
    return registered is None or registered.schemas


def redact(source: str) -> str:
    """The source URL without its password: the only form that may appear in output, metadata or logs."""
    parts = urlsplit(source)
    if parts.password is None:
        return source
    netloc = parts.netloc.rsplit("@", 1)[1]
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}@{netloc}" if user else netloc))
