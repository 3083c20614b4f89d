"""The MySQL snapshot: the coordinator's and the workers' transactions, started at one instant."""

from __future__ import annotations

import logging
import queue
import uuid
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import pymysql

from dbexport.errors import ExportFailed
from dbexport.planning import partition_count
from dbexport.sources.mysql.connection import NAME, connect, failing, message, query

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator

    from dbexport.models import ExportSettings


log = logging.getLogger(__name__)


_FTWRL_REFUSED = {1227, 1044, 1045}  # ER_SPECIFIC_ACCESS_DENIED_ERROR (RELOAD), ER_DBACCESS_DENIED, ER_ACCESS_DENIED
_LOCK_WAIT_TIMEOUT = 1205


# FLUSH TABLES WITH READ LOCK waits for running statements, and holds every write back while it waits: it is
# given up after this long rather than stall the source.
LOCK_WAIT_SECONDS = 10


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


def worker_connections(conn: Any, databases: list[str], settings: ExportSettings) -> int:
    """How many worker connections to open: no more than the workers, the partitions, or the server can spare.

    They can't be opened later, as partitions need them (a later transaction sees a later snapshot), so
    they are bounded up front: by the partitions planning will make (from the same size estimates), and
    by half the connections the server has free, so that the export never takes the last of them. A worker
    with no connection of its own waits for one to come back.
    """
    sizes = query(
        conn,
        "SELECT COALESCE(DATA_LENGTH, 0) FROM information_schema.TABLES"
        " WHERE TABLE_SCHEMA IN %s AND TABLE_TYPE <> 'VIEW'",
        [databases or [""]],
    )
    partitions = sum(partition_count(int(size), settings.partition_target_bytes) for (size,) in sizes)
    ((limit, user_limit),) = query(conn, "SELECT @@max_connections, @@max_user_connections")
    ((_, connected),) = query(conn, "SHOW GLOBAL STATUS LIKE 'Threads_connected'")
    spare = int(limit) - int(connected)
    if int(user_limit):  # 0: no limit per user (this user's other sessions are not counted: a lower bound)
        spare = min(spare, int(user_limit) - 1)
    return max(1, min(settings.workers, partitions, spare // 2))


def _begin_snapshot(conn: Any) -> None:
    with conn.cursor() as cur:
        cur.execute("SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        cur.execute("START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY")


@contextmanager
def open_snapshots(
    source: str, databases: list[str], settings: ExportSettings | None = None
) -> Iterator[dict[str, Snapshot]]:
    """One snapshot of the whole server, which every database's export reads, held until the context ends.

    The coordinator's transaction and those of the worker connections (see worker_connections) start while a
    brief FLUSH TABLES WITH READ LOCK holds every commit back, so they all see the same committed rows. Without
    the RELOAD privilege the lock is refused: the workers' snapshots then start unsynchronized, and the
    first database's plan says so. Without settings (the AWS runtime reads a clone nobody writes to, each read
    in its own transaction) there are no workers and nothing to synchronize.
    """
    with ExitStack() as stack:
        conns = [connect(source)]
        stack.callback(_close_quietly, conns[0])
        with failing("Opening a snapshot of the source"):
            workers = 0 if settings is None else worker_connections(conns[0], databases, settings)
        for _ in range(workers):
            conns.append(connect(source))
            stack.callback(_close_quietly, conns[-1])  # a worker's may have been closed already, see borrowed
        warnings: list[str] = []
        with failing("Opening a snapshot of the source"), ExitStack() as locked:
            if workers:
                lock = locked.enter_context(connect(source))
                try:
                    query(lock, "SET SESSION lock_wait_timeout = %s", [LOCK_WAIT_SECONDS])
                    query(lock, "FLUSH TABLES WITH READ LOCK")
                    locked.callback(query, lock, "UNLOCK TABLES")
                except pymysql.MySQLError as exc:
                    if exc.args[0] not in _FTWRL_REFUSED | {_LOCK_WAIT_TIMEOUT}:
                        raise
                    log.warning("FLUSH TABLES WITH READ LOCK failed: %s", message(exc))
                    timed_out = exc.args[0] == _LOCK_WAIT_TIMEOUT
                    why = _LOCK_TIMEOUT.format(seconds=LOCK_WAIT_SECONDS) if timed_out else _NO_RELOAD
                    warnings.append(_UNSYNCHRONIZED.format(why=why))
            for conn in conns:
                _begin_snapshot(conn)
            ((snapshot_time,),) = query(conns[0], "SELECT UTC_TIMESTAMP(6)")
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
def borrowed(dsn: str, snapshot_id: str | None) -> Iterator[Any]:
    """A connection inside the snapshot: a worker's of the open snapshot, or a new REPEATABLE READ one."""
    if snapshot_id is None:
        with connect(dsn) as conn:
            _begin_snapshot(conn)
            yield conn
        return
    pool = _WORKERS.get(snapshot_id)
    if pool is None:
        raise ExportFailed(f"The snapshot {snapshot_id} of the source is no longer open.")
    # Every borrowed connection comes back (or None in its place): waiting for one never waits forever.
    conn = pool.get()
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
        log.debug("closing a connection of the snapshot: %s", message(exc))


@contextmanager
def connections_reused(dsns: Iterable[str]) -> Iterator[None]:
    """Nothing to do: the local runtime's worker connections are the snapshot's (open_snapshots closes them),
    and the AWS runtime's reads open their own transaction each."""
    yield
