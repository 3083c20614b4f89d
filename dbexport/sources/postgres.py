"""PostgreSQL: connections, the shared snapshot, the catalog, planning, and Arrow reads of one partition."""

from __future__ import annotations

import logging
import re
import threading
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import adbc_driver_postgresql.dbapi as adbc
import psycopg
import pyarrow as pa
import pyarrow.compute as pc
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from dbexport.errors import SourceUnavailable
from dbexport.planning import partition_count, quantile_fractions, split_by_key, split_by_pages
from dbexport.sources import Catalog, CatalogEntry, TableDraft, first_line, named_only, partition_name, source_error
from dbexport.typemap import SourceColumn, arrow_schema, map_column, value_probe
from dbexport.urls import redact as redact  # the engine protocol's; the rule is every engine's

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator, Sequence
    from datetime import datetime

    from dbexport.models import Column, ExportSettings, Partition, TablePlan
    from dbexport.typemap import ProbeKind

log = logging.getLogger(__name__)

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
_EXCLUDED_SCHEMAS = ("pg_catalog", "information_schema", "pg_toast")
# What the anchor calls the relations it does not export, by pg_class.relkind.
_NOT_TABLES = {"v": "view", "m": "materialized view", "f": "foreign table"}
_SKIPPED_PERSISTENCE = {"t": "TEMPORARY_TABLE", "u": "UNLOGGED_TABLE"}
# The most a row can hold besides its TOAST: one heap page.
_MAX_INLINE_ROW_BYTES = 8192
# Errors that say the connection is gone (SQLSTATE class 08; the server shutting down or terminating the backend).
_LOST_SQLSTATES = ("57P01", "57P02", "57P03")
# A streamed read's error carries no SQLSTATE, only libpq's text: a FATAL error always ends the session.
_LOST_TEXTS = ("FATAL:", "server closed the connection", "no connection to the server", "could not receive data")


def database_dsn(source: str, database: str) -> str:
    """A libpq connection string for one database of the source cluster."""
    return make_conninfo(source, dbname=database, connect_timeout=10)


def source_database(source: str) -> str | None:
    """The database the source URL names, or None for the whole cluster."""
    path = urlsplit(source).path.strip("/")
    return path or None


def connect(dsn: str) -> psycopg.Connection[Any]:
    """A psycopg connection with dbexport's session settings; connection errors name the host, not the password."""
    try:
        conn = psycopg.connect(dsn, autocommit=True)
    except psycopg.OperationalError as exc:
        info = conninfo_to_dict(dsn)
        where = f"{info.get('host', 'localhost')}:{info.get('port', DEFAULT_PORT)}/{info.get('dbname', '')}"
        raise SourceUnavailable(f"Cannot connect to the PostgreSQL server at {where}: {first_line(exc)}") from exc
    with _failing("Setting up a connection to the source"):
        _apply_session_settings(conn.execute)
    return conn


def _lost(exc: BaseException) -> bool:
    sqlstate = getattr(exc, "sqlstate", None)
    if sqlstate:
        return sqlstate.startswith("08") or sqlstate in _LOST_SQLSTATES
    if isinstance(exc, psycopg.OperationalError):  # no SQLSTATE: the connection itself failed
        return True
    return any(text in str(exc) for text in _LOST_TEXTS)


@contextmanager
def _failing(what: str) -> Iterator[None]:
    """Driver errors become the project's: `what` failed, SourceUnavailable when the connection was lost."""
    try:
        yield
    except (psycopg.Error, adbc.Error) as exc:
        raise source_error(what, first_line(exc), lost=_lost(exc)) from exc


def _apply_session_settings(execute: Any) -> None:
    for name, value in SESSION_SETTINGS.items():
        execute(sql.SQL("SET {} = {}").format(sql.Identifier(name), sql.Literal(value)).as_string(None))


