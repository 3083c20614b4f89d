"""PostgreSQL: the engine (see dbexport.sources.Engine), its names gathered from its modules by job.

connection: URLs, connections, driver errors; snapshot: the exported snapshots; catalog: relations and
columns; planning: sizes, keys, value probes, partitions; reading (and dates): Arrow reads of a partition.
"""

from __future__ import annotations

from dbexport.sources.postgres.catalog import catalog, list_columns
from dbexport.sources.postgres.connection import (
    DEFAULT_PORT,
    NAME,
    connect,
    database_dsn,
    list_databases,
    redact,
    source_database,
)
from dbexport.sources.postgres.planning import plan_table
from dbexport.sources.postgres.reading import connections_reused, count_rows, read_partition
from dbexport.sources.postgres.snapshot import open_snapshots

__all__ = [
    "DEFAULT_PORT",
    "NAME",
    "catalog",
    "connect",
    "connections_reused",
    "count_rows",
    "database_dsn",
    "list_columns",
    "list_databases",
    "open_snapshots",
    "plan_table",
    "read_partition",
    "redact",
    "source_database",
]
