"""Runs a registered export task in this process: heartbeats, cancel polling, the end event."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from dbexport.events import task_event
from dbexport.local import run_export
from dbexport.models import Status
from dbexport.tasks.lifecycle import DEFAULT_MAX_UNFINISHED, RUNNER_FIELDS
from dbexport.tasks.sqlite import SqliteTaskStore

if TYPE_CHECKING:
    from dbexport.local import Progress
    from dbexport.models import ExportTask

log = logging.getLogger(__name__)

# The detached runner gets the source URL, credentials included, from its environment, never its command line.
SOURCE_URL_ENV = "DBEXPORT_SOURCE_URL"
HEARTBEAT_SECONDS = 2.0


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
        return SqliteTaskStore(self.path / "tasks.sqlite3", max_unfinished)

    @property
    def events(self) -> Path:
        """One JSON line per finished task, as the AWS runtime publishes it to SNS and EventBridge."""
        return self.path / "events.jsonl"

    def log(self, identifier: str) -> Path:
        return self.path / "logs" / f"{identifier}.log"


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
    """Run the registered task to its end and append its event; returns the task as the store has it."""
    store.claim(identifier, os.getpid())
    canceled = threading.Event()
    finished = threading.Event()

    def heartbeat() -> None:
        # Tells other commands this runner lives, and learns of a cancel between two heartbeats.
        while not finished.wait(HEARTBEAT_SECONDS):
            if store.heartbeat(identifier) == Status.CANCELING:
                canceled.set()

    beating = threading.Thread(target=heartbeat, name="dbexport-heartbeat", daemon=True)
    beating.start()
    tally = _Tally(display)
    try:
        run_export(
            store.get(identifier),
            source_url,
            store.settings(identifier),
            endpoint_url=endpoint_url,
            progress=tally,
            on_update=lambda t: _record(store, t),
            should_stop=canceled.is_set,
        )
    finally:
        finished.set()
        beating.join()
    task = store.get(identifier)
    state.events.parent.mkdir(parents=True, exist_ok=True)
    with state.events.open("a", encoding="utf-8") as events:
        events.write(json.dumps(task_event(task, tally.rows_exported, tally.bytes_written)) + "\n")
    return task


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