def list_databases(source: str) -> list[str]:
    """The databases to export: the one the URL names, or every one that accepts connections."""
    named = source_database(source)
    with connect(database_dsn(source, named or "postgres")) as conn, _failing("Listing the source's databases"):
        rows = conn.execute(
            "SELECT datname FROM pg_database WHERE NOT datistemplate AND datallowconn"
            " AND datname <> ALL(%s) ORDER BY datname",
            [list(_EXCLUDED_DATABASES)],
        ).fetchall()
    return named_only([r[0] for r in rows], named)


@dataclass
class Snapshot:
    """A REPEATABLE READ transaction whose snapshot every worker of one database joins."""

    conn: psycopg.Connection[Any]
    snapshot_id: str
    snapshot_time: datetime
    warnings: list[str] = field(default_factory=list)
    engine: str = NAME


@contextmanager
def open_snapshot(dsn: str) -> Iterator[Snapshot]:
    """Hold a snapshot open for as long as the export of this database runs."""
    conn = connect(dsn)
    try:
        with _failing(f"Opening a snapshot of the database {conninfo_to_dict(dsn).get('dbname', '')}"):
            conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            row = conn.execute("SELECT pg_export_snapshot(), now()").fetchone()
        assert row is not None
        yield Snapshot(conn, row[0], row[1])
    finally:
        conn.close()


@contextmanager
def open_snapshots(source: str, databases: list[str], workers: int = 0) -> Iterator[dict[str, Snapshot]]:
    """A snapshot of each database, exported: the workers join it later, whenever they start (`workers` unused)."""
    with ExitStack() as stack:
        yield {db: stack.enter_context(open_snapshot(database_dsn(source, db))) for db in databases}


@dataclass(frozen=True)
class CatalogTable(CatalogEntry):
    """A relation as the catalog describes it: what planning needs to find it again."""

    oid: int = 0
    partitioned: bool = False


def catalog(conn: psycopg.Connection[Any], database: str) -> Catalog:
    """The database's relations and schemas, outside the system schemas."""
    with _failing(f"Reading the catalog of the database {database}"):
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


def _table(entry: CatalogEntry) -> CatalogTable:
    assert isinstance(entry, CatalogTable), "an entry of another engine's catalog"
    return entry


def list_columns(conn: psycopg.Connection[Any], database: str, entry: CatalogEntry) -> list[SourceColumn]:
    """A table's columns, with information_schema's type names and domains resolved."""
    table = _table(entry)
    with _failing(f"Planning the table {database}.{table.schema}.{table.name}"):
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


@dataclass(frozen=True)
class TableSize:
    bytes: int  # heap and TOAST, every leaf of a partitioned table
    pages: int  # heap pages of the largest leaf: what a ctid range spans
    toast_bytes: int
    estimated_rows: int


def table_size(conn: psycopg.Connection[Any], oid: int) -> TableSize:
    """Sizes from the catalog; cheap, and exact enough to plan partitions."""
    row = conn.execute(
        """
        WITH leaves AS (
            SELECT c.oid, c.reltoastrelid, c.reltuples FROM pg_class c
            WHERE c.oid = %(oid)s AND c.relkind <> 'p'
            UNION ALL
            SELECT c.oid, c.reltoastrelid, c.reltuples
            FROM pg_partition_tree(%(oid)s) t JOIN pg_class c ON c.oid = t.relid
            WHERE t.isleaf AND c.relkind <> 'p' AND t.relid <> %(oid)s
        )
        SELECT coalesce(sum(pg_table_size(oid)), 0)::bigint,
               coalesce(max(pg_relation_size(oid) / current_setting('block_size')::int), 0)::bigint,
               coalesce(sum(CASE WHEN reltoastrelid <> 0 THEN pg_relation_size(reltoastrelid) END), 0)::bigint,
               coalesce(sum(greatest(reltuples, 0)), 0)::bigint
        FROM leaves
        """,
        {"oid": oid},
    ).fetchone()
    assert row is not None
    return TableSize(*row)


