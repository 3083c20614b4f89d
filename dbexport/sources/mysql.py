"""MySQL and MariaDB: connections, the synchronized snapshot, the catalog, planning, and Arrow reads of one partition.

Names are always quoted with backticks (see `quote`) and values always passed as parameters.
"""

from __future__ import annotations

import logging
import queue
import uuid
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import quote as quote_url
from urllib.parse import unquote, urlsplit

import pyarrow as pa
import pymysql
import pymysql.cursors
from pymysql.constants import FIELD_TYPE

from dbexport.errors import ExportFailed, SourceUnavailable
from dbexport.models import Partition
from dbexport.planning import even_cuts, partition_count, split_by_key, split_by_tuples
from dbexport.sources import Catalog, CatalogEntry, TableDraft, named_only, partition_name, source_error
from dbexport.typemap import MYSQL_SPATIAL, MySQLColumn, arrow_schema, map_mysql_column, mysql_needs_probe
from dbexport.urls import redact as redact  # the engine protocol's; the rule is every engine's

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator, Sequence

    from dbexport.models import Column, ExportSettings, TablePlan

log = logging.getLogger(__name__)

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
# Server errors that say the user may not read a table.
_ACCESS_DENIED = {1142, 1143}  # ER_TABLEACCESS_DENIED_ERROR, ER_COLUMNACCESS_DENIED_ERROR
_FTWRL_REFUSED = {1227, 1044, 1045}  # ER_SPECIFIC_ACCESS_DENIED_ERROR (RELOAD), ER_DBACCESS_DENIED, ER_ACCESS_DENIED
_LOCK_WAIT_TIMEOUT = 1205
# Errors that say the connection is gone: the client's (can't connect, server gone away, lost during a query,
# lost while reading), the server shutting down, the connection killed.
_CONNECTION_LOST = {2003, 2006, 2013, 2055, 1053, 1927}
# An integer key whose values span more than this many times its rows is sampled, not cut evenly.
_DENSE_KEY_SPAN = 4
# FLUSH TABLES WITH READ LOCK waits for running statements, and holds every write back while it waits: it is
# given up after this long rather than stall the source.
LOCK_WAIT_SECONDS = 10
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
# Rows of a batch: the first batch is this many, the next ones are sized to about BATCH_BYTES of Arrow data.
_FIRST_BATCH_ROWS = 1000
_MAX_BATCH_ROWS = 50_000
BATCH_BYTES = 2 * 1024 * 1024


def quote(name: str) -> str:
    """A MySQL identifier, quoted: backticks around it, and each backtick in it doubled.

    Each `%` is doubled too: every statement with a name in it goes through pymysql's %-formatting of its
    parameters (see _query), which turns `%%` back into `%`.
    """
    return "`" + name.replace("`", "``").replace("%", "%%") + "`"


def _table_name(database: str, table: str) -> str:
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
        )
    except pymysql.MySQLError as exc:
        where = f"{host}:{port}/{source_database(dsn) or ''}"
        raise SourceUnavailable(f"Cannot connect to the MySQL server at {where}: {_message(exc)}") from exc
    with conn.cursor() as cur:
        for name, value in SESSION_SETTINGS.items():
            cur.execute(f"SET SESSION {name} = %s", [value])
    return conn


def _message(exc: BaseException) -> str:
    """A driver error's message, without its error number."""
    args: tuple[Any, ...] = exc.args
    if len(args) == 2 and isinstance(args[1], str):
        return args[1]
    return str(exc) or type(exc).__name__


def _lost(exc: pymysql.MySQLError) -> bool:
    # InterfaceError: pymysql's own "the connection is closed".
    return isinstance(exc, pymysql.InterfaceError) or bool(exc.args and exc.args[0] in _CONNECTION_LOST)


@contextmanager
def _failing(what: str) -> Iterator[None]:
    """Driver errors become the project's: `what` failed, SourceUnavailable when the connection was lost."""
    try:
        yield
    except pymysql.MySQLError as exc:
        raise source_error(what, _message(exc), lost=_lost(exc)) from exc


def _query(conn: Any, statement: str, params: list[Any] | None = None) -> list[tuple[Any, ...]]:
    with conn.cursor() as cur:
        cur.execute(statement, params or [])  # always formatted: names hold `%%` for `%` (see quote)
        return list(cur.fetchall())


def list_databases(source: str) -> list[str]:
    """The databases to export: the one the URL names, or every one but the system databases."""
    named = source_database(source)
    with connect(source) as conn, _failing("Listing the source's databases"):
        rows = _query(
            conn,
            "SELECT SCHEMA_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME NOT IN %s ORDER BY SCHEMA_NAME",
            [SYSTEM_DATABASES],
        )
    return named_only([r[0] for r in rows], named)


