"""Planning a MySQL table: zero dates, its size, its key, and partitions on the key's values or tuples."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from dbexport.models import Partition
from dbexport.planning import even_cuts, partition_count, split_by_key, split_by_tuples
from dbexport.sources import CatalogEntry, TableDraft
from dbexport.sources.mysql.connection import failing, query, quote, table_name
from dbexport.typemap import MySQLColumn, map_mysql_column, mysql_needs_probe

if TYPE_CHECKING:
    from collections.abc import Sequence

    from dbexport.models import ExportSettings


# An integer key whose values span more than this many times its rows is sampled, not cut evenly.
_DENSE_KEY_SPAN = 4


# Integer types a key range can split on.
_INTEGER_TYPES = frozenset({"tinyint", "smallint", "mediumint", "int", "bigint"})
# Key columns whose values go through JSON (the partition manifest) and back unchanged: no bytes.
_TUPLE_KEY_TYPES = _INTEGER_TYPES | {
    "decimal",
    "float",
    "double",
    "char",
    "varchar",
    "date",
    "datetime",
    "timestamp",
    "time",
    "year",
}  # not enum or set: ORDER BY sorts them by their index, a comparison with a string by their text


def plan_table(
    conn: Any, database: str, entry: CatalogEntry, columns: Sequence[MySQLColumn], settings: ExportSettings
) -> TableDraft:
    """The table's columns (zero dates kept as text) and its partitions; MySQL's values are not measured."""
    with failing(f"Planning the table {database}.{entry.name}"):
        name = entry.name
        probed = [c.name for c in columns if mysql_needs_probe(c, settings.type_mapping)]
        zero_dates = zero_date_columns(conn, database, name, probed) if probed else frozenset()
        size = table_size(conn, database, name)
        return TableDraft(
            columns=[map_mysql_column(c, settings.type_mapping, c.name in zero_dates) for c in columns],
            partitions=_partitions(conn, database, name, size, settings),
            estimated_bytes=size.bytes,
            warnings=[
                f"Column {database}.{name}.{column} holds zero dates (0000-00-00), a zero month or day, or year 0, "
                "which a Parquet date or timestamp can't hold: it is exported as text (STRING), as MySQL prints it."
                for column in sorted(zero_dates)
            ],
        )


def _partitions(conn: Any, database: str, name: str, size: TableSize, settings: ExportSettings) -> list[Partition]:
    """Ranges of an integer key's first column, else of the key's tuples; one partition without a usable key."""
    count = partition_count(size.bytes, settings.partition_target_bytes)
    key = table_key(conn, database, name) if count > 1 else None
    if (column := integer_key(key)) is not None:
        # The key's smallest and largest values cost two index lookups; even ranges of its values suit a dense
        # key. A sparse or skewed one (its values span far more than its rows), or one of a single value, is
        # split at sampled keys instead, below.
        bounds = key_range(conn, database, name, column)
        if bounds is None:
            return [Partition(index="1", estimated_bytes=size.bytes)]
        cuts = even_cuts(*bounds, count)
        if cuts and bounds[1] - bounds[0] < _DENSE_KEY_SPAN * max(size.estimated_rows, 1):
            return split_by_key(column, cuts, size.bytes)
    if (columns := tuple_key(key)) is not None:
        every = max(1, size.estimated_rows // count)
        boundaries = key_boundaries(conn, database, name, columns, every)
        if len(boundaries) >= count:  # the row estimate was low: keep count - 1 of them, evenly spaced
            boundaries = [boundaries[len(boundaries) * i // count] for i in range(1, count)]
        if column is not None and columns == [column]:
            return split_by_key(column, [int(b[0]) for b in boundaries], size.bytes)
        return split_by_tuples(columns, boundaries, size.bytes)
    return [Partition(index="1", estimated_bytes=size.bytes)]


@dataclass(frozen=True)
class TableSize:
    bytes: int
    estimated_rows: int


def table_size(conn: Any, database: str, table: str) -> TableSize:
    """Sizes from information_schema (estimates for InnoDB): exact enough to plan partitions."""
    rows = query(
        conn,
        "SELECT COALESCE(DATA_LENGTH, 0), COALESCE(TABLE_ROWS, 0) FROM information_schema.TABLES"
        " WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s",
        [database, table],
    )
    return TableSize(int(rows[0][0]), int(rows[0][1])) if rows else TableSize(0, 0)


def zero_date_columns(conn: Any, database: str, table: str, columns: list[str]) -> frozenset[str]:
    """The columns that hold a date a typed date or timestamp can't: 0000-00-00, a zero month or day, year 0."""
    checks = ", ".join(
        f"COALESCE(MAX(YEAR({c}) = 0 OR MONTH({c}) = 0 OR DAYOFMONTH({c}) = 0), 0)" for c in map(quote, columns)
    )
    ((*found,),) = query(conn, f"SELECT {checks} FROM {table_name(database, table)}")
    return frozenset(name for name, hit in zip(columns, found, strict=True) if hit)