def integer_key(conn: psycopg.Connection[Any], oid: int) -> str | None:
    """A single-column, NOT NULL integer primary key or unique index, if the table has one."""
    row = conn.execute(
        """
        SELECT a.attname FROM pg_index i
        JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
        WHERE i.indrelid = %s AND i.indnkeyatts = 1 AND (i.indisprimary OR i.indisunique)
          AND i.indpred IS NULL AND i.indexprs IS NULL AND a.attnotnull
          AND a.atttypid IN ('int2'::regtype, 'int4'::regtype, 'int8'::regtype)
        ORDER BY i.indisprimary DESC LIMIT 1
        """,
        [oid],
    ).fetchone()
    return row[0] if row else None


def key_quantiles(
    conn: psycopg.Connection[Any],
    schema: str,
    table: str,
    key: str,
    fractions: list[float],
    estimated_rows: int,
    *,
    partitioned: bool = False,
) -> list[int]:
    """The key's quantiles from a sample of the table's pages, so skewed keys still split evenly."""
    sample_rows = max(10_000, 200 * len(fractions))
    percent = min(100.0, 100.0 * sample_rows / max(estimated_rows, 1))
    row = conn.execute(
        sql.SQL(
            "SELECT percentile_disc(%s::float8[]) WITHIN GROUP (ORDER BY {key}) FROM {table} TABLESAMPLE SYSTEM (%s)"
        ).format(key=sql.Identifier(key), table=_relation(schema, table, partitioned)),
        [fractions, percent],
    ).fetchone()
    return [int(v) for v in (row[0] if row and row[0] else []) if v is not None]


# What each probe looks for: values that typed forms can't hold, so the column stays text.
_PROBES: dict[ProbeKind, str] = {
    "nan": "{col} = 'NaN'::numeric",
    "infinite": "NOT isfinite({col})",
    # Infinity, or past 294247-01-10, where int64 microseconds since 1970 end.
    "timestamp_range": "NOT isfinite({col}) OR {col} > '294247-01-10 04:00:54.775807+00'",
    # PostgreSQL's time reaches 24:00:00; Arrow's and Parquet's TIME stop before it.
    "midnight_24": "{col} = '24:00:00'::time",
    # A list has one dimension and starts at 1.
    "array_shape": "array_ndims({col}) > 1 OR array_lower({col}, 1) <> 1",
}


@dataclass(frozen=True)
class ValueScan:
    """What one pass over a table found: unrepresentable values and the largest row and value."""

    unrepresentable: frozenset[str]
    largest_row: int
    largest_value: tuple[int, str | None]


def scan_values(
    conn: psycopg.Connection[Any],
    schema: str,
    table: str,
    probes: dict[str, ProbeKind],
    sized_columns: list[str],
    *,
    partitioned: bool = False,
) -> ValueScan:
    """One pass over the table for the value probes and the row and value size limits."""
    exprs: list[sql.Composable] = [
        sql.SQL("coalesce(bool_or(" + _PROBES[kind] + "), false)").format(col=sql.Identifier(name))
        for name, kind in probes.items()
    ]
    sizes = [sql.SQL("coalesce(pg_column_size({}), 0)").format(sql.Identifier(c)) for c in sized_columns]
    if sizes:
        exprs.append(sql.SQL("coalesce(max({}), 0)").format(sql.SQL(" + ").join(sizes)))
        exprs.extend(sql.SQL("coalesce(max({}), 0)").format(s) for s in sizes)
    row = conn.execute(
        sql.SQL("SELECT {} FROM {}").format(sql.SQL(", ").join(exprs), _relation(schema, table, partitioned))
    ).fetchone()
    assert row is not None
    found = frozenset(name for name, hit in zip(probes, row, strict=False) if hit)
    largest_row = 0
    largest_value: tuple[int, str | None] = (0, None)
    if sizes:
        largest_row = int(row[len(probes)])
        per_column = [int(v) for v in row[len(probes) + 1 :]]
        biggest = max(range(len(per_column)), key=per_column.__getitem__)
        largest_value = (per_column[biggest], sized_columns[biggest])
    return ValueScan(found, largest_row, largest_value)


def plan_table(
    conn: psycopg.Connection[Any],
    database: str,
    entry: CatalogEntry,
    columns: Sequence[SourceColumn],
    settings: ExportSettings,
) -> TableDraft:
    """The table's exported columns and partitions, and what its values measure against the size limits."""
    table = _table(entry)
    with _failing(f"Planning the table {database}.{table.schema}.{table.name}"):
        return _draft(conn, table, columns, settings)


