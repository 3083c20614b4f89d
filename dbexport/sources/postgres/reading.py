"""Reading PostgreSQL partitions as Arrow batches (ADBC), on connections reused between partitions; row counts."""

from __future__ import annotations

import logging
import re
import threading
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import adbc_driver_postgresql.dbapi as adbc
import psycopg
import pyarrow as pa
import pyarrow.compute as pc
from psycopg import sql

from dbexport.errors import SourceUnavailable
from dbexport.sources import first_line, partition_name, source_error
from dbexport.sources.postgres.catalog import relation
from dbexport.sources.postgres.connection import apply_session_settings, failing, lost
from dbexport.sources.postgres.dates import date_text
from dbexport.typemap import arrow_schema

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator

    from dbexport.models import Column, Partition, TablePlan

log = logging.getLogger(__name__)


def count_rows(conn: psycopg.Connection[Any], table: TablePlan) -> int:
    """Rows of the table in the snapshot held by `conn`."""
    with failing(f"Counting the rows of {table.target}"):
        row = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(_from_clause(table))).fetchone()
    assert row is not None
    return int(row[0])


def _from_clause(table: TablePlan) -> sql.Composable:
    return relation(table.schema_, table.table, table.is_partitioned)


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
            apply_session_settings(setup.execute)  # for the connection's life: it comes back only unchanged
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
    with failing(what), _transaction(dsn, snapshot_id, table.database) as cur:
        cur.adbc_statement.set_options(**{"adbc.postgresql.batch_size_hint_bytes": str(BATCH_BYTES)})
        cur.execute(partition_query(table, partition))
        batches = cur.fetch_record_batch()
        while True:
            try:
                batch = batches.read_next_batch()
            except StopIteration:
                break
            except OSError as exc:  # the stream's errors come as Arrow's, with libpq's text
                raise source_error(what, first_line(exc), lost=lost(exc)) from exc
            conformed = _conform(batch, schema, formats)
            # Nothing here holds a batch while the next is read: a huge value is never held twice.
            del batch
            yield conformed
            del conformed


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
