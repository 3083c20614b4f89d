"""Planning a PostgreSQL table: its size, its key's quantiles, value probes and size limits, its partitions."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg import sql

from dbexport.planning import partition_count, quantile_fractions, split_by_key, split_by_pages
from dbexport.sources import CatalogEntry, TableDraft
from dbexport.sources.postgres.catalog import CatalogTable, catalog_table, relation
from dbexport.sources.postgres.connection import failing
from dbexport.typemap import SourceColumn, map_column, value_probe

if TYPE_CHECKING:
    from collections.abc import Sequence

    from dbexport.models import ExportSettings, Partition
    from dbexport.typemap import ProbeKind


# The most a row can hold besides its TOAST: one heap page.
_MAX_INLINE_ROW_BYTES = 8192


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
        ).format(key=sql.Identifier(key), table=relation(schema, table, partitioned)),
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
        sql.SQL("SELECT {} FROM {}").format(sql.SQL(", ").join(exprs), relation(schema, table, partitioned))
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
    table = catalog_table(entry)
    with failing(f"Planning the table {database}.{table.schema}.{table.name}"):
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