def _draft(
    conn: psycopg.Connection[Any], table: CatalogTable, columns: Sequence[SourceColumn], settings: ExportSettings
) -> TableDraft:
    size = table_size(conn, table.oid)
    probes: dict[str, ProbeKind] = {
        c.name: kind for c in columns if (kind := value_probe(c, settings.type_mapping)) is not None
    }
    # Only values stored out of line can reach the size limits, so tables with little TOAST need no scan:
    # a row holds at most one heap page besides its TOAST.
    limit = min(settings.max_value_bytes, settings.max_row_bytes)
    sized = [c.name for c in columns] if size.toast_bytes + _MAX_INLINE_ROW_BYTES >= limit else []
    scan = ValueScan(frozenset(), 0, (0, None))
    if probes or sized:
        scan = scan_values(conn, table.schema, table.name, probes, sized, partitioned=table.partitioned)
    draft = TableDraft(
        columns=[],
        partitions=_partitions(conn, table, size, settings),
        estimated_bytes=size.bytes,
        is_partitioned=table.partitioned,
        largest_row=scan.largest_row,
        largest_value=scan.largest_value,
    )
    for source_column in columns:
        column = map_column(source_column, settings.type_mapping, source_column.name in scan.unrepresentable)
        if column is None:
            draft.warnings.append(
                f"Column {table.schema}.{table.name}.{source_column.name} of type "
                f"{source_column.base_type} is not exported."
            )
        else:
            draft.columns.append(column)
    return draft


def _partitions(
    conn: psycopg.Connection[Any], table: CatalogTable, size: TableSize, settings: ExportSettings
) -> list[Partition]:
    """Ranges of an integer key, cut at its sampled quantiles; else ranges of heap pages."""
    count = partition_count(size.bytes, settings.partition_target_bytes)
    key = integer_key(conn, table.oid) if count > 1 else None
    if key is not None:
        cuts = key_quantiles(
            conn,
            table.schema,
            table.name,
            key,
            quantile_fractions(count),
            size.estimated_rows,
            partitioned=table.partitioned,
        )
        if cuts:
            return split_by_key(key, cuts, size.bytes)
    return split_by_pages(size.pages, size.bytes, settings.partition_target_bytes)


def count_rows(conn: psycopg.Connection[Any], table: TablePlan) -> int:
    """Rows of the table in the snapshot held by `conn`."""
    with _failing(f"Counting the rows of {table.target}"):
        row = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(_from_clause(table))).fetchone()
    assert row is not None
    return int(row[0])


def _from_clause(table: TablePlan) -> sql.Composable:
    return _relation(table.schema_, table.table, table.is_partitioned)


def _relation(schema: str, table: str, partitioned: bool) -> sql.Composable:
    """A table's rows and no others, for every query that reads or measures them.

    ONLY keeps rows of inheritance children out: they are exported as tables of their own.
    A partitioned table is read through its parent, which holds no rows itself.
    """
    name = sql.Identifier(schema, table)
    return name if partitioned else sql.SQL("ONLY {}").format(name)


# The driver turns PostgreSQL's dates (days since 2000-01-01, int32) into Arrow's (days since 1970-01-01) by
# adding this in 32-bit arithmetic, which wraps for 'infinity' and dates near the end of PostgreSQL's range.
_DRIVER_DATE_OFFSET = 10_957
_POSTGRES_EPOCH_JDATE = 2_451_545  # the Julian day of 2000-01-01
_DATE_NOBEGIN, _DATE_NOEND = -(2**31), 2**31 - 1  # -infinity, infinity
# Arrow prints the dates of these years as PostgreSQL does (ISO, four digits, no era); the others are printed here.
_ARROW_DATE_RANGE = (-719_162, 2_932_896)  # 0001-01-01 and 9999-12-31, in days since 1970-01-01


