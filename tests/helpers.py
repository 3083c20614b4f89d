"""Helpers the tests share: run SQL in the test database, export it, read the output back."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

import psycopg
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pymysql
from psycopg import sql

from dbexport.local import run_export
from dbexport.models import ExportSettings, ExportTask, StartExportTaskRequest, Status
from dbexport.validation import validate_request

# One server, spelled as a user may spell it: each spelling is the server the first names.
ONE_SERVER = [
    "postgresql://exporter@127.0.0.1:5432/",
    "postgresql://exporter@localhost:5432/",  # localhost for 127.0.0.1
    "postgres://exporter@127.0.0.1:5432/",  # the scheme's alias
    "postgresql://exporter@127.0.0.1/",  # no port: the default
    "postgresql://exporter@127.0.0.1:5432/?sslmode=disable",  # a query
    "postgresql://exporter@127.0.0.1:5432/sales",  # one database of the cluster
    "postgresql://admin:pw@[::1]:5432/sales",  # another user, IPv6's loopback
    "POSTGRESQL://exporter@LOCALHOST./",
]
OTHER_SERVERS = [
    "postgresql://exporter@127.0.0.1:5433/",
    "postgresql://exporter@db.internal:5432/",
    "mysql://exporter@127.0.0.1:5432/",
    "arn:aws:rds:us-east-1:123456789012:cluster:sales",
]


def with_database(dsn: str, name: str) -> str:
    """The same server URL, naming another database."""
    return urlunsplit(urlsplit(dsn)._replace(path=f"/{name}"))


def execute(url: str, statements: str) -> None:
    """Run SQL in the test database, autocommit."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(statements)


def mysql_connect(url: str) -> Any:
    """A plain pymysql connection to the server (and database) a mysql:// URL names, autocommit."""
    parts = urlsplit(url)
    return pymysql.connect(
        host=parts.hostname or "127.0.0.1",
        port=parts.port or 3306,
        user=parts.username or "root",
        password=parts.password or "",
        database=unquote(parts.path.strip("/")) or None,
        charset="utf8mb4",
        autocommit=True,
    )


def mysql_execute(url: str, *statements: str) -> None:
    """Run SQL statements, one by one, in the test's MySQL database."""
    with mysql_connect(url) as conn, conn.cursor() as cur:
        for statement in statements:
            cur.execute(statement)


def mysql_query(url: str, statement: str) -> list[tuple[Any, ...]]:
    with mysql_connect(url) as conn, conn.cursor() as cur:
        cur.execute(statement)
        return list(cur.fetchall())


def export(
    url: str, out: Path, export_id: str = "test-export", settings: ExportSettings | None = None, **request: object
) -> ExportTask:
    """Export the test database to a local directory and return the finished task."""
    task = validate_request(
        StartExportTaskRequest(
            export_task_identifier=export_id,
            source_arn=url,
            s3_bucket_name=out.as_uri(),
            **request,  # type: ignore[arg-type]
        )
    )
    return run_export(task, url, settings or ExportSettings())


class WritesDuringExport:
    """An on_update callback: each time the task moves while IN_PROGRESS (planned, then as partitions finish),
    it commits `write(n)`, n counting from 1."""

    def __init__(self, write: Callable[[int], None]) -> None:
        self.write = write
        self.count = 0

    def __call__(self, task: ExportTask) -> None:
        if task.status != Status.IN_PROGRESS:
            return
        self.count += 1
        self.write(self.count)


def read_table(out: Path, export_id: str, database: str, schema: str, table: str) -> pa.Table:
    """Every Parquet file under the table's folder, as the anchor tells readers to read them."""
    folder = out / export_id / database / f"{schema}.{table}".translate(str.maketrans({c: "_" for c in '\\`" '}))
    return ds.dataset(folder, format="parquet").to_table()


def database_of(url: str) -> str:
    return urlsplit(url).path.strip("/")


# --- The task lifecycle as a user drives it: the CLI in a subprocess, the state directory, lock gates. ---

DBEXPORT = [sys.executable, "-m", "dbexport.cli"]
FINISHED = ("COMPLETE", "FAILED", "CANCELED")


def cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run `dbexport ARGS` as a user would (DBEXPORT_STATE_DIR comes from the test's environment)."""
    return subprocess.run([*DBEXPORT, *args], capture_output=True, text=True, timeout=timeout)


def start_task(identifier: str, source: str, bucket: str, *args: str) -> subprocess.CompletedProcess[str]:
    """`dbexport start-export-task` in the background (add --wait to run it here)."""
    return cli(
        "start-export-task", "--export-task-identifier", identifier, "--source-arn", source, "--s3-bucket-name", bucket,
        *args,
    )  # fmt: skip


def describe_tasks(*args: str) -> dict[str, Any]:
    result = cli("describe-export-tasks", *args)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)  # type: ignore[no-any-return]


def describe_task(identifier: str) -> dict[str, Any]:
    (task,) = describe_tasks("--export-task-identifier", identifier)["ExportTasks"]
    return task  # type: ignore[no-any-return]


def cancel_task(identifier: str) -> subprocess.CompletedProcess[str]:
    return cli("cancel-export-task", "--export-task-identifier", identifier)


def wait_for(condition: Callable[[], Any], timeout: float = 20, interval: float = 0.02, what: str = "") -> Any:
    """Poll until `condition()` is truthy; return its value."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := condition():
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what or condition}")


def wait_until_finished(
    identifier: str, timeout: float = 30, seen: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    """Describe the task (through the CLI) until it ends; every record seen is appended to `seen`."""

    def finished() -> dict[str, Any] | None:
        task = describe_task(identifier)
        if seen is not None:
            seen.append(task)
        return task if task["Status"] in FINISHED else None

    return wait_for(finished, timeout, 0.05, f"{identifier} to finish")  # type: ignore[no-any-return]


def runner_of(state_dir: Path, identifier: str) -> tuple[int | None, float | None]:
    """The task's runner pid and last heartbeat, as the store keeps them."""
    with closing(sqlite3.connect(state_dir / "tasks.sqlite3")) as db:
        row = db.execute("SELECT runner_pid, heartbeat FROM export_tasks WHERE identifier = ?", [identifier]).fetchone()
    assert row is not None, identifier
    return row[0], row[1]


def wait_until_runner_saw_cancel(state_dir: Path, identifier: str, canceled_at: float) -> None:
    """The runner polls its status with each heartbeat: two heartbeats after the cancel mean it has seen it."""
    first = wait_for(lambda: (h := runner_of(state_dir, identifier)[1]) and h > canceled_at and h, what="a heartbeat")
    wait_for(lambda: (h := runner_of(state_dir, identifier)[1]) and h > first, what="a second heartbeat")


def events(state_dir: Path) -> list[dict[str, Any]]:
    path = state_dir / "events.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def waiting_for_lock(url: str, table: str) -> bool:
    """Some session waits for a lock on the table."""
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_locks WHERE relation = %s::regclass AND NOT granted", [table]
        ).fetchone()
    return bool(row and row[0])


@contextmanager
def table_locked(url: str, table: str) -> Iterator[None]:
    """Hold ACCESS EXCLUSIVE on the table in an open transaction: whoever reads it waits until the block ends."""
    with psycopg.connect(url) as conn:
        conn.execute(sql.SQL("LOCK TABLE {} IN ACCESS EXCLUSIVE MODE").format(sql.Identifier(table)))
        try:
            yield
        finally:
            conn.rollback()


def assert_whole(folder: Path) -> int:
    """A partition folder is whole: its `_SUCCESS`, Parquet files pyarrow reads, no partial objects. Its rows."""
    assert (folder / "_SUCCESS").is_file(), folder
    names = sorted(p.name for p in folder.iterdir())
    assert all(n == "_SUCCESS" or n.endswith(".parquet") for n in names), names
    return sum(pq.read_table(folder / n).num_rows for n in names if n.endswith(".parquet"))


def dead(pid: int) -> bool:
    """Gone, or a zombie nobody reaps (the runner's parent has exited)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] == "Z"
    except FileNotFoundError:
        return True
