"""Export tasks as a user drives them with the CLI: uniqueness, limits, statuses, cancel, describe, recovery, events."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from dbexport.models import ExportSettings, ExportTask, Status
from dbexport.tasks.lifecycle import make_query
from dbexport.tasks.sqlite import SqliteTaskStore
from tests.helpers import (
    DBEXPORT,
    FINISHED,
    assert_whole,
    cancel_task,
    cli,
    database_of,
    dead,
    describe_task,
    describe_tasks,
    events,
    execute,
    runner_of,
    start_task,
    table_locked,
    wait_for,
    wait_until_finished,
    wait_until_runner_saw_cancel,
    waiting_for_lock,
)

SERVICE_ERROR = 254


def refused(result: subprocess.CompletedProcess[str], code: str, operation: str) -> str:
    """The AWS CLI's way: exit 254, `An error occurred (Code) when calling the Op operation: ...` on stderr."""
    assert result.returncode == SERVICE_ERROR, (result.returncode, result.stdout, result.stderr)
    assert result.stdout == ""
    message = result.stderr.strip()
    assert message.startswith(f"An error occurred ({code}) when calling the {operation} operation: "), message
    return message


def already_exists(identifier: str) -> str:
    return (
        "An error occurred (ExportTaskAlreadyExists) when calling the StartExportTask operation: "
        f"The export task with the ID {identifier} already exists."
    )


@pytest.fixture
def small(source: str) -> str:
    execute(source, "CREATE TABLE t (id int PRIMARY KEY, name text); INSERT INTO t VALUES (1, 'a'), (2, NULL);")
    return source


# Partitions of 1 MB, exported one at a time, largest first.
GATED = ("--partition-size-mb", "1", "--workers", "1")


@pytest.fixture
def gated(source: str) -> str:
    """Tables planned in name order: a_data (several partitions of 1 MB), then b_blocked and c_gate (one each).

    Planning reads each table's size, which waits while the test holds a lock on the table: a lock on
    c_gate keeps the export in STARTING after a_data and b_blocked are planned. Taking a lock on
    b_blocked then, and releasing c_gate, stops the worker (--workers 1, largest partitions first) at
    b_blocked once a_data's partitions are written: the export is IN_PROGRESS until the test lets it go.
    """
    execute(
        source,
        """
        CREATE TABLE a_data (id int PRIMARY KEY, payload text);
        INSERT INTO a_data SELECT g, md5(g::text) || md5((g + 1)::text) FROM generate_series(1, 60000) g;
        CREATE TABLE b_blocked (id int PRIMARY KEY, v text);
        INSERT INTO b_blocked SELECT g, 'v' || g FROM generate_series(1, 2000) g;
        CREATE TABLE c_gate (id int PRIMARY KEY);
        INSERT INTO c_gate VALUES (1);
        ANALYZE;
        """,
    )
    return source


@contextmanager
def blocked_at_b(url: str, identifier: str, out: Path) -> Iterator[list[dict]]:
    """Start the export in the background and hold its worker at b_blocked, after a_data's partitions.

    Yields the task records seen (start, then describes); the worker goes on when the block ends.
    """
    seen: list[dict] = []
    with ExitStack() as gate, ExitStack() as block:
        gate.enter_context(table_locked(url, "c_gate"))
        result = start_task(identifier, url, out.as_uri(), *GATED)
        assert result.returncode == 0, result.stderr
        seen.append(json.loads(result.stdout))
        wait_for(lambda: waiting_for_lock(url, "c_gate"), what="the export to wait for c_gate")
        seen.append(describe_task(identifier))
        assert seen[-1]["Status"] == "STARTING"
        block.enter_context(table_locked(url, "b_blocked"))
        gate.close()
        wait_for(lambda: waiting_for_lock(url, "b_blocked"), what="the worker to reach b_blocked")
        seen.append(describe_task(identifier))
        assert seen[-1]["Status"] == "IN_PROGRESS"
        yield seen


def store_of(state_dir: Path, max_unfinished: int = 100) -> SqliteTaskStore:
    return SqliteTaskStore(state_dir / "tasks.sqlite3", max_unfinished)


