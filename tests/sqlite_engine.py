"""A third engine, for the tests only: a folder of SQLite files (`sqlite:///folder`, each `<name>.db` a database).

It is plugged in by registering it in dbexport.urls (see tests/integration/test_third_engine.py): no shared
module knows it. Its tables have one schema, `main`, and are split into two ranges of their rowid.
"""

from __future__ import annotations

import sqlite3
from contextlib import ExitStack, contextmanager, nullcontext
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import pyarrow as pa

from dbexport.errors import SourceUnavailable
from dbexport.models import Column
from dbexport.planning import split_by_key
from dbexport.sources import Catalog, CatalogEntry, TableDraft, named_only
from dbexport.typemap import arrow_schema
from dbexport.urls import redact as redact

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator, Sequence

    from dbexport.models import ExportSettings, Partition, TablePlan

NAME = "sqlite"
DEFAULT_PORT = 0  # no server
_TYPES = {"INTEGER": "int64", "REAL": "float64", "TEXT": "string", "BLOB": "binary"}


def database_dsn(source: str, database: str) -> str:
    return str(Path(urlsplit(source).path) / f"{database}.db")


def source_database(source: str) -> str | None:
    return None


def list_databases(source: str) -> list[str]:
    return named_only(sorted(p.stem for p in Path(urlsplit(source).path).glob("*.db")), None)


def connect(dsn: str) -> sqlite3.Connection:
    if not Path(dsn).is_file():
        raise SourceUnavailable(f"Cannot open the SQLite database {dsn}.")
    return sqlite3.connect(dsn, check_same_thread=False)


@dataclass
class Snapshot:
    conn: sqlite3.Connection
    snapshot_id: str
    snapshot_time: datetime
    warnings: list[str] = field(default_factory=list)
    engine: str = NAME


@contextmanager
def open_snapshots(
    source: str, databases: list[str], settings: ExportSettings | None = None
) -> Iterator[dict[str, Snapshot]]:
    with ExitStack() as stack:
        snapshots = {}
        for db in databases:
            conn = connect(database_dsn(source, db))
            stack.callback(conn.close)
            snapshots[db] = Snapshot(conn, db, datetime.now(UTC))
        yield snapshots


def catalog(conn: sqlite3.Connection, database: str) -> Catalog:
    rows = conn.execute(
        "SELECT name, type FROM sqlite_master WHERE type IN ('table', 'view')"
        " AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' ORDER BY name"
    ).fetchall()
    return Catalog([CatalogEntry("main", name, kind) for name, kind in rows], {"main"})


@dataclass(frozen=True)
class SqliteColumn:
    name: str
    declared: str


def list_columns(conn: sqlite3.Connection, database: str, entry: CatalogEntry) -> list[SqliteColumn]:
    rows = conn.execute("SELECT name, type FROM pragma_table_info(?)", [entry.name]).fetchall()
    return [SqliteColumn(name, declared.upper()) for name, declared in rows]


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def plan_table(
    conn: sqlite3.Connection,
    database: str,
    entry: CatalogEntry,
    columns: Sequence[SqliteColumn],
    settings: ExportSettings,
) -> TableDraft:
    lowest, highest, count = conn.execute(
        f"SELECT min(rowid), max(rowid), count(*) FROM {_quote(entry.name)}"
    ).fetchone()
    estimated = 100 * count
    cuts = [(lowest + highest) // 2] if count > 1 else []
    return TableDraft(
        columns=[
            Column(
                name=c.name, original_type=c.declared, read_as="native", export_type=_TYPES.get(c.declared, "string")
            )
            for c in columns
        ],
        partitions=split_by_key("rowid", cuts, estimated),
        estimated_bytes=estimated,
    )


def count_rows(conn: sqlite3.Connection, table: TablePlan) -> int:
    return int(conn.execute(f"SELECT count(*) FROM {_quote(table.table)}").fetchone()[0])


def read_partition(
    dsn: str, snapshot_id: str | None, table: TablePlan, partition: Partition
) -> Iterator[pa.RecordBatch]:
    conditions, params = [], []
    if partition.lower is not None:
        conditions.append("rowid >= ?")
        params.append(partition.lower)
    if partition.upper is not None:
        conditions.append("rowid < ?")
        params.append(partition.upper)
    query = f"SELECT {', '.join(_quote(c.name) for c in table.columns)} FROM {_quote(table.table)}"
    if conditions:
        query += " WHERE " + " AND ".join(conditions)
    schema = arrow_schema(table.columns)
    with connect(dsn) as conn:
        rows = conn.execute(query, params).fetchall()
    yield pa.RecordBatch.from_pylist([dict(zip(schema.names, row, strict=True)) for row in rows], schema=schema)


def connections_reused(dsns: Iterable[str]) -> Any:
    return nullcontext()