# --- The snapshot ---------------------------------------------------------------------------------------


@dataclass
class Snapshot:
    """A consistent-snapshot transaction on the coordinator's connection, and one on each worker's.

    MySQL can't hand a snapshot to another connection: the workers' transactions are started up front, at the
    same moment as the coordinator's (see open_snapshots), and read_partition borrows them by `snapshot_id`.
    """

    conn: Any
    snapshot_id: str
    snapshot_time: datetime
    warnings: list[str] = field(default_factory=list)
    engine: str = NAME


# Worker connections of the open snapshots, by snapshot id; None marks one that was lost.
_WORKERS: dict[str, queue.Queue[Any]] = {}
_BORROW_TIMEOUT_SECONDS = 600
_UNSYNCHRONIZED = (
    "{why}, so dbexport could not start the workers' snapshots at one instant: each worker read a consistent "
    "snapshot of its own, started within moments of the others. Rows written while the export started may be "
    "in some partitions and not in others."
)
_NO_RELOAD = (
    "The source user may not run FLUSH TABLES WITH READ LOCK (it needs the RELOAD privilege; grant it for one "
    "snapshot across all workers)"
)
_LOCK_TIMEOUT = (
    "FLUSH TABLES WITH READ LOCK waited more than {seconds} s for statements running on the source "
    "(a long query, a table lock) and was given up"
)


