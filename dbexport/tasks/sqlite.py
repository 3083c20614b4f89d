"""Export task records in SQLite: the local runtime's store, safe across processes."""

from __future__ import annotations

import json
import os
import sqlite3
import time
from contextlib import closing, contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dbexport.errors import ExportTaskAlreadyExists
from dbexport.models import ExportSettings, ExportTask, Status
from dbexport.tasks import lifecycle
from dbexport.urls import source_identity

if TYPE_CHECKING:
    from collections.abc import Iterator

_SCHEMA = """
CREATE TABLE IF NOT EXISTS export_tasks (
    position INTEGER PRIMARY KEY AUTOINCREMENT,  -- start order, for DescribeExportTasks' Marker
    identifier TEXT NOT NULL UNIQUE,
    source_arn TEXT NOT NULL,
    source_identity TEXT NOT NULL,               -- the server, however the source is spelled (urls.source_identity)
    status TEXT NOT NULL,
    record TEXT NOT NULL,                        -- the ExportTask, as JSON
    settings TEXT NOT NULL,                      -- dbexport's ExportSettings, as JSON
    runner_pid INTEGER,
    heartbeat REAL
);
CREATE INDEX IF NOT EXISTS export_tasks_unfinished ON export_tasks (status);
"""
_UNFINISHED = tuple(s.value for s in lifecycle.UNFINISHED)
_OPEN_TIMEOUT_S = 30.0
# A runner that has not said it is alive for this long is taken for dead.
STALE_AFTER_SECONDS = 120.0


