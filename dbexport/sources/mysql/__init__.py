"""MySQL and MariaDB: the engine (see dbexport.sources.Engine), its names gathered from its modules by job.

connection: URLs, quoted names, connections, driver errors; snapshot: the synchronized snapshot and its
worker connections; catalog: tables and columns; planning: sizes, keys, partitions; reading: Arrow reads.
"""

from __future__ import annotations

from dbexport.sources.mysql.catalog import catalog, list_columns
from dbexport.sources.mysql.connection import (
    DEFAULT_PORT,
    NAME,
    connect,
    database_dsn,
    list_databases,
    redact,
    source_database,
)
from dbexport.sources.mysql.planning import plan_table
from dbexport.sources.mysql.reading import count_rows, read_partition
from dbexport.sources.mysql.snapshot import connections_reused, open_snapshots

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
