"""PostgreSQL connections: URLs, session settings, driver errors, the databases to export."""

from __future__ import annotations

from contextlib import contextmanager
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

import adbc_driver_postgresql.dbapi as adbc
import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from dbexport.errors import SourceUnavailable
from dbexport.sources import first_line, named_only, source_error
from dbexport.urls import redact as redact  # the engine protocol's; the rule is every engine's

if TYPE_CHECKING:
    from collections.abc import Iterator


NAME = "postgresql"
DEFAULT_PORT = 5432
# Fixed session settings, so PostgreSQL's text output never depends on the server's or client's defaults.
SESSION_SETTINGS = {
    "TimeZone": "UTC",
    "DateStyle": "ISO, MDY",
    "IntervalStyle": "postgres",
    "extra_float_digits": "1",
    "bytea_output": "hex",
    "lc_monetary": "C",
}
_EXCLUDED_DATABASES = ("rdsadmin",)


# Errors that say the connection is gone (SQLSTATE class 08; the server shutting down or terminating the backend).
_LOST_SQLSTATES = ("57P01", "57P02", "57P03")
# A streamed read's error carries no SQLSTATE, only libpq's text: a FATAL error always ends the session.
_LOST_TEXTS = ("FATAL:", "server closed the connection", "no connection to the server", "could not receive data")


def database_dsn(source: str, database: str) -> str:
    """A libpq connection string for one database of the source cluster."""
    return make_conninfo(source, dbname=database, connect_timeout=10)


def source_database(source: str) -> str | None:
    """The database the source URL names (its %-escapes decoded, as libpq decodes them), or None for the cluster."""
    path = unquote(urlsplit(source).path.strip("/"))
    return path or None


def connect(dsn: str) -> psycopg.Connection[Any]:
    """A psycopg connection with dbexport's session settings; connection errors name the host, not the password."""
    try:
        conn = psycopg.connect(dsn, autocommit=True)
    except psycopg.OperationalError as exc:
        info = conninfo_to_dict(dsn)
        where = f"{info.get('host', 'localhost')}:{info.get('port', DEFAULT_PORT)}/{info.get('dbname', '')}"
        raise SourceUnavailable(f"Cannot connect to the PostgreSQL server at {where}: {first_line(exc)}") from exc
    with failing("Setting up a connection to the source"):
        apply_session_settings(conn.execute)
    return conn


def lost(exc: BaseException) -> bool:
    sqlstate = getattr(exc, "sqlstate", None)
    if sqlstate:
        return sqlstate.startswith("08") or sqlstate in _LOST_SQLSTATES
    if isinstance(exc, psycopg.OperationalError):  # no SQLSTATE: the connection itself failed
        return True
    return any(text in str(exc) for text in _LOST_TEXTS)


@contextmanager
def failing(what: str) -> Iterator[None]:
    """Driver errors become the project's: `what` failed, SourceUnavailable when the connection was lost."""
    try:
        yield
    except (psycopg.Error, adbc.Error) as exc:
        raise source_error(what, first_line(exc), lost=lost(exc)) from exc


def apply_session_settings(execute: Any) -> None:
    for name, value in SESSION_SETTINGS.items():
        execute(sql.SQL("SET {} = {}").format(sql.Identifier(name), sql.Literal(value)).as_string(None))


def list_databases(source: str) -> list[str]:
    """The databases to export: the one the URL names, or every one that accepts connections."""
    named = source_database(source)
    with connect(database_dsn(source, named or "postgres")) as conn, failing("Listing the source's databases"):
        rows = conn.execute(
            "SELECT datname FROM pg_database WHERE NOT datistemplate AND datallowconn"
            " AND datname <> ALL(%s) ORDER BY datname",
            [list(_EXCLUDED_DATABASES)],
        ).fetchall()
    return named_only([r[0] for r in rows], named)