def date_text(array: pa.Array) -> pa.Array:
    """date32 from the driver -> the text of PostgreSQL's date_out under DateStyle ISO, byte for byte.

    Each distinct date of the batch is formatted once (a batch holds a few thousand at most, typically).
    """
    encoded = pc.dictionary_encode(array)
    days = encoded.dictionary.view(pa.int32())
    outside = pc.or_(pc.less(days, _ARROW_DATE_RANGE[0]), pc.greater(days, _ARROW_DATE_RANGE[1]))
    if pc.any(outside).as_py():
        texts = pc.if_else(outside, pa.scalar(0, pa.int32()), days).view(pa.date32()).cast(pa.string())
        exotic = [_postgres_date(d) for d in days.filter(outside).to_pylist()]
        texts = pc.replace_with_mask(texts, outside, pa.array(exotic, pa.string()))
    else:
        texts = days.view(pa.date32()).cast(pa.string())
    return pc.take(texts, encoded.indices)


def _postgres_date(driver_days: int) -> str:
    """One date as date_out prints it (ISO), from the driver's days since 1970-01-01."""
    days = (driver_days - _DRIVER_DATE_OFFSET + 2**31) % 2**32 - 2**31  # undo the driver's wrapping addition
    if days == _DATE_NOEND:
        return "infinity"
    if days == _DATE_NOBEGIN:
        return "-infinity"
    year, month, day = _j2date(days + _POSTGRES_EPOCH_JDATE)
    # Years before 1 AD are printed as their BC year (year 0 is 1 BC), four digits at least.
    text = f"{year if year > 0 else 1 - year:04d}-{month:02d}-{day:02d}"
    return f"{text} BC" if year <= 0 else text


def _j2date(julian_day: int) -> tuple[int, int, int]:
    """PostgreSQL's j2date (datetime.c): a Julian day -> (year, month, day), year 0 being 1 BC."""
    julian = julian_day + 32044
    quad = julian // 146097
    extra = (julian - quad * 146097) * 4 + 3
    julian += 60 + quad * 3 + extra // 146097
    quad = julian // 1461
    julian -= quad * 1461
    y = julian * 4 // 1461
    julian = ((julian + 305) % 365 if y != 0 else (julian + 306) % 366) + 123
    y += quad * 4
    quad = julian * 2141 // 65536
    return y - 4800, (quad + 10) % 12 + 1, julian - 7834 * quad // 256


# Types read natively although the export wants their text output, keyed by the output function and
# information_schema's name of the type (so that a domain over one of them qualifies, cast to its base type,
# which the driver knows, and a type that merely shares the output function, like refcursor, does not).
# The value is the base type, and how the driver's array becomes PostgreSQL's text, byte for byte.
#  - text, varchar, char(n), name, json, jsonb: their binary form is their text output (char(n) keeps its
#    padding, jsonb loses only its version byte). The server skips the output function and the copy of
#    its result: a fifth of its work on lineitem.
#  - date: the server's date_out costs more than formatting the few distinct dates of a batch here (lineitem's
#    three dates: 0.9 s of server CPU, against 0.2 s here, at scale 1).
_CLIENT_TEXT: dict[tuple[str, str, str], tuple[str, Callable[[pa.Array], pa.Array] | None]] = {
    ("pg_catalog", "textout", "text"): ("text", None),
    ("pg_catalog", "varcharout", "character varying"): ("varchar", None),
    ("pg_catalog", "bpcharout", "character"): ("bpchar", None),
    ("pg_catalog", "nameout", "name"): ("name", None),
    ("pg_catalog", "json_out", "json"): ("json", None),
    ("pg_catalog", "jsonb_out", "jsonb"): ("jsonb", None),
    ("pg_catalog", "date_out", "date"): ("date", date_text),
}


def _client_text(column: Column) -> tuple[str, Callable[[pa.Array], pa.Array] | None] | None:
    if column.read_as != "text" or column.export_type != "string" or column.output_function is None:
        return None
    return _CLIENT_TEXT.get((*column.output_function, column.original_type))