class SqliteTaskStore:
    """Task records in one SQLite file; every write is one IMMEDIATE transaction, so rules hold under races."""

    def __init__(self, path: Path, max_unfinished: int = lifecycle.DEFAULT_MAX_UNFINISHED) -> None:
        self.path = path
        self.max_unfinished = max_unfinished
        path.parent.mkdir(parents=True, exist_ok=True)
        # Several commands may open a new state directory at once: switching the journal mode needs the file to
        # itself, and SQLite says "locked" at once instead of waiting its timeout, so wait here.
        deadline = time.monotonic() + _OPEN_TIMEOUT_S
        while True:
            try:
                with closing(self._connect()) as db:
                    db.execute("PRAGMA journal_mode=WAL")  # readers never wait for the runner's writes
                    db.executescript(_SCHEMA)
                self._add_source_identities()
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(0.01)

    def _add_source_identities(self) -> None:
        """A state file from before sources were compared by identity gets its column, filled in."""
        with self._transaction() as db:
            if "source_identity" in {row[1] for row in db.execute("PRAGMA table_info(export_tasks)")}:
                return
            db.execute("ALTER TABLE export_tasks ADD COLUMN source_identity TEXT NOT NULL DEFAULT ''")
            rows = db.execute("SELECT identifier, source_arn FROM export_tasks").fetchall()
            db.executemany(
                "UPDATE export_tasks SET source_identity = ? WHERE identifier = ?",
                [(source_identity(source), identifier) for identifier, source in rows],
            )

    def _connect(self) -> sqlite3.Connection:
        return sqlite3.connect(self.path, timeout=30, isolation_level=None)

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        # A connection per transaction: the store is used from threads and processes alike.
        with closing(self._connect()) as db:
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

    def create(self, task: ExportTask, settings: ExportSettings) -> ExportTask:
        """Register a new task: unique identifier for ever, one unfinished per source, a global limit."""
        with self._transaction() as db:
            if db.execute("SELECT 1 FROM export_tasks WHERE identifier = ?", [task.export_task_identifier]).fetchone():
                raise ExportTaskAlreadyExists(lifecycle.already_exists(task.export_task_identifier))
            unfinished = [
                (identity, ExportTask.model_validate_json(record))
                for identity, record in db.execute(
                    "SELECT source_identity, record FROM export_tasks WHERE status IN (?, ?, ?)", _UNFINISHED
                )
            ]
            lifecycle.check_can_start(task, unfinished, self.max_unfinished)
            db.execute(
                "INSERT INTO export_tasks (identifier, source_arn, source_identity, status, record, settings) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                [
                    task.export_task_identifier,
                    task.source_arn,
                    source_identity(task.source_arn),
                    task.status.value,
                    _json(task),
                    settings.model_dump_json(),
                ],
            )
        return task

    def get(self, identifier: str, operation: str = "DescribeExportTasks") -> ExportTask:
        with self._transaction() as db:
            return self._get(db, identifier, operation)

    def settings(self, identifier: str) -> ExportSettings:
        with self._transaction() as db:
            row = db.execute("SELECT settings FROM export_tasks WHERE identifier = ?", [identifier]).fetchone()
        if row is None:
            raise lifecycle.not_found(identifier, "DescribeExportTasks")
        return ExportSettings.model_validate_json(row[0])

    def update(self, identifier: str, **changes: Any) -> ExportTask:
        """A runner's progress or end, under the lifecycle rules (a cancel wins over progress)."""
        with self._transaction() as db:
            task = lifecycle.advance(self._get(db, identifier, "UpdateExportTask"), changes)
            self._put(db, task)
        return task

    def cancel(self, identifier: str) -> ExportTask:
        with self._transaction() as db:
            task = lifecycle.cancel(self._get(db, identifier, "CancelExportTask"))
            self._put(db, task)
        return task

    def describe(self, query: lifecycle.Query) -> tuple[list[ExportTask], str | None]:
        """DescribeExportTasks: matching tasks in start order, a page at a time."""
        with self._transaction() as db:
            if query.identifier is not None:
                self._get(db, query.identifier, "DescribeExportTasks")
            rows = db.execute(_SELECT_WITH_POSITION + " WHERE position > ? ORDER BY position", [query.after])
            matching = [
                (pos, task) for pos, record in rows if query.matches(task := ExportTask.model_validate_json(record))
            ]
        page = matching[: query.max_records]
        marker = lifecycle.encode_marker(page[-1][0]) if len(matching) > len(page) else None
        return [task for _, task in page], marker

    def claim(self, identifier: str, pid: int) -> Status | None:
        """Record which process runs the task, so that its death can be noticed.

        Returns the task's status, or None when the task is finished or another runner has it:
        a task is run once, by one runner.
        """
        with self._transaction() as db:
            task = self._get(db, identifier, "RunExportTask")
            claimed = db.execute(
                "UPDATE export_tasks SET runner_pid = ?, heartbeat = ? "
                f"WHERE identifier = ? AND runner_pid IS NULL AND status IN ({', '.join('?' * len(_UNFINISHED))})",
                [pid, time.time(), identifier, *_UNFINISHED],
            ).rowcount
        return task.status if claimed else None

    def heartbeat(self, identifier: str) -> Status:
        """The runner is alive; returns the task's status, so the runner learns of a cancel."""
        with self._transaction() as db:
            db.execute("UPDATE export_tasks SET heartbeat = ? WHERE identifier = ?", [time.time(), identifier])
            return self._get(db, identifier, "Heartbeat").status

    def fail_dead_runners(self) -> list[ExportTask]:
        """Unfinished tasks whose runner died end FAILED (or CANCELED, when a cancel was asked for)."""
        ended = []
        with self._transaction() as db:
            rows = db.execute(
                "SELECT record, runner_pid, heartbeat FROM export_tasks WHERE status IN (?, ?, ?)", _UNFINISHED
            ).fetchall()
            for record, pid, heartbeat in rows:
                task = ExportTask.model_validate_json(record)
                if _runner_alive(task, pid, heartbeat):
                    continue
                if pid is None:
                    cause = (
                        f"The process that runs the export never started within {_CLAIM_GRACE_SECONDS:.0f} seconds. "
                        "Check the runner's log in the state directory's logs folder, then start a new export task."
                    )
                else:
                    cause = (
                        f"The process running the export (pid {pid}) stopped before the export ended. "
                        "Data written so far is kept; start a new export task to export again."
                    )
                end = Status.CANCELED if task.status == Status.CANCELING else Status.FAILED
                task = lifecycle.advance(
                    task, {"status": end, "failure_cause": cause, "task_end_time": datetime.now(UTC)}
                )
                self._put(db, task)
                ended.append(task)
        return ended

    def _get(self, db: sqlite3.Connection, identifier: str, operation: str) -> ExportTask:
        row = db.execute("SELECT record FROM export_tasks WHERE identifier = ?", [identifier]).fetchone()
        if row is None:
            raise lifecycle.not_found(identifier, operation)
        return ExportTask.model_validate_json(row[0])

    def _put(self, db: sqlite3.Connection, task: ExportTask) -> None:
        db.execute(
            "UPDATE export_tasks SET status = ?, record = ? WHERE identifier = ?",
            [task.status.value, _json(task), task.export_task_identifier],
        )


_SELECT_WITH_POSITION = "SELECT position, record FROM export_tasks"
# A task registered but not yet claimed gets this long for its runner to start.
_CLAIM_GRACE_SECONDS = 60.0


def _json(task: ExportTask) -> str:
    return json.dumps(task.model_dump(mode="json"))


def _runner_alive(task: ExportTask, pid: int | None, heartbeat: float | None) -> bool:
    now = time.time()
    if pid is None:
        started = task.task_start_time
        return started is not None and now - started.timestamp() < _CLAIM_GRACE_SECONDS
    return _process_exists(pid) and heartbeat is not None and now - heartbeat < STALE_AFTER_SECONDS


def _process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, but another user's
        return True
    return not _is_zombie(pid)


def _is_zombie(pid: int) -> bool:
    """A process that exited but that nobody reaped (a container's init often reaps nothing) is dead."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:  # no /proc (macOS), or the process just went
        return False
    # `pid (comm) state ...`: comm may hold spaces and parentheses, the state follows the last `)`.
    return stat.rpartition(")")[2].split()[:1] == ["Z"]