def new_task(identifier: str, source: str = "postgresql://h/db", bucket: str = "file:///tmp/b", **fields) -> ExportTask:
    fields.setdefault("task_start_time", datetime.now(UTC))
    return ExportTask(export_task_identifier=identifier, source_arn=source, s3_bucket=bucket, **fields)


def put(store: SqliteTaskStore, identifier: str, status: Status = Status.STARTING, **fields) -> None:
    """Register a task through the store API and move it to `status` as a runner would."""
    store.create(new_task(identifier, **fields), ExportSettings())
    if status in (Status.IN_PROGRESS, Status.COMPLETE, Status.FAILED):
        store.update(identifier, status=Status.IN_PROGRESS)
    if status in (Status.COMPLETE, Status.FAILED):
        store.update(identifier, status=status, task_end_time=datetime.now(UTC), failure_cause=None)
    if status in (Status.CANCELING, Status.CANCELED):
        store.cancel(identifier)
    if status == Status.CANCELED:
        store.update(identifier, status=Status.CANCELED, task_end_time=datetime.now(UTC))


def partition_folders(out: Path, identifier: str, table: str) -> list[Path]:
    tables = list(out.glob(f"{identifier}/*/public.{table}"))
    return sorted(p for t in tables for p in t.iterdir() if p.is_dir())


def assert_monotonic(seen: list[dict]) -> None:
    progress = [t["PercentProgress"] for t in seen]
    assert progress == sorted(progress), progress


def event_of(state_dir: Path, identifier: str) -> dict:
    (event,) = [e for e in events(state_dir) if e["detail"]["SourceIdentifier"] == identifier]
    return event


# --- Uniqueness ----------------------------------------------------------------------------------------------


def test_an_identifier_is_never_reused_even_after_its_task_finished(small, tmp_path, state_dir):
    result = start_task("once", small, (tmp_path / "a").as_uri(), "--wait")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["Status"] == "COMPLETE"
    again = start_task("once", small, (tmp_path / "b").as_uri(), "--wait")
    assert refused(again, "ExportTaskAlreadyExists", "StartExportTask") == already_exists("once")
    assert not (tmp_path / "b").exists()
    assert describe_task("once")["S3Bucket"] == (tmp_path / "a").as_uri()  # the first task is untouched
    assert [e["detail"]["SourceIdentifier"] for e in events(state_dir)] == ["once"]