def _select_expression(column: Column) -> sql.Composable:
    name = sql.Identifier(column.name)
    client_text = _client_text(column)
    if client_text is not None:
        # A cast to the base type without a typmod: a relabeling, no function call (bpchar keeps its padding).
        return sql.SQL("{}::{} AS {}").format(name, sql.Identifier("pg_catalog", client_text[0]), name)
    if column.read_as == "text":
        assert column.output_function is not None
        # The type's own output function: what PostgreSQL prints (a cast to text may differ: char(n) loses
        # its padding, inet gains a netmask). Its cstring is read as it is (the driver hands it over as
        # bytes, see _cast): a cast to text would copy every value once more on the server.
        expr: sql.Composable = sql.SQL("{}({})").format(sql.Identifier(*column.output_function), name)
    elif column.cast_to:
        expr = sql.SQL("{}::{}").format(name, sql.Identifier("pg_catalog", column.cast_to))
    else:
        expr = name
    return sql.SQL("{} AS {}").format(expr, name)


def partition_query(table: TablePlan, partition: Partition) -> str:
    """The SELECT that reads one partition."""
    conditions: list[sql.Composable] = []
    if partition.kind == "key":
        key = sql.Identifier(partition.key or "")
        if partition.lower is not None:
            conditions.append(sql.SQL("{} >= {}").format(key, sql.Literal(partition.lower)))
        if partition.upper is not None:
            conditions.append(sql.SQL("{} < {}").format(key, sql.Literal(partition.upper)))
    elif partition.kind == "pages":
        if partition.lower:
            conditions.append(sql.SQL("ctid >= {}::tid").format(sql.Literal(f"({partition.lower},0)")))
        if partition.upper is not None:
            conditions.append(sql.SQL("ctid < {}::tid").format(sql.Literal(f"({partition.upper},0)")))
    query = sql.SQL("SELECT {} FROM {}").format(
        sql.SQL(", ").join(_select_expression(c) for c in table.columns), _from_clause(table)
    )
    if conditions:
        query = sql.SQL("{} WHERE {}").format(query, sql.SQL(" AND ").join(conditions))
    return query.as_string(None)


_SNAPSHOT_ID = re.compile(r"[0-9A-F]+-[0-9A-F]+-[0-9]+")
# The driver's batches, in bytes of Arrow data (its default is 16 MB). A worker holds about three at once (one
# being read, one queued, one being written, see writer._Prefetched), and the driver's buffers grow by
# doubling: at 16 MB two workers peaked near 300 MB RSS on lineitem and wide, at 8 MB near 220 MB, at the
# same speed and with files 3% larger (smaller row groups).
BATCH_BYTES = 8 * 1024 * 1024


class _IdleConnections:
    """The driver's connections between two partitions, by connection string.

    A new connection costs the driver a read of pg_type (50 ms on a database of 200 tables, more than
    exporting a small table): a worker takes an idle connection for its next partition instead. Only
    a connection whose transaction ended cleanly comes back; the oldest goes past MAX_IDLE.
    """

    MAX_IDLE = 16

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._idle: list[tuple[str, adbc.Connection]] = []

    def take(self, dsn: str) -> adbc.Connection | None:
        with self._lock:
            for i, (key, conn) in enumerate(self._idle):
                if key == dsn:
                    del self._idle[i]
                    return conn
        return None

    def give_back(self, dsn: str, conn: adbc.Connection) -> None:
        with self._lock:
            self._idle.append((dsn, conn))
            evicted = self._idle[: -self.MAX_IDLE]
            del self._idle[: -self.MAX_IDLE]
        for _, old in evicted:
            _close_quietly(old)

    def close(self, dsns: Iterable[str]) -> None:
        wanted = set(dsns)
        with self._lock:
            closing = [conn for key, conn in self._idle if key in wanted]
            self._idle = [(key, conn) for key, conn in self._idle if key not in wanted]
        for conn in closing:
            _close_quietly(conn)


_IDLE = _IdleConnections()


@contextmanager
def connections_reused(dsns: Iterable[str]) -> Iterator[None]:
    """Partitions read meanwhile reuse each other's connections; those left idle are closed at the end."""
    try:
        yield
    finally:
        _IDLE.close(dsns)


