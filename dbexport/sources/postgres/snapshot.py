"""PostgreSQL snapshots: one exported REPEATABLE READ snapshot per database, joined by the workers."""

from __future__ import annotations

from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from psycopg.conninfo import conninfo_to_dict

from dbexport.sources.postgres.connection import NAME, connect, database_dsn, failing

if TYPE_CHECKING:
    from collections.abc import Iterator
    from datetime import datetime

    import psycopg

    from dbexport.models import ExportSettings


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
        with failing(f"Opening a snapshot of the database {conninfo_to_dict(dsn).get('dbname', '')}"):
            conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            row = conn.execute("SELECT pg_export_snapshot(), now()").fetchone()
        assert row is not None
        yield Snapshot(conn, row[0], row[1])
    finally:
        conn.close()


@contextmanager
def open_snapshots(
    source: str, databases: list[str], settings: ExportSettings | None = None
) -> Iterator[dict[str, Snapshot]]:
    """A snapshot of each database, exported: the workers join it later, as they start (`settings` unused)."""
    with ExitStack() as stack:
        yield {db: stack.enter_context(open_snapshot(database_dsn(source, db))) for db in databases}
