"""Source engines: one package per engine (postgres, mysql), registered in dbexport.urls, chosen by URL scheme.

An engine lists, snapshots, catalogs, plans and reads its own tables; the rules every engine shares (the
selection, the anchor's skip rules, folder conflicts, the size limits) are applied by dbexport.steps.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, cast
from urllib.parse import quote

from dbexport.errors import (
    DBClusterNotFoundFault,
    DbExportError,
    ExportFailed,
    SourceUnavailable,
)
from dbexport.urls import ENGINES, canonical, engine_of

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator, Mapping, Sequence
    from contextlib import AbstractContextManager
    from datetime import datetime

    import pyarrow as pa

    from dbexport.models import Column, ExportSettings, Partition, TablePlan
    from dbexport.urls import EngineName


class Snapshot(Protocol):
    """One database's consistent view of the source, held open while its export runs."""

    @property
    def conn(self) -> Any: ...  # a connection inside the snapshot: the catalog, planning and counts use it
    @property
    def snapshot_id(self) -> str: ...  # how read_partition joins the snapshot
    @property
    def snapshot_time(self) -> datetime: ...
    @property
    def warnings(self) -> list[str]: ...  # for the plan's general warnings
    @property
    def engine(self) -> EngineName: ...  # the engine that plans in it


@dataclass(frozen=True)
class CatalogEntry:
    """A table, or something else ExportOnly may name, as an engine's catalog lists it, before the rules.

    An engine may subclass it with what it needs to find the table again (PostgreSQL: its oid).
    """

    schema: str  # the database itself, for an engine without schemas
    name: str
    kind: str = "table"  # else what it is, as a user reads it: "view", "materialized view", "foreign table"
    readable: bool = True
    # The engine's own reason to skip the table, in the anchor's words: TEMPORARY_TABLE, UNLOGGED_TABLE.
    skip: str | None = None
    # The partitioned tables a partition belongs to, as (schema, name), its parent first and its root last.
    ancestors: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Catalog:
    """A database's tables and the other objects ExportOnly may name, and its schemas (with or without tables)."""

    entries: list[CatalogEntry]
    schemas: set[str]


class Named(Protocol):
    @property
    def name(self) -> str: ...


@dataclass
class TableDraft:
    """An engine's plan of one table, before the shared size limits decide whether it is exported."""

    columns: list[Column]  # the exported ones
    partitions: list[Partition]
    estimated_bytes: int
    is_partitioned: bool = False
    warnings: list[str] = field(default_factory=list)  # added to the plan when the table is exported
    # What the engine measured for the anchor's row and value limits (0 when nothing can reach them).
    largest_row: int = 0
    largest_value: tuple[int, str | None] = (0, None)


class Engine(Protocol):
    """What the core asks of a source engine (each engine is a module with these names).

    Driver errors never leave an engine: a lost connection is SourceUnavailable (retried), any other
    ExportFailed, each naming what failed and keeping the database's first line (see source_error).
    """

    NAME: EngineName
    DEFAULT_PORT: int

    def redact(self, source: str) -> str: ...
    def database_dsn(self, source: str, database: str) -> str: ...
    def source_database(self, source: str) -> str | None: ...
    def list_databases(self, source: str) -> list[str]: ...
    def connect(self, dsn: str) -> Any: ...
    def open_snapshots(
        self, source: str, databases: list[str], settings: ExportSettings | None
    ) -> AbstractContextManager[Mapping[str, Snapshot]]: ...
    def catalog(self, conn: Any, database: str) -> Catalog: ...
    def list_columns(self, conn: Any, database: str, entry: CatalogEntry) -> Sequence[Named]: ...
    def plan_table(
        self, conn: Any, database: str, entry: CatalogEntry, columns: Sequence[Any], settings: ExportSettings
    ) -> TableDraft: ...
    def count_rows(self, conn: Any, table: TablePlan) -> int: ...
    def read_partition(
        self, dsn: str, snapshot_id: str | None, table: TablePlan, partition: Partition
    ) -> Iterator[pa.RecordBatch]: ...
    def connections_reused(self, dsns: Iterable[str]) -> AbstractContextManager[None]: ...


# The source URL's query parameter that names the export's connections to the source server (libpq's own
# application_name; MySQL's program_name connect attribute): the runtimes add it, the engines read it.
APPLICATION_NAME = "application_name"


def with_application_name(source: str, task_identifier: str) -> str:
    """The source URL whose every connection says it is this export's: application_name=dbexport/<task id>.

    PostgreSQL shows it in pg_stat_activity (cut at 63 bytes); MySQL and MariaDB in
    performance_schema.session_connect_attrs, where it is enabled. A name given in the URL is replaced.
    """
    base, _, query = source.partition("?")  # a canonical URL holds no unencoded `?` before its query
    kept = [item for item in query.split("&") if item and item.split("=", 1)[0].lower() != APPLICATION_NAME]
    kept.append(f"{APPLICATION_NAME}={quote(f'dbexport/{task_identifier}', safe='')}")
    return f"{base}?{'&'.join(kept)}"


def for_name(name: EngineName) -> Engine:
    """The engine's module, imported when first asked for: an engine loads its driver."""
    return cast("Engine", importlib.import_module(ENGINES[name].module))


def for_url(source: str) -> Engine:
    """The engine a source URL names: postgresql:// or postgres://, mysql:// or mariadb://, or one registered.

    A malformed URL, or one that names no registered engine, is refused as urls.canonical refuses it.
    """
    name = engine_of(canonical(source))
    assert name is not None, "canonical() refuses a URL that names no registered engine"
    return for_name(name)


def for_table(table: TablePlan) -> Engine:
    return for_name(table.engine)


def named_only(databases: list[str], named: str | None) -> list[str]:
    """The databases to export: all of them, or the one the source URL names, which must be one of them."""
    if named is None:
        return databases
    if named not in databases:
        raise DBClusterNotFoundFault(f"The database {named} does not exist on the source cluster.")
    return [named]


def source_error(what: str, message: str, *, lost: bool) -> DbExportError:
    """The project's error for a driver's: `what` failed, with the database's first line; retried when lost."""
    if lost:
        return SourceUnavailable(f"{what} failed: the connection to the source database was lost ({message}).")
    return ExportFailed(f"{what} failed: {message}")


def first_line(exc: BaseException) -> str:
    """A driver error's first line: what the database said, without the driver's detail lines."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def partition_name(table: TablePlan, partition: Partition) -> str:
    """How a failure names what it was doing: `Exporting db.schema.table (partition 3)`."""
    return f"Exporting {table.target} (partition {partition.index})"


if TYPE_CHECKING:  # each engine module is an Engine: mypy checks them here, without loading a driver at run time
    from dbexport.sources import mysql, postgres

    _POSTGRES: Engine = postgres
    _MYSQL: Engine = mysql