def _close_quietly(conn: adbc.Connection) -> None:
    try:
        conn.close()
    except adbc.Error as exc:  # the server may have closed it already
        log.debug("closing an idle connection: %s", exc)


@contextmanager
def _transaction(dsn: str, snapshot_id: str | None, database: str) -> Iterator[adbc.Cursor]:
    """A read-only REPEATABLE READ transaction (in the exported snapshot, if any) on an idle or new connection."""
    conn = _IDLE.take(dsn)
    if conn is not None:
        try:
            cur = _begin(conn, snapshot_id)
        except adbc.Error as exc:  # an idle connection the server has closed meanwhile
            log.info("an idle connection to %s is gone (%s): connecting again", database, first_line(exc))
            _close_quietly(conn)
            conn = None
    if conn is None:
        try:
            conn = adbc.connect(dsn, autocommit=True)
        except adbc.Error as exc:
            raise SourceUnavailable(f"Cannot connect to the source database {database}: {first_line(exc)}") from exc
        with conn.cursor() as setup:
            _apply_session_settings(setup.execute)  # for the connection's life: it comes back only unchanged
        cur = _begin(conn, snapshot_id)
    clean = False
    try:
        yield cur
        cur.execute("COMMIT")
        clean = True
    finally:
        cur.close()
        if clean:
            _IDLE.give_back(dsn, conn)
        else:
            _close_quietly(conn)


def _begin(conn: adbc.Connection, snapshot_id: str | None) -> adbc.Cursor:
    cur = conn.cursor()
    try:
        cur.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        if snapshot_id is not None:
            cur.execute(sql.SQL("SET TRANSACTION SNAPSHOT {}").format(sql.Literal(snapshot_id)).as_string(None))
    except BaseException:
        cur.close()
        raise
    return cur


def read_partition(
    dsn: str, snapshot_id: str | None, table: TablePlan, partition: Partition
) -> Iterator[pa.RecordBatch]:
    """Stream one partition as Arrow batches in the table's export schema.

    With a snapshot id the read joins that exported snapshot (the local runtime); without one it reads
    a source nobody writes to (the AWS runtime's clone).
    """
    if snapshot_id is not None and not _SNAPSHOT_ID.fullmatch(snapshot_id):
        raise ValueError(f"not a snapshot id: {snapshot_id!r}")
    schema = arrow_schema(table.columns)
    formats = [text[1] if (text := _client_text(c)) is not None else None for c in table.columns]
    what = partition_name(table, partition)
    with _failing(what), _transaction(dsn, snapshot_id, table.database) as cur:
        cur.adbc_statement.set_options(**{"adbc.postgresql.batch_size_hint_bytes": str(BATCH_BYTES)})
        cur.execute(partition_query(table, partition))
        batches = cur.fetch_record_batch()
        while True:
            try:
                batch = batches.read_next_batch()
            except StopIteration:
                break
            except OSError as exc:  # the stream's errors come as Arrow's, with libpq's text
                raise source_error(what, first_line(exc), lost=_lost(exc)) from exc
            yield _conform(batch, schema, formats)


def _conform(
    batch: pa.RecordBatch, schema: pa.Schema, formats: list[Callable[[pa.Array], pa.Array] | None] | None = None
) -> pa.RecordBatch:
    """The driver's batch in the export schema: text to decimal, dates to text, driver metadata dropped."""
    arrays = [
        _cast(column if fmt is None else fmt(column), field.type)
        for column, field, fmt in zip(batch.columns, schema, formats or [None] * len(schema), strict=True)
    ]
    return pa.RecordBatch.from_arrays(arrays, schema=schema)


def _cast(array: pa.Array, target: pa.DataType) -> pa.Array:
    if array.type == target:
        return array
    if isinstance(array.type, pa.BaseExtensionType):  # json, jsonb; an output function's cstring
        array = array.storage
        if array.type == target:
            return array
    if pa.types.is_binary(array.type):
        # A cstring: the server's text output, converted to the client encoding like any text value.
        array = array.view(pa.string())
        if array.type == target:
            return array
    return pc.cast(array, target)
