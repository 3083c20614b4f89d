"""MySQL and MariaDB connections: URLs, quoted names, session settings, driver errors, the databases to export.

Names are always quoted with backticks (see `quote`) and values always passed as parameters.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, unquote, urlsplit
from urllib.parse import quote as quote_url

import pymysql
from pymysql.constants import FIELD_TYPE

from dbexport.errors import SourceUnavailable
from dbexport.sources import APPLICATION_NAME, named_only, source_error
from dbexport.urls import redact as redact  # the engine protocol's; the rule is every engine's

if TYPE_CHECKING:
    from collections.abc import Iterator


NAME = "mysql"
DEFAULT_PORT = 3306
SYSTEM_DATABASES = ("mysql", "information_schema", "performance_schema", "sys")
# Fixed session settings, so values never depend on the server's defaults: UTC for TIMESTAMP columns; no
# sql_mode (PAD_CHAR_TO_FULL_LENGTH would pad char(n), NO_BACKSLASH_ESCAPES would change how parameters are
# quoted); a client that stops reading while it uploads is not cut off after the default minute.
SESSION_SETTINGS = {"time_zone": "+00:00", "sql_mode": "", "net_write_timeout": 3600}
# Values pymysql hands over as the server's text or bytes, as they are: dates (zero dates included), times
# beyond a day, decimals (converted by Arrow, exactly). Only numbers become Python numbers.
_DECODERS: dict[Any, Any] = {
    **dict.fromkeys(
        (FIELD_TYPE.TINY, FIELD_TYPE.SHORT, FIELD_TYPE.INT24, FIELD_TYPE.LONG, FIELD_TYPE.LONGLONG, FIELD_TYPE.YEAR),
        int,
    ),
    FIELD_TYPE.FLOAT: float,
    FIELD_TYPE.DOUBLE: float,
}
_CONVERSIONS = {**pymysql.converters.encoders, **_DECODERS}


# Errors that say the connection is gone: the client's (can't connect, server gone away, lost during a query,
# lost while reading), the server shutting down, the connection killed.
_CONNECTION_LOST = {2003, 2006, 2013, 2055, 1053, 1927}


def quote(name: str) -> str:
    """A MySQL identifier, quoted: backticks around it, and each backtick in it doubled.

    Each `%` is doubled too: every statement with a name in it goes through pymysql's %-formatting of its
    parameters (see query), which turns `%%` back into `%`.
    """
    return "`" + name.replace("`", "``").replace("%", "%%") + "`"


def table_name(database: str, table: str) -> str:
    return f"{quote(database)}.{quote(table)}"


def database_dsn(source: str, database: str) -> str:
    """The source URL naming one database (URL-quoted: a database name may hold `/`, `?`, `#` or `%`)."""
    return urlsplit(source)._replace(path=f"/{quote_url(database, safe='')}").geturl()


def source_database(source: str) -> str | None:
    """The database the source URL names, or None for the whole server."""
    return unquote(urlsplit(source).path.strip("/")) or None


def connect(dsn: str) -> Any:
    """A pymysql connection with dbexport's session settings; errors name the host, never the password."""
    parts = urlsplit(dsn)
    host, port = parts.hostname or "127.0.0.1", parts.port or DEFAULT_PORT
    try:
        conn = pymysql.connect(
            host=host,
            port=port,
            user=unquote(parts.username or "root"),
            password=unquote(parts.password or ""),
            charset="utf8mb4",
            conv=_CONVERSIONS,
            autocommit=True,
            connect_timeout=10,
            program_name=_application_name(parts.query),
        )
    except pymysql.MySQLError as exc:
        where = f"{host}:{port}/{source_database(dsn) or ''}"
        raise SourceUnavailable(f"Cannot connect to the MySQL server at {where}: {message(exc)}") from exc
    with conn.cursor() as cur:
        for name, value in SESSION_SETTINGS.items():
            cur.execute(f"SET SESSION {name} = %s", [value])
    return conn


def _application_name(query: str) -> str | None:
    """The export's name for its connections, from the URL (see sources.with_application_name)."""
    names = parse_qs(query).get(APPLICATION_NAME)
    return names[-1] if names else None


def message(exc: BaseException) -> str:
    """A driver error's message, without its error number."""
    args: tuple[Any, ...] = exc.args
    if len(args) == 2 and isinstance(args[1], str):
        return args[1]
    return str(exc) or type(exc).__name__


def _lost(exc: pymysql.MySQLError) -> bool:
    # InterfaceError: pymysql's own "the connection is closed".
    return isinstance(exc, pymysql.InterfaceError) or bool(exc.args and exc.args[0] in _CONNECTION_LOST)


@contextmanager
def failing(what: str) -> Iterator[None]:
    """Driver errors become the project's: `what` failed, SourceUnavailable when the connection was lost."""
    try:
        yield
    except pymysql.MySQLError as exc:
        raise source_error(what, message(exc), lost=_lost(exc)) from exc


def query(conn: Any, statement: str, params: list[Any] | None = None) -> list[tuple[Any, ...]]:
    with conn.cursor() as cur:
        cur.execute(statement, params or [])  # always formatted: names hold `%%` for `%` (see quote)
        return list(cur.fetchall())


def list_databases(source: str) -> list[str]:
    """The databases to export: the one the URL names, or every one but the system databases."""
    named = source_database(source)
    with connect(source) as conn, failing("Listing the source's databases"):
        rows = query(
            conn,
            "SELECT SCHEMA_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME NOT IN %s ORDER BY SCHEMA_NAME",
            [SYSTEM_DATABASES],
        )
    return named_only([r[0] for r in rows], named)
