"""Runs a registered export task in this process: heartbeats, cancel polling, the end event."""

from __future__ import annotations

import json
import logging
import os
import signal
import sqlite3
import subprocess
import sys
import threading
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

# dbexport.local (pyarrow, the drivers, boto3) is imported where an export runs: describe and cancel stay quick.
from dbexport.errors import InvalidExportTaskStateFault, StateDirUnusable
from dbexport.events import task_event
from dbexport.leftovers import clean_after_dead_runner, remove_spool
from dbexport.models import Status
from dbexport.outcomes import UNKNOWN_ERROR, failure_cause
from dbexport.tasks.lifecycle import DEFAULT_MAX_UNFINISHED, FINISHED, RUNNER_FIELDS
from dbexport.tasks.sqlite import SqliteTaskStore

if TYPE_CHECKING:
    from collections.abc import Iterator
    from types import FrameType

    from dbexport.api import Progress
    from dbexport.models import ExportTask

log = logging.getLogger(__name__)

# The detached runner gets the source URL, credentials included, from its environment, never its command line.
SOURCE_URL_ENV = "DBEXPORT_SOURCE_URL"
# How often a runner says it lives and looks for a cancel: a cancel is noticed within this time.
HEARTBEAT_SECONDS = 0.5


def default_state_dir() -> Path:
    """Where task records, events and runner logs live: DBEXPORT_STATE_DIR, else the XDG state directory."""
    if configured := os.environ.get("DBEXPORT_STATE_DIR"):
        return Path(configured)
    base = os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state"
    return Path(base) / "dbexport"