@dataclass(frozen=True)
class Key:
    """The columns of the primary key, or of a unique index of NOT NULL columns, and their DATA_TYPEs."""

    columns: list[str]
    types: list[str]


def table_key(conn: Any, database: str, table: str) -> Key | None:
    """The table's primary key, else its first unique index whose columns are all NOT NULL (no prefix index)."""
    rows = query(
        conn,
        """
        SELECT s.INDEX_NAME, s.COLUMN_NAME, c.DATA_TYPE, c.IS_NULLABLE, s.SUB_PART
        FROM information_schema.STATISTICS s
        JOIN information_schema.COLUMNS c
          ON c.TABLE_SCHEMA = s.TABLE_SCHEMA AND c.TABLE_NAME = s.TABLE_NAME AND c.COLUMN_NAME = s.COLUMN_NAME
        WHERE s.TABLE_SCHEMA = %s AND s.TABLE_NAME = %s AND s.NON_UNIQUE = 0
        ORDER BY s.INDEX_NAME <> 'PRIMARY', s.INDEX_NAME, s.SEQ_IN_INDEX
        """,
        [database, table],
    )
    indexes: dict[str, list[tuple[str, str, str, Any]]] = {}
    for index, column, data_type, nullable, sub_part in rows:
        indexes.setdefault(index, []).append((column, data_type.lower(), nullable, sub_part))
    for parts in indexes.values():
        # A prefix index orders by the prefix only; a nullable column lets equal keys repeat.
        if all(nullable == "NO" and sub_part is None for _, _, nullable, sub_part in parts):
            return Key([p[0] for p in parts], [p[1] for p in parts])
    return None


def integer_key(key: Key | None) -> str | None:
    """The key's first column when it is an integer: ranges of it split the table."""
    return key.columns[0] if key and key.types[0] in _INTEGER_TYPES else None


def key_range(conn: Any, database: str, table: str, column: str) -> tuple[int, int] | None:
    """The smallest and largest value of an indexed integer column: two index lookups."""
    name = quote(column)
    ((lowest, highest),) = query(conn, f"SELECT MIN({name}), MAX({name}) FROM {table_name(database, table)}")
    return None if lowest is None else (int(lowest), int(highest))


def tuple_key(key: Key | None) -> list[str] | None:
    """The key's columns when their values survive the manifest's JSON (not binary): tuple ranges split on them."""
    return key.columns if key and all(t in _TUPLE_KEY_TYPES for t in key.types) else None


def key_boundaries(conn: Any, database: str, table: str, columns: list[str], every: int) -> list[list[Any]]:
    """Every `every`-th key tuple in the key's order, numbered by the server: only the boundaries come back.

    The server sorts as it compares (collations included), so the boundaries ascend in the order the
    partition queries compare them in.
    """
    names = ", ".join(map(quote, columns))
    row_number = "dbexport_row"
    while row_number in {c.lower() for c in columns}:  # a name no key column has (MySQL ignores case here)
        row_number += "_"
    return [
        list(row)
        for row in query(
            conn,
            f"SELECT {names} FROM (SELECT {names}, ROW_NUMBER() OVER (ORDER BY {names}) AS {quote(row_number)}"
            f" FROM {table_name(database, table)}) AS numbered"
            f" WHERE MOD({quote(row_number)}, %s) = 0 ORDER BY {quote(row_number)}",
            [every],
        )
    ]