def test_concurrent_starts_of_one_identifier_start_it_once(small, tmp_path, state_dir):
    out = tmp_path / "out"
    command = [*DBEXPORT, "start-export-task", "--export-task-identifier", "raced", "--source-arn", small]
    racers = [
        subprocess.Popen([*command, "--s3-bucket-name", out.as_uri()], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        for _ in range(5)
    ]
    results = [(p.wait(60), *(s.decode() for s in p.communicate())) for p in racers]
    winners = [r for r in results if r[0] == 0]
    assert len(winners) == 1, results
    assert json.loads(winners[0][1])["Status"] == "STARTING"
    for code, stdout, stderr in results:
        if code != 0:
            assert (code, stdout, stderr.strip()) == (SERVICE_ERROR, "", already_exists("raced"))
    assert wait_until_finished("raced")["Status"] == "COMPLETE"
    assert len(describe_tasks()["ExportTasks"]) == 1
    assert len(events(state_dir)) == 1


# --- Limits --------------------------------------------------------------------------------------------------


def test_one_unfinished_export_per_source_and_a_global_limit(small, tmp_path, state_dir):
    store = store_of(state_dir)
    # Unfinished and within the grace period its runner has to start: it counts.
    put(store, "waiting", source=small)
    result = start_task("second", small, tmp_path.as_uri())
    message = refused(result, "InvalidExportSourceState", "StartExportTask")
    assert "waiting" in message and small in message
    put(store, "other", source="postgresql://elsewhere/db")
    result = cli(
        "--max-unfinished-tasks", "2", "start-export-task", "--export-task-identifier", "third",
        "--source-arn", "postgresql://third.internal/db", "--s3-bucket-name", tmp_path.as_uri(),
    )  # fmt: skip
    message = refused(result, "InvalidExportSourceState", "StartExportTask")
    assert "already 2 unfinished export tasks" in message
    assert {t["ExportTaskIdentifier"] for t in describe_tasks()["ExportTasks"]} == {"waiting", "other"}
    assert not any(tmp_path.glob("*/export_info_*"))


# --- Status transitions --------------------------------------------------------------------------------------


def test_a_background_export_goes_starting_in_progress_complete(gated, tmp_path, state_dir):
    out = tmp_path / "out"
    with blocked_at_b(gated, "flow", out) as seen:
        assert seen[-1]["Status"] == "IN_PROGRESS" and "TaskEndTime" not in seen[-1]
        assert seen[-1]["PercentProgress"] < 100
        assert not (out / "flow" / database_of(gated) / "public.b_blocked").exists()
    done = wait_until_finished("flow", seen=seen)
    assert done["Status"] == "COMPLETE", done
    assert done["PercentProgress"] == 100
    statuses = [t["Status"] for t in seen]
    assert statuses == sorted(statuses, key=["STARTING", "IN_PROGRESS", "COMPLETE"].index)
    assert {"STARTING", "IN_PROGRESS", "COMPLETE"} <= set(statuses)
    assert_monotonic(seen)
    assert len(partition_folders(out, "flow", "a_data")) > 1
    assert sum(assert_whole(p) for p in partition_folders(out, "flow", "a_data")) == 60000
    for table in ("b_blocked", "c_gate"):
        (folder,) = partition_folders(out, "flow", table)
        assert_whole(folder)
    event = event_of(state_dir, "flow")
    assert event["detail"]["EventID"] == "RDS-EVENT-0236"
    assert event["detail"]["ExportedRows"] == 62001
    assert event["detail"]["ExportTask"] == done


def test_percent_progress_grows_as_partitions_finish(gated, tmp_path):
    with blocked_at_b(gated, "grows", tmp_path) as seen:
        # a_data's partitions, most of the table's bytes, are written; b_blocked and c_gate are not.
        assert 50 < seen[-1]["PercentProgress"] < 100, seen[-1]


def test_a_failed_export_says_what_to_fix(small, tmp_path, state_dir):
    database = database_of(small)
    result = start_task("bad-only", small, tmp_path.as_uri(), "--export-only", f"{database}.public.nope", "--wait")
    assert result.returncode == 1
    task = json.loads(result.stdout)
    assert task["Status"] == "FAILED"
    assert f"{database}.public.nope" in task["FailureCause"]
    assert "does not have" in task["FailureCause"] and "Check the names" in task["FailureCause"]
    assert "TaskEndTime" in task
    assert describe_task("bad-only")["FailureCause"] == task["FailureCause"]
    event = event_of(state_dir, "bad-only")
    assert event["detail"]["EventID"] == "RDS-EVENT-0234"
    assert event["detail"]["ExportTask"]["FailureCause"] == task["FailureCause"]


def test_cancel_during_starting_ends_canceled_with_nothing_exported(gated, tmp_path, state_dir):
    out = tmp_path / "out"
    with table_locked(gated, "a_data"):
        assert start_task("early", gated, out.as_uri(), *GATED).returncode == 0
        wait_for(lambda: waiting_for_lock(gated, "a_data"), what="the export to wait for a_data")
        assert describe_task("early")["Status"] == "STARTING"
        result = cancel_task("early")
        assert result.returncode == 0, result.stderr
        assert json.loads(result.stdout)["Status"] == "CANCELING"
        canceled_at = time.time()
        assert describe_task("early")["Status"] == "CANCELING"
        wait_until_runner_saw_cancel(state_dir, "early", canceled_at)
    task = wait_until_finished("early")
    assert task["Status"] == "CANCELED", task
    assert "TaskEndTime" in task and "FailureCause" not in task
    assert not list(out.rglob("*.parquet")) and not list(out.rglob("_SUCCESS"))
    event = event_of(state_dir, "early")
    assert event["detail"]["EventID"] == "RDS-EVENT-0235"
    assert event["detail"]["ExportedRows"] == 0


def test_cancel_during_in_progress_keeps_whole_partitions_only(gated, tmp_path, state_dir):
    out = tmp_path / "out"
    with blocked_at_b(gated, "midway", out) as seen:
        # The worker is reading b_blocked's partition when the cancel comes.
        result = cancel_task("midway")
        assert result.returncode == 0, result.stderr
        seen.append(json.loads(result.stdout))
        assert seen[-1]["Status"] == "CANCELING"
        wait_until_runner_saw_cancel(state_dir, "midway", time.time())
        seen.append(describe_task("midway"))
        assert seen[-1]["Status"] == "CANCELING"
    task = wait_until_finished("midway", seen=seen)
    assert task["Status"] == "CANCELED", task
    assert "FailureCause" not in task and "TaskEndTime" in task
    assert_monotonic(seen)
    kept = partition_folders(out, "midway", "a_data")
    assert len(kept) > 1, "the partitions written before the cancel stay"
    assert sum(assert_whole(folder) for folder in kept) == 60000
    # The partition being read when the cancel came left nothing; nothing was started after it.
    assert partition_folders(out, "midway", "b_blocked") == []
    assert partition_folders(out, "midway", "c_gate") == []
    assert not [p for p in out.rglob("*") if p.name.startswith(".") or p.name.endswith(".partial")]
    event = event_of(state_dir, "midway")["detail"]
    assert event["EventID"] == "RDS-EVENT-0235"
    assert event["ExportTask"] == task
    # What was kept, and only that: the rows of the whole partitions.
    assert event["ExportedRows"] == 60000
    assert event["ExportedBytes"] == sum(p.stat().st_size for p in out.rglob("*.parquet")) > 0
    again = cancel_task("midway")
    assert "is CANCELED and can't be canceled" in refused(again, "InvalidExportTaskStateFault", "CancelExportTask")


def test_cancel_and_describe_errors(state_dir):
    store = store_of(state_dir)
    put(store, "done", Status.COMPLETE)
    put(store, "broke", Status.FAILED)
    for identifier, status in (("done", "COMPLETE"), ("broke", "FAILED")):
        message = refused(cancel_task(identifier), "InvalidExportTaskStateFault", "CancelExportTask")
        assert f"{identifier} is {status}" in message
    assert "nope" in refused(cancel_task("nope"), "ExportTaskNotFound", "CancelExportTask")
    result = cli("describe-export-tasks", "--export-task-identifier", "nope")
    assert "nope" in refused(result, "ExportTaskNotFound", "DescribeExportTasks")


def test_cancel_through_the_cli_of_a_task_no_runner_took_yet(state_dir):
    store = store_of(state_dir)
    put(store, "queued")
    result = cancel_task("queued")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["Status"] == "CANCELING"
    assert describe_task("queued")["Status"] == "CANCELING"


# --- describe-export-tasks -----------------------------------------------------------------------------------


def test_describe_filters(state_dir):
    store = store_of(state_dir)
    put(store, "f-done", Status.COMPLETE, source="postgresql://one.internal/db", bucket="file:///b2")
    put(store, "f-fail", Status.FAILED, source="postgresql://three.internal/db", bucket="file:///b2")
    put(store, "f-stop", Status.CANCELED, source="postgresql://one.internal/db", bucket="file:///b1")
    put(store, "f-start", source="postgresql://one.internal/db", bucket="file:///b1")
    put(store, "f-run", Status.IN_PROGRESS, source="postgresql://two.internal/db", bucket="file:///b1")
    put(store, "f-stopping", Status.CANCELING, source="postgresql://four.internal/db", bucket="file:///b3")

    def ids(*args: str) -> list[str]:
        return [t["ExportTaskIdentifier"] for t in describe_tasks(*args)["ExportTasks"]]

    everything = ["f-done", "f-fail", "f-stop", "f-start", "f-run", "f-stopping"]  # in start order
    assert ids() == everything

    # Each status, in the lowercase values RDS takes (through the core API, one query each).
    def with_status(value: str) -> list[str]:
        tasks, _ = store.describe(make_query(filters=[{"Name": "status", "Values": [value]}]))
        return [t.export_task_identifier for t in tasks]

    statuses = ("starting", "in_progress", "complete", "failed", "canceled", "canceling", "COMPLETE")
    by_status = {value: with_status(value) for value in statuses}
    assert by_status == {
        "starting": ["f-start"],
        "in_progress": ["f-run"],
        "complete": ["f-done"],
        "failed": ["f-fail"],
        "canceled": ["f-stop"],
        "canceling": ["f-stopping"],
        "COMPLETE": [],  # case-sensitive, as RDS
    }
    # Shorthand with several values; several filters in one shorthand argument list.
    assert ids("--filters", "Name=status,Values=complete,failed,in_progress") == ["f-done", "f-fail", "f-run"]
    assert ids("--filters", "Name=s3-bucket,Values=file:///b1", "Name=status,Values=starting,canceled") == [
        "f-stop",
        "f-start",
    ]
    # JSON, several filters (all must match), several values.
    query = [
        {"Name": "source-arn", "Values": ["postgresql://one.internal/db", "postgresql://three.internal/db"]},
        {"Name": "s3-bucket", "Values": ["file:///b2"]},
    ]
    assert ids("--filters", json.dumps(query)) == ["f-done", "f-fail"]
    assert ids("--filters", '{"Name": "export-task-identifier", "Values": ["f-run", "f-stopping", "f-x"]}') == [
        "f-run",
        "f-stopping",
    ]
    assert ids("--filters", "Name=source-type,Values=SNAPSHOT") == []
    assert ids("--filters", "Name=source-type,Values=CLUSTER", "--source-arn", "postgresql://one.internal/db") == [
        "f-done",
        "f-stop",
        "f-start",
    ]
    assert ids("--export-task-identifier", "f-fail", "--source-type", "CLUSTER") == ["f-fail"]
    # Refused: an unknown filter, unparseable JSON, MaxRecords out of 20..100.
    result = cli("describe-export-tasks", "--filters", "Name=state,Values=complete")
    assert "Unrecognized filter name: state" in refused(result, "InvalidParameterValue", "DescribeExportTasks")
    refused(cli("describe-export-tasks", "--filters", "[{oops"), "InvalidParameterValue", "DescribeExportTasks")
    for bad in ("19", "101"):
        result = cli("describe-export-tasks", "--max-records", bad)
        assert f"MaxRecords must be between 20 and 100, not {bad}" in refused(
            result, "InvalidParameterValue", "DescribeExportTasks"
        )


def test_describe_finds_a_task_by_the_url_it_was_started_with(state_dir):
    store = store_of(state_dir)
    put(store, "redacted", source="postgresql://u@h/db")  # as the task keeps it, without the password
    with_password = "postgresql://u:secret@h/db"
    assert [t["ExportTaskIdentifier"] for t in describe_tasks("--source-arn", with_password)["ExportTasks"]] == [
        "redacted"
    ]
    result = describe_tasks("--filters", f"Name=source-arn,Values={with_password}")
    assert [t["ExportTaskIdentifier"] for t in result["ExportTasks"]] == ["redacted"]


def test_describe_pages_with_max_records_and_marker(state_dir):
    store = store_of(state_dir)
    for n in range(45):
        put(store, f"page-{n:02d}", Status.COMPLETE)
    pages = []
    marker: list[str] = []
    while True:
        page = describe_tasks("--max-records", "20", *marker)
        pages.append(page)
        if "Marker" not in page:
            break
        marker = ["--marker", page["Marker"]]
    assert [len(p["ExportTasks"]) for p in pages] == [20, 20, 5]
    assert ["Marker" in p for p in pages] == [True, True, False]
    ids = [t["ExportTaskIdentifier"] for p in pages for t in p["ExportTasks"]]
    assert ids == [f"page-{n:02d}" for n in range(45)]  # each once, in start order
    everything = describe_tasks()
    assert "Marker" not in everything
    assert [t["ExportTaskIdentifier"] for t in everything["ExportTasks"]] == ids
    rest = describe_tasks("--marker", pages[0]["Marker"])
    assert [t["ExportTaskIdentifier"] for t in rest["ExportTasks"]] == ids[20:]
    refused(cli("describe-export-tasks", "--marker", "garbage"), "InvalidParameterValue", "DescribeExportTasks")


# --- Crash recovery ------------------------------------------------------------------------------------------


def test_a_killed_runner_is_found_and_its_task_failed(gated, tmp_path, state_dir):
    with table_locked(gated, "c_gate"):
        assert start_task("killed", gated, tmp_path.as_uri(), *GATED).returncode == 0
        pid = wait_for(lambda: runner_of(state_dir, "killed")[0], what="the runner to claim the task")
        wait_for(lambda: waiting_for_lock(gated, "c_gate"), what="the export to wait for c_gate")
        assert subprocess.run(["pgrep", "-f", "run-task killed"], capture_output=True, text=True).stdout.split() == [
            str(pid)
        ]
        os.kill(pid, signal.SIGKILL)
        wait_for(lambda: dead(pid), what="the runner to die")
        task = describe_task("killed")  # any command finds the dead runner
    assert task["Status"] == "FAILED", task
    assert f"(pid {pid}) stopped before the export ended" in task["FailureCause"]
    assert "TaskEndTime" in task
    event = event_of(state_dir, "killed")
    assert event["detail"]["EventID"] == "RDS-EVENT-0234"
    assert event["detail"]["ExportTask"]["FailureCause"] == task["FailureCause"]
    assert event["detail"]["ExportedRows"] is None
    assert len(events(state_dir)) == 1  # the next command does not end it again
    describe_tasks()
    assert len(events(state_dir)) == 1


def test_an_unclaimed_task_fails_after_the_grace_period(state_dir):
    store = store_of(state_dir)
    put(store, "recent", task_start_time=datetime.now(UTC) - timedelta(seconds=10))
    put(store, "forgotten", task_start_time=datetime.now(UTC) - timedelta(hours=1), source="postgresql://x.internal/db")
    tasks = {t["ExportTaskIdentifier"]: t for t in describe_tasks()["ExportTasks"]}
    assert tasks["recent"]["Status"] == "STARTING"
    assert tasks["forgotten"]["Status"] == "FAILED"
    assert "never started" in tasks["forgotten"]["FailureCause"]
    assert [e["detail"]["SourceIdentifier"] for e in events(state_dir)] == ["forgotten"]


# --- Events --------------------------------------------------------------------------------------------------


def test_each_finished_task_appends_one_event(source, tmp_path, state_dir):
    execute(source, "CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t SELECT generate_series(1, 10);")
    execute(source, "CREATE UNLOGGED TABLE scratch (id int);")
    result = start_task("ev-ok", source, tmp_path.as_uri(), "--wait")
    assert result.returncode == 0, result.stderr
    task = json.loads(result.stdout)
    (event,) = events(state_dir)
    assert event["source"] == "dbexport"
    assert event["detail-type"] == "Export Task State Change"
    assert event["resources"] == [source]
    detail = event["detail"]
    assert detail["EventID"] == "RDS-EVENT-0236"
    assert detail["SourceIdentifier"] == "ev-ok"
    assert detail["SourceType"] == "CLUSTER"
    assert detail["ExportTask"] == task  # id, status, times, warning: the task as describe shows it
    assert detail["ExportTask"]["Status"] == "COMPLETE"
    assert {"TaskStartTime", "TaskEndTime", "SnapshotTime"} <= set(detail["ExportTask"])
    warning = json.loads(detail["ExportTask"]["WarningMessage"])
    assert warning["skippedTables"] == [
        {"database": database_of(source), "schema": "public", "table": "scratch", "reason": "UNLOGGED_TABLE"}
    ]
    assert detail["ExportedRows"] == 10
    parquet = list(tmp_path.rglob("*.parquet"))
    assert detail["ExportedBytes"] == sum(p.stat().st_size for p in parquet) > 0
    datetime.fromisoformat(event["time"])
    assert all(e["detail"]["ExportTask"]["Status"] in FINISHED for e in events(state_dir))