def _begin_snapshot(conn: Any) -> None:
    with conn.cursor() as cur:
        cur.execute("SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        cur.execute("START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY")


@contextmanager
def open_snapshots(source: str, databases: list[str], workers: int = 0) -> Iterator[dict[str, Snapshot]]:
    """One snapshot of the whole server, which every database's export reads, held until the context ends.

    The coordinator's transaction and those of `workers` worker connections start while a brief
    FLUSH TABLES WITH READ LOCK holds every commit back, so they all see the same committed rows. Without
    the RELOAD privilege the lock is refused: the workers' snapshots then start unsynchronized, and the
    first database's plan says so. With no workers (the AWS runtime reads a clone nobody writes to) there
    is nothing to synchronize.
    """
    with ExitStack() as stack:
        conns = []
        for _ in range(workers + 1):
            conns.append(connect(source))
            stack.callback(_close_quietly, conns[-1])  # a worker's may have been closed already, see _borrowed
        warnings: list[str] = []
        with _failing("Opening a snapshot of the source"), ExitStack() as locked:
            if workers:
                lock = locked.enter_context(connect(source))
                try:
                    _query(lock, "SET SESSION lock_wait_timeout = %s", [LOCK_WAIT_SECONDS])
                    _query(lock, "FLUSH TABLES WITH READ LOCK")
                    locked.callback(_query, lock, "UNLOCK TABLES")
                except pymysql.MySQLError as exc:
                    if exc.args[0] not in _FTWRL_REFUSED | {_LOCK_WAIT_TIMEOUT}:
                        raise
                    log.warning("FLUSH TABLES WITH READ LOCK failed: %s", _message(exc))
                    timed_out = exc.args[0] == _LOCK_WAIT_TIMEOUT
                    why = _LOCK_TIMEOUT.format(seconds=LOCK_WAIT_SECONDS) if timed_out else _NO_RELOAD
                    warnings.append(_UNSYNCHRONIZED.format(why=why))
            for conn in conns:
                _begin_snapshot(conn)
            ((snapshot_time,),) = _query(conns[0], "SELECT UTC_TIMESTAMP(6)")
        # The lock is released (and its connection closed): commits go on while the export reads.
        snapshot_id = uuid.uuid4().hex
        pool: queue.Queue[Any] = queue.Queue()
        for conn in conns[1:]:
            pool.put(conn)
        _WORKERS[snapshot_id] = pool
        stack.callback(_WORKERS.pop, snapshot_id, None)
        when = datetime.fromisoformat(snapshot_time).replace(tzinfo=UTC)  # dates come as text (_DECODERS)
        yield {db: Snapshot(conns[0], snapshot_id, when, warnings if i == 0 else []) for i, db in enumerate(databases)}


@contextmanager
def _borrowed(dsn: str, snapshot_id: str | None) -> Iterator[Any]:
    """A connection inside the snapshot: a worker's of the open snapshot, or a new REPEATABLE READ one."""
    if snapshot_id is None:
        with connect(dsn) as conn:
            _begin_snapshot(conn)
            yield conn
        return
    pool = _WORKERS.get(snapshot_id)
    if pool is None:
        raise ExportFailed(f"The snapshot {snapshot_id} of the source is no longer open.")
    try:
        conn = pool.get(timeout=_BORROW_TIMEOUT_SECONDS)
    except queue.Empty:
        raise ExportFailed("No connection of the source's snapshot was free for this partition.") from None
    if conn is None:
        pool.put(None)
        raise ExportFailed("A connection of the source's snapshot was lost; the export can't go on in that snapshot.")
    healthy = False
    try:
        yield conn
        healthy = True
    finally:
        if healthy:
            pool.put(conn)
        else:
            # A read that stopped midway leaves rows unread on the connection: it can't serve another partition.
            _close_quietly(conn)
            pool.put(None)


def _close_quietly(conn: Any) -> None:
    try:
        conn.close()
    except pymysql.MySQLError as exc:  # lost, or closed by the driver already: the read's own error says why
        log.debug("closing a connection of the snapshot: %s", _message(exc))


@contextmanager
def connections_reused(dsns: Iterable[str]) -> Iterator[None]:
    """Nothing to do: the local runtime's worker connections are the snapshot's (open_snapshots closes them),
    and the AWS runtime's reads open their own transaction each."""
    yield


# --- The catalog ----------------------------------------------------------------------------------------


_KINDS = {"BASE TABLE": "table", "SYSTEM VERSIONED": "table", "VIEW": "view", "SEQUENCE": "sequence"}


def catalog(conn: Any, database: str) -> Catalog:
    """The database's tables and views, each with the database as its schema; a table the user may not read is
    marked so."""
    with _failing(f"Reading the catalog of the database {database}"):
        rows = _query(
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
        _query(conn, f"SELECT * FROM {_table_name(database, table)} LIMIT 0")
    except pymysql.MySQLError as exc:
        if exc.args[0] in _ACCESS_DENIED:
            return False
        raise
    return True


def list_columns(conn: Any, database: str, entry: CatalogEntry) -> list[MySQLColumn]:
    with _failing(f"Planning the table {database}.{entry.name}"):
        return _columns(conn, database, entry.name)


def _columns(conn: Any, database: str, table: str) -> list[MySQLColumn]:
    rows = _query(
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


def plan_table(
    conn: Any, database: str, entry: CatalogEntry, columns: Sequence[MySQLColumn], settings: ExportSettings
) -> TableDraft:
    """The table's columns (zero dates kept as text) and its partitions; MySQL's values are not measured."""
    with _failing(f"Planning the table {database}.{entry.name}"):
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
    rows = _query(
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
    ((*found,),) = _query(conn, f"SELECT {checks} FROM {_table_name(database, table)}")
    return frozenset(name for name, hit in zip(columns, found, strict=True) if hit)


@dataclass(frozen=True)
class Key:
    """The columns of the primary key, or of a unique index of NOT NULL columns, and their DATA_TYPEs."""

    columns: list[str]
    types: list[str]


def table_key(conn: Any, database: str, table: str) -> Key | None:
    """The table's primary key, else its first unique index whose columns are all NOT NULL (no prefix index)."""
    rows = _query(
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
    ((lowest, highest),) = _query(conn, f"SELECT MIN({name}), MAX({name}) FROM {_table_name(database, table)}")
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
        for row in _query(
            conn,
            f"SELECT {names} FROM (SELECT {names}, ROW_NUMBER() OVER (ORDER BY {names}) AS {quote(row_number)}"
            f" FROM {_table_name(database, table)}) AS numbered"
            f" WHERE MOD({quote(row_number)}, %s) = 0 ORDER BY {quote(row_number)}",
            [every],
        )
    ]


# --- Reading ----------------------------------------------------------------------------------------------


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
        f"FROM {_table_name(table.database, table.table)}"
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
    with _failing(partition_name(table, partition)), _borrowed(dsn, snapshot_id) as conn:
        # Not closed when the read stops midway: closing an unbuffered cursor reads every row left
        # (_borrowed drops that connection instead).
        cur = conn.cursor(pymysql.cursors.SSCursor)
        cur.execute(query, params)
        size = _FIRST_BATCH_ROWS
        while rows := cur.fetchmany(size):
            batch = _batch(rows, schema)
            yield batch
            per_row = max(1, batch.nbytes // len(rows))
            size = max(_FIRST_BATCH_ROWS, min(_MAX_BATCH_ROWS, BATCH_BYTES // per_row))
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
    with _failing(f"Counting the rows of {table.target}"):
        ((count,),) = _query(conn, f"SELECT COUNT(*) FROM {_table_name(table.database, table.table)}")
    return int(count)
