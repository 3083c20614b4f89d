"""A connection lost mid-read: the same FailureCause, and a retryable error, in both runtimes.

The fault is real: the export's own backend is terminated (PostgreSQL) or its connection killed (MariaDB)
from another connection while a partition streams.
"""

from __future__ import annotations

import json
from contextlib import ExitStack
from typing import TYPE_CHECKING, Any

import psycopg
import pytest

from dbexport import steps
from dbexport.aws.events import StepError
from dbexport.destinations import LocalDestination
from dbexport.errors import SourceUnavailable
from dbexport.models import ExportSettings, PartitionWork, Status
from dbexport.outcomes import Failure
from dbexport.sources import for_url
from dbexport.validation import parse_export_only
from tests.helpers import database_of, execute, export, mysql_connect, mysql_execute

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

LOST = "failed: the connection to the source database was lost ("


def fault_after_first_batch(monkeypatch: pytest.MonkeyPatch, fault: Callable[[], None]) -> list[BaseException]:
    """Every partition written from now on meets `fault` once its first batch is written; returns what each
    such write raised."""
    write = steps.write_partition
    raised: list[BaseException] = []

    def faulty(*args: Any, on_batch: Callable[[int], None] | None = None, **kwargs: Any) -> Any:
        fired: list[int] = []

        def after_batch(rows: int) -> None:
            if not fired:
                fired.append(rows)
                fault()
            if on_batch is not None:
                on_batch(rows)

        try:
            return write(*args, on_batch=after_batch, **kwargs)
        except BaseException as exc:
            raised.append(exc)
            raise

    monkeypatch.setattr(steps, "write_partition", faulty)
    return raised


def terminate_postgres_reads(url: str) -> None:
    """pg_terminate_backend on the backends streaming a partition (the driver reads with COPY)."""
    with psycopg.connect(url, autocommit=True) as conn:
        pids = conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid() AND query LIKE 'COPY%%'"
        ).fetchall()
    assert pids, "no backend was reading"


def kill_mysql_reads(url: str) -> None:
    """KILL the connections reading the test database's `big` table."""
    pattern = f"SELECT%`{database_of(url)}`.`big`%"
    with mysql_connect(url) as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT ID FROM information_schema.PROCESSLIST WHERE INFO LIKE %s AND ID <> CONNECTION_ID()", [pattern]
        )
        ids = [row[0] for row in cur.fetchall()]
        for connection_id in ids:
            cur.execute(f"KILL {int(connection_id)}")
    assert ids, "no connection was reading"


@pytest.fixture
def big(source: str) -> str:
    """A table of several driver batches, read as one partition."""
    execute(
        source,
        "CREATE TABLE big (id bigint, body text);"
        " INSERT INTO big SELECT i, repeat(md5(i::text), 3) FROM generate_series(1, 300000) i; ANALYZE big;",
    )
    return source


def test_a_terminated_backend_fails_the_local_export_naming_the_partition(
    big: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fault_after_first_batch(monkeypatch, lambda: terminate_postgres_reads(big))
    task = export(big, tmp_path, "lost-pg", ExportSettings(workers=1))
    assert task.status == Status.FAILED
    assert task.failure_cause is not None
    assert task.failure_cause.startswith(f"Exporting {database_of(big)}.public.big (partition 1) {LOST}")
    assert "Traceback" not in task.failure_cause and "\n" not in task.failure_cause


def test_a_killed_mariadb_connection_fails_the_local_export_naming_the_partition(
    mysql_source: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    mysql_execute(
        mysql_source,
        "CREATE TABLE big (id bigint, body text)",
        "INSERT INTO big SELECT seq, REPEAT(MD5(seq), 3) FROM seq_1_to_200000",
    )
    fault_after_first_batch(monkeypatch, lambda: kill_mysql_reads(mysql_source))
    task = export(mysql_source, tmp_path, "lost-mysql", ExportSettings(workers=1))
    assert task.status == Status.FAILED
    assert task.failure_cause is not None
    assert task.failure_cause.startswith(f"Exporting {database_of(mysql_source)}.big (partition 1) {LOST}")
    assert "Traceback" not in task.failure_cause and "\n" not in task.failure_cause


def test_the_aws_step_raises_it_as_retryable_with_the_local_cause(
    big: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The AWS ExportPartition's step reads a clone without a snapshot id: the fault is SourceUnavailable, which the
    ASL retries, and when retries run out RecordFailure reads the same FailureCause as the local runtime."""
    fault_after_first_batch(monkeypatch, lambda: terminate_postgres_reads(big))
    local = export(big, tmp_path / "local", "lost-local", ExportSettings(workers=1))
    assert local.failure_cause is not None and LOST in local.failure_cause

    selection = parse_export_only([f"{database_of(big)}.public.big"])
    with ExitStack() as stack:
        ((database, snapshot),) = steps.open_snapshots(big, selection, stack).items()
        (table,) = steps.plan_database(snapshot, database, selection, ExportSettings()).tables
    work = PartitionWork(
        task=local, settings=ExportSettings(), table=table, partition=table.partitions[0], snapshot_id=None
    )
    with pytest.raises(SourceUnavailable) as raised:
        steps.export_partition(work, for_url(big).database_dsn(big, database), LocalDestination(tmp_path / "aws"))
    # The same words up to the database's own line, which says how the connection ended.
    assert str(raised.value).partition(LOST)[0] == local.failure_cause.partition(LOST)[0]

    # What Step Functions' Catch hands RecordFailure once the retries are spent.
    error = {"Error": "SourceUnavailable", "Cause": json.dumps({"errorMessage": str(raised.value)})}
    reported = StepError.model_validate(error)
    assert Failure.reported(reported.error, reported.message).cause == str(raised.value)
