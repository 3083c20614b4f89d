"""Source engines: one module per engine (postgres, mysql) exposing the same functions, chosen by URL scheme."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

from dbexport.errors import DBClusterNotFoundFault, InvalidParameterValue
from dbexport.urls import EngineName, engine_of, redact

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator
    from contextlib import AbstractContextManager

    import pyarrow as pa

    from dbexport.models import Partition, TablePlan


class Engine(Protocol):
    """What the core asks of a source engine, whatever it is (each engine is a module with these functions)."""

    def redact(self, source: str) -> str: ...
    def database_dsn(self, source: str, database: str) -> str: ...
    def list_databases(self, source: str) -> list[str]: ...
    def connect(self, dsn: str) -> Any: ...
    def count_rows(self, conn: Any, table: TablePlan) -> int: ...
    def read_partition(
        self, dsn: str, snapshot_id: str | None, table: TablePlan, partition: Partition
    ) -> Iterator[pa.RecordBatch]: ...
    def connections_reused(self, dsns: Iterable[str]) -> AbstractContextManager[None]: ...


def for_name(name: EngineName) -> Engine:
    """The engine's module."""
    # Imported when asked for: an engine loads its driver.
    if name == "mysql":
        from dbexport.sources import mysql

        return mysql
    from dbexport.sources import postgres

    return postgres


def for_url(source: str) -> Engine:
    """The engine a source URL names: postgresql:// or postgres://, mysql:// or mariadb://."""
    name = engine_of(source)
    if name is None:
        raise InvalidParameterValue(
            f"The source {redact(source)!r} is not supported: give a PostgreSQL or MySQL URL such as "
            "postgresql://user@host:5432/ or mysql://user@host:3306/ (Aurora cluster ARNs are for the AWS runtime)."
        )
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
