"""The PostgreSQL catalog: relations, schemas, a table's columns, and the rows a query of a table reads."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

from dbexport.sources import Catalog, CatalogEntry
from dbexport.sources.postgres.connection import failing
from dbexport.typemap import SourceColumn

_EXCLUDED_SCHEMAS = ("pg_catalog", "information_schema", "pg_toast")
# What the anchor calls the relations it does not export, by pg_class.relkind.
_NOT_TABLES = {"v": "view", "m": "materialized view", "f": "foreign table"}
_SKIPPED_PERSISTENCE = {"t": "TEMPORARY_TABLE", "u": "UNLOGGED_TABLE"}


@dataclass(frozen=True)
class CatalogTable(CatalogEntry):
    """A relation as the catalog describes it: what planning needs to find it again."""

    oid: int = 0
    partitioned: bool = False


def catalog(conn: psycopg.Connection[Any], database: str) -> Catalog:
    """The database's relations and schemas, outside the system schemas."""
    with failing(f"Reading the catalog of the database {database}"):
        return Catalog(_relations(conn), _schemas(conn))


def _relations(conn: psycopg.Connection[Any]) -> list[CatalogEntry]:
    """Tables, partitioned tables, views and foreign tables outside the system schemas."""
    rows = conn.execute(
        """
        SELECT c.oid, n.nspname, c.relname, c.relkind, c.relpersistence,
               has_schema_privilege(n.oid, 'USAGE') AND has_table_privilege(c.oid, 'SELECT'),
               CASE WHEN c.relispartition THEN ARRAY(
                   SELECT ARRAY[an.nspname, a.relname]::text[]
                   FROM pg_partition_ancestors(c.oid) WITH ORDINALITY p(relid, depth)
                   JOIN pg_class a ON a.oid = p.relid
                   JOIN pg_namespace an ON an.oid = a.relnamespace
                   WHERE p.relid <> c.oid
                   ORDER BY p.depth) END
        FROM pg_class c
        JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f')
          AND n.nspname <> ALL(%s) AND n.nspname NOT LIKE 'pg\\_toast\\_temp\\_%%'
        ORDER BY n.nspname, c.relname
        """,
        [list(_EXCLUDED_SCHEMAS)],
    ).fetchall()
    return [
        CatalogTable(
            schema,
            name,
            kind=_NOT_TABLES.get(kind, "table"),
            readable=readable,
            skip=_SKIPPED_PERSISTENCE.get(persistence),
            ancestors=tuple((a, b) for a, b in ancestors or ()),
            oid=oid,
            partitioned=kind == "p",
        )
        for oid, schema, name, kind, persistence, readable, ancestors in rows
    ]


def _schemas(conn: psycopg.Connection[Any]) -> set[str]:
    """The schemas outside the system ones, with or without tables."""
    rows = conn.execute(
        "SELECT nspname FROM pg_namespace WHERE nspname <> ALL(%s) AND nspname NOT LIKE 'pg\\_toast\\_temp\\_%%'",
        [list(_EXCLUDED_SCHEMAS)],
    ).fetchall()
    return {r[0] for r in rows}


def catalog_table(entry: CatalogEntry) -> CatalogTable:
    assert isinstance(entry, CatalogTable), "an entry of another engine's catalog"
    return entry


def list_columns(conn: psycopg.Connection[Any], database: str, entry: CatalogEntry) -> list[SourceColumn]:
    """A table's columns, with information_schema's type names and domains resolved."""
    table = catalog_table(entry)
    with failing(f"Planning the table {database}.{table.schema}.{table.name}"):
        return _columns(conn, table.oid)


def _columns(conn: psycopg.Connection[Any], oid: int) -> list[SourceColumn]:
    rows = conn.execute(
        """
        WITH RECURSIVE domains AS (
            -- Each column's type, then the base type of each domain in turn (a domain may be over a domain);
            -- the typmod is the first one declared along the way.
            SELECT a.attnum, a.atttypid AS typid, a.atttypmod AS typmod, 0 AS depth
            FROM pg_attribute a
            WHERE a.attrelid = %s AND a.attnum > 0 AND NOT a.attisdropped
            UNION ALL
            SELECT d.attnum, t.typbasetype, CASE WHEN d.typmod = -1 THEN t.typtypmod ELSE d.typmod END, d.depth + 1
            FROM domains d JOIN pg_type t ON t.oid = d.typid AND t.typtype = 'd'
        ), resolved AS (
            SELECT DISTINCT ON (attnum) attnum, typid, typmod, depth > 0 AS is_domain
            FROM domains ORDER BY attnum, depth DESC
        )
        SELECT a.attname,
               -- information_schema.columns.data_type, which names a domain's immediate base type
               CASE WHEN it.typelem <> 0 AND it.typlen = -1 THEN 'ARRAY'
                    WHEN itn.nspname = 'pg_catalog' THEN format_type(it.oid, NULL)
                    ELSE 'USER-DEFINED' END,
               bt.typname, bn.nspname, r.is_domain,
               pn.nspname, p.proname,
               CASE WHEN bt.typelem <> 0 AND bt.typlen = -1 THEN et.typname END, en.nspname,
               r.typmod
        FROM pg_attribute a
        JOIN resolved r ON r.attnum = a.attnum
        JOIN pg_type t ON t.oid = a.atttypid
        JOIN pg_type it ON it.oid = CASE WHEN t.typtype = 'd' THEN t.typbasetype ELSE t.oid END
        JOIN pg_namespace itn ON itn.oid = it.typnamespace
        JOIN pg_type bt ON bt.oid = r.typid
        JOIN pg_namespace bn ON bn.oid = bt.typnamespace
        JOIN pg_proc p ON p.oid = bt.typoutput
        JOIN pg_namespace pn ON pn.oid = p.pronamespace
        LEFT JOIN pg_type et ON et.oid = bt.typelem
        LEFT JOIN pg_namespace en ON en.oid = et.typnamespace
        WHERE a.attrelid = %s
        ORDER BY a.attnum
        """,
        [oid, oid],
    ).fetchall()
    columns = []
    for name, data_type, base, base_schema, is_domain, fn_schema, fn_name, element, element_schema, typmod in rows:
        precision = scale = None
        if base == "numeric" and base_schema == "pg_catalog" and typmod >= 4:
            # numeric's typmod packs precision and an 11-bit signed scale (negative, or above the precision,
            # since PostgreSQL 15), offset by the varlena header.
            precision, scale = ((typmod - 4) >> 16) & 0xFFFF, (((typmod - 4) & 0x7FF) ^ 1024) - 1024
        columns.append(
            SourceColumn(
                name=name,
                data_type=data_type,
                base_type=_type_name(base, base_schema),
                is_domain=is_domain,
                output_function=(fn_schema, fn_name),
                element_type=_type_name(element, element_schema) if element is not None else None,
                numeric_precision=precision,
                numeric_scale=scale,
            )
        )
    return columns


def _type_name(name: str, schema: str) -> str:
    """Built-in types by name, user-defined ones schema-qualified so that they never match a built-in name."""
    return name if schema == "pg_catalog" else f"{schema}.{name}"


def relation(schema: str, table: str, partitioned: bool) -> sql.Composable:
    """A table's rows and no others, for every query that reads or measures them.

    ONLY keeps rows of inheritance children out: they are exported as tables of their own.
    A partitioned table is read through its parent, which holds no rows itself.
    """
    name = sql.Identifier(schema, table)
    return name if partitioned else sql.SQL("ONLY {}").format(name)