@dataclass(frozen=True)
class StateDir:
    """The local runtime's files."""

    path: Path

    def store(self, max_unfinished: int = DEFAULT_MAX_UNFINISHED) -> SqliteTaskStore:
        """The task records."""
        path = self.path / "tasks.sqlite3"
        try:
            return SqliteTaskStore(path, max_unfinished)
        except (OSError, sqlite3.Error) as exc:
            raise self._unusable(path, exc) from exc

    def _unusable(self, path: Path, exc: OSError | sqlite3.Error) -> StateDirUnusable:
        """Why the state directory can't hold the task records, and what to do."""
        elsewhere = "give another directory with --state-dir or DBEXPORT_STATE_DIR"
        if isinstance(exc, OSError):
            return StateDirUnusable(
                f"The state directory {self.path} can't be used ({exc.strerror}: {exc.filename or path}): it must be "
                f"a directory this user can write to; {elsewhere}."
            )
        if isinstance(exc, sqlite3.DatabaseError) and "not a database" in str(exc):
            return StateDirUnusable(
                f"The task store {path} is not dbexport's (file is not a database): move it away, or {elsewhere}."
            )
        return StateDirUnusable(f"The task store {path} can't be opened ({exc}): check it is writable, or {elsewhere}.")

    @property
    def events(self) -> Path:
        """One JSON line per finished task, as the AWS runtime publishes it to SNS and EventBridge."""
        return self.path / "events.jsonl"

    def log(self, identifier: str) -> Path:
        return self.path / "logs" / f"{identifier}.log"

    def append_event(self, event: dict[str, Any]) -> None:
        """One line per event, in one write: runners and commands may append at the same time."""
        self.path.mkdir(parents=True, exist_ok=True)
        line = (json.dumps(event) + "\n").encode()
        fd = os.open(self.events, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            written = 0
            while written < len(line):
                written += os.write(fd, line[written:])
        finally:
            os.close(fd)


def end_dead_runners(state: StateDir, store: SqliteTaskStore, endpoint_url: str | None = None) -> list[ExportTask]:
    """End the tasks whose runner died (FAILED, or CANCELED when a cancel was asked for), with their events.

    What the runner left half-written is removed first, and export_info rewritten with the task's end.
    """
    ended = store.fail_dead_runners()
    for task in ended:
        clean_after_dead_runner(task, endpoint_url)
        # What the dead runner moved is not known: the event says so with nulls.
        state.append_event(task_event(task, None, None))
    return ended


class _Tally:
    """Counts rows and bytes for the end event, and passes everything on to a display."""

    def __init__(self, display: Progress | None) -> None:
        self.display = display
        self.rows_exported = self.bytes_written = 0

    def begin(self, tables: int, estimated_bytes: int) -> None:
        if self.display:
            self.display.begin(tables, estimated_bytes)

    def rows(self, count: int) -> None:
        self.rows_exported += count
        if self.display:
            self.display.rows(count)

    def partition_done(self, estimated_bytes: int, bytes_written: int, table_done: bool) -> None:
        self.bytes_written += bytes_written
        if self.display:
            self.display.partition_done(estimated_bytes, bytes_written, table_done)


def run_task(
    store: SqliteTaskStore,
    state: StateDir,
    identifier: str,
    source_url: str,
    endpoint_url: str | None = None,
    display: Progress | None = None,
) -> ExportTask:
    """Run the registered task to its end and append its event; returns the task as the store has it.

    A task is run once: when it is finished already or another runner has claimed it, this returns it as it is.
    """
    interrupted = threading.Event()
    with _interrupts_cancel(interrupted):
        status = store.claim(identifier, os.getpid())
        if status is None:
            log.warning("export task %s is finished or run by another process; not running it", identifier)
            return store.get(identifier)
        tally = _Tally(display)
        if status == Status.CANCELING:
            # Canceled before any runner took it: nothing to export.
            store.update(identifier, status=Status.CANCELED, task_end_time=datetime.now(UTC))
        else:
            _run(store, identifier, source_url, endpoint_url, tally, interrupted)
        remove_spool(identifier)
        task = store.get(identifier)
        if task.status not in FINISHED:  # the export returned without ending the task: never leave it running
            task = store.update(
                identifier, status=Status.FAILED, failure_cause=UNKNOWN_ERROR, task_end_time=datetime.now(UTC)
            )
        state.append_event(task_event(task, tally.rows_exported, tally.bytes_written))
    return task


@contextmanager
def _interrupts_cancel(interrupted: threading.Event) -> Iterator[None]:
    """SIGINT (Ctrl-C) and SIGTERM set `interrupted` instead of stopping the process midway.

    The runner then cancels its task, as cancel-export-task would: the partitions in flight are removed and the
    task ends CANCELED. Only the main thread can take signals; elsewhere this does nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def take(signum: int, frame: FrameType | None) -> None:
        interrupted.set()  # no more here: a handler runs between any two bytecodes, locks held or not

    previous = {signum: signal.signal(signum, take) for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _run(
    store: SqliteTaskStore,
    identifier: str,
    source_url: str,
    endpoint_url: str | None,
    tally: _Tally,
    interrupted: threading.Event,
) -> None:
    from dbexport.local import run_export  # the export's dependencies load only where it runs

    canceled = threading.Event()
    finished = threading.Event()
    canceling = threading.Lock()

    def should_stop() -> bool:
        # An interrupt stops the export at once, as a cancel recorded first (the task may only end CANCELED so).
        if interrupted.is_set() and not canceled.is_set():
            with canceling:
                if not canceled.is_set():
                    _cancel_interrupted(store, identifier)
                    canceled.set()
        return canceled.is_set()

    def heartbeat() -> None:
        # Tells other commands this runner lives, and learns of a cancel between two heartbeats.
        while not finished.wait(HEARTBEAT_SECONDS):
            try:
                should_stop()
                if store.heartbeat(identifier) == Status.CANCELING:
                    canceled.set()
            except Exception:  # a busy store must not silence the heartbeats for good
                log.exception("heartbeat of export task %s failed", identifier)

    beating = threading.Thread(target=heartbeat, name="dbexport-heartbeat", daemon=True)
    beating.start()
    try:
        run_export(
            store.get(identifier),
            source_url,
            store.settings(identifier),
            endpoint_url=endpoint_url,
            progress=tally,
            on_update=lambda t: _record(store, t),
            should_stop=should_stop,
        )
    except Exception as exc:
        # run_export ends the task itself for failures of the export; this is for those before it starts
        # (the destination's client, the settings): the task must not stay STARTING.
        store.update(
            identifier, status=Status.FAILED, failure_cause=failure_cause(exc), task_end_time=datetime.now(UTC)
        )
    finally:
        finished.set()
        beating.join()


def _cancel_interrupted(store: SqliteTaskStore, identifier: str) -> None:
    log.warning("interrupted: canceling export task %s", identifier)
    with suppress(InvalidExportTaskStateFault):  # it ended meanwhile
        store.cancel(identifier)


def _record(store: SqliteTaskStore, task: ExportTask) -> None:
    store.update(task.export_task_identifier, **{name: getattr(task, name) for name in RUNNER_FIELDS})


def spawn_runner(state: StateDir, identifier: str, source_url: str, endpoint_url: str | None) -> int:
    """Start a detached process that runs the task; it outlives this command. Returns its pid."""
    log_path = state.log(identifier)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, SOURCE_URL_ENV: source_url}
    if endpoint_url:
        env["AWS_ENDPOINT_URL"] = endpoint_url
    with log_path.open("ab") as log_file:
        process = subprocess.Popen(
            [sys.executable, "-m", "dbexport.cli", "--state-dir", str(state.path), "run-task", identifier],
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=log_file,
            env=env,
            start_new_session=True,  # a Ctrl-C or closed terminal of the starting shell does not stop it
        )
    return process.pid
