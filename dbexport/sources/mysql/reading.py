"""Reading MySQL partitions as Arrow batches, streamed with bounded memory; row counts."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pymysql
import pymysql.cursors

from dbexport.sources import partition_name
from dbexport.sources.mysql.connection import failing, query, quote, table_name
from dbexport.sources.mysql.snapshot import borrowed
from dbexport.typemap import MYSQL_SPATIAL, arrow_schema

if TYPE_CHECKING:
    from collections.abc import Iterator

    from dbexport.models import Column, Partition, TablePlan


# Rows of a batch: the first batch is this many, the next ones are sized to about BATCH_BYTES of Arrow data.
_FIRST_BATCH_ROWS = 1000
_MAX_BATCH_ROWS = 50_000
BATCH_BYTES = 2 * 1024 * 1024


def _select_expression(column: Column) -> str:
    name = quote(column.name)
    if column.export_type in ("timestamp", "timestamptz"):
        # Microseconds since 1970 computed by the server (in UTC, the session's zone): exact, and cheaper to
        # read than the text of a datetime.
        return f"TIMESTAMPDIFF(MICROSECOND, '1970-01-01', {name})"
    if column.export_type == "date":
        return f"DATEDIFF({name}, '1970-01-01')"
    if column.original_type in MYSQL_SPATIAL:
        # Standard WKB (MySQL's own form puts the SRID first, which no reader expects).
        return f"ST_AsBinary({name})"
    if column.read_as == "text":
        return f"CAST({name} AS CHAR CHARACTER SET utf8mb4)"
    return name


def partition_query(table: TablePlan, partition: Partition) -> tuple[str, list[Any]]:
    """The SELECT that reads one partition, and its parameters."""
    conditions: list[str] = []
    params: list[Any] = []
    if partition.kind == "key":
        key = quote(partition.key or "")
        if partition.lower is not None:
            conditions.append(f"{key} >= %s")
            params.append(partition.lower)
        if partition.upper is not None:
            conditions.append(f"{key} < %s")
            params.append(partition.upper)
    elif partition.kind == "tuple":
        keys = partition.keys or []
        row = f"({', '.join(map(quote, keys))})"
        marks = f"({', '.join(['%s'] * len(keys))})"
        if partition.lower_tuple is not None:
            conditions.append(f"{row} >= {marks}")
            params += partition.lower_tuple
        if partition.upper_tuple is not None:
            conditions.append(f"{row} < {marks}")
            params += partition.upper_tuple
    elif partition.kind != "all":
        raise ValueError(f"MySQL tables are not split by {partition.kind}")
    query = (
        f"SELECT {', '.join(_select_expression(c) for c in table.columns)} "
        f"FROM {table_name(table.database, table.table)}"
    )
    if conditions:
        query += " WHERE " + " AND ".join(conditions)
    return query, params


def read_partition(
    dsn: str, snapshot_id: str | None, table: TablePlan, partition: Partition
) -> Iterator[pa.RecordBatch]:
    """Stream one partition as Arrow batches in the table's export schema, with bounded memory.

    With a snapshot id the read borrows a worker connection of that open snapshot (the local runtime);
    without one it opens its own REPEATABLE READ transaction on a source nobody writes to (the AWS
    runtime's clone).
    """
    schema = arrow_schema(table.columns)
    query, params = partition_query(table, partition)
    with failing(partition_name(table, partition)), borrowed(dsn, snapshot_id) as conn:
        # Not closed when the read stops midway: closing an unbuffered cursor reads every row left
        # (borrowed drops that connection instead).
        cur = conn.cursor(pymysql.cursors.SSCursor)
        cur.execute(query, params)
        size = _FIRST_BATCH_ROWS
        while rows := cur.fetchmany(size):
            batch = _batch(rows, schema)
            per_row = max(1, batch.nbytes // len(rows))
            size = max(_FIRST_BATCH_ROWS, min(_MAX_BATCH_ROWS, BATCH_BYTES // per_row))
            # Nothing here holds a batch or its rows while the next is read: a huge value is never held twice.
            del rows
            yield batch
            del batch
        cur.close()


def _batch(rows: list[tuple[Any, ...]], schema: pa.Schema) -> pa.RecordBatch:
    arrays = []
    for values, target in zip(zip(*rows, strict=True), schema, strict=True):
        arrays.append(_array(list(values), target.type))
    return pa.RecordBatch.from_arrays(arrays, schema=schema)


def _array(values: list[Any], target: pa.DataType) -> pa.Array:
    if pa.types.is_decimal(target):
        # The server's text of a decimal, converted exactly.
        return pa.array(values, pa.string()).cast(target)
    if pa.types.is_date32(target):
        return pa.array(values, pa.int32()).view(target)
    if pa.types.is_timestamp(target):
        return pa.array(values, pa.int64()).view(target)
    # A value MySQL hands over as bytes for a string column (JSON, on MySQL 8) is UTF-8 text: Arrow checks it.
    return pa.array(values, target)


def count_rows(conn: Any, table: TablePlan) -> int:
    """Rows of the table in the snapshot `conn` reads."""
    with failing(f"Counting the rows of {table.target}"):
        ((count,),) = query(conn, f"SELECT COUNT(*) FROM {table_name(table.database, table.table)}")
    return int(count)
