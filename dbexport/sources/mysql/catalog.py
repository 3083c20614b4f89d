"""The MySQL catalog: a database's tables and views, and a table's columns."""

from __future__ import annotations

from typing import Any

import pymysql

from dbexport.sources import Catalog, CatalogEntry
from dbexport.sources.mysql.connection import failing, query, table_name
from dbexport.typemap import MySQLColumn

# Server errors that say the user may not read a table.
_ACCESS_DENIED = {1142, 1143}  # ER_TABLEACCESS_DENIED_ERROR, ER_COLUMNACCESS_DENIED_ERROR


_KINDS = {"BASE TABLE": "table", "SYSTEM VERSIONED": "table", "VIEW": "view", "SEQUENCE": "sequence"}


def catalog(conn: Any, database: str) -> Catalog:
    """The database's tables and views, each with the database as its schema; a table the user may not read is
    marked so."""
    with failing(f"Reading the catalog of the database {database}"):
        rows = query(
            conn,
            "SELECT TABLE_NAME, TABLE_TYPE FROM information_schema.TABLES WHERE TABLE_SCHEMA = %s ORDER BY TABLE_NAME",
            [database],
        )
        entries = []
        for name, table_type in rows:
            kind = _KINDS.get(table_type, "table")
            entries.append(CatalogEntry(database, name, kind, kind != "table" or _readable(conn, database, name)))
    return Catalog(entries, {database})


def _readable(conn: Any, database: str, table: str) -> bool:
    try:
        query(conn, f"SELECT * FROM {table_name(database, table)} LIMIT 0")
    except pymysql.MySQLError as exc:
        if exc.args[0] in _ACCESS_DENIED:
            return False
        raise
    return True


def list_columns(conn: Any, database: str, entry: CatalogEntry) -> list[MySQLColumn]:
    with failing(f"Planning the table {database}.{entry.name}"):
        return _columns(conn, database, entry.name)


def _columns(conn: Any, database: str, table: str) -> list[MySQLColumn]:
    rows = query(
        conn,
        """
        SELECT COLUMN_NAME, DATA_TYPE, COLUMN_TYPE LIKE '%%unsigned%%', NUMERIC_PRECISION, NUMERIC_SCALE
        FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s ORDER BY ORDINAL_POSITION
        """,
        [database, table],
    )
    return [
        MySQLColumn(
            name=name,
            data_type=data_type.lower(),
            unsigned=bool(unsigned),
            numeric_precision=None if precision is None else int(precision),
            numeric_scale=None if scale is None else int(scale),
        )
        for name, data_type, unsigned, precision, scale in rows
    ]
