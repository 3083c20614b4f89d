"""The export task's rules through the core API: identifiers, lifecycle, limits, the SQLite store."""

from __future__ import annotations

import json
import os
import sqlite3
import string
import subprocess
import sys
import threading
from contextlib import closing
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from dbexport.errors import (
    ExportTaskAlreadyExists,
    ExportTaskNotFound,
    InvalidExportSourceState,
    InvalidExportTaskStateFault,
    InvalidParameterValue,
)
from dbexport.events import task_event
from dbexport.models import ExportSettings, ExportTask, Status
from dbexport.runner import StateDir, run_task
from dbexport.tasks import lifecycle
from dbexport.tasks.sqlite import SqliteTaskStore
from dbexport.urls import redact
from dbexport.validation import validate_identifier
from tests.helpers import ONE_SERVER, OTHER_SERVERS

# --- Identifiers -------------------------------------------------------------------------------------------

LETTERS = set(string.ascii_letters)
DIGITS = set(string.digits)


def is_valid_identifier(text: str) -> bool:
    """botocore's rule, read character by character: a letter first; letters, digits and hyphens;
    never two hyphens in a row nor one at the end; 1 to 60 characters."""
    if not 1 <= len(text) <= 60 or text[0] not in LETTERS:
        return False
    for i, char in enumerate(text):
        if char not in LETTERS | DIGITS | {"-"}:
            return False
        if char == "-" and (i == len(text) - 1 or text[i + 1] == "-"):
            return False
    return True


def accepted(text: str) -> bool:
    try:
        validate_identifier(text)
    except InvalidParameterValue as exc:
        assert exc.code == "InvalidParameterValue"
        assert repr(text) in exc.message  # the error names what was refused
        return False
    return True


# Mostly near-valid strings, so both answers come up often: the interesting alphabet, lengths around 60.
_near_valid = st.text(alphabet="aZq09-_. é\nＡ", min_size=0, max_size=64)
_valid_shaped = st.builds(
    lambda first, words: first + "-".join(words),
    st.sampled_from("abcXYZ"),
    st.lists(st.text(alphabet="ab9Z", min_size=1, max_size=12), max_size=8),
)


@given(st.one_of(st.text(max_size=70), _near_valid, _valid_shaped))
@example("a")
@example("a" * 60)
@example("a" * 61)
@example("a" + "-b" * 29 + "c")  # 60 characters
@example("a-b")
@example("a--b")
@example("a-")
@example("-a")
@example("1a")
@example("")
@example("a\n")
@example("a_b")
@example("Ａb")  # a letter, but not one of botocore's
@example("é")
def test_validate_identifier_accepts_exactly_the_documented_identifiers(text):
    assert accepted(text) == is_valid_identifier(text)


# --- Lifecycle rules (pure) --------------------------------------------------------------------------------


def task(identifier: str = "t", source: str = "postgresql://h/db", **fields: object) -> ExportTask:
    fields.setdefault("task_start_time", datetime.now(UTC))
    return ExportTask(
        export_task_identifier=identifier,
        source_arn=source,
        s3_bucket="file:///tmp/out",
        **fields,  # type: ignore[arg-type]
    )


def test_statuses_move_forward_only():
    starting = task()
    running = lifecycle.advance(starting, {"status": Status.IN_PROGRESS, "percent_progress": 10})
    assert running.status == Status.IN_PROGRESS
    with pytest.raises(ValueError, match="IN_PROGRESS to STARTING"):
        lifecycle.advance(running, {"status": Status.STARTING})
    with pytest.raises(ValueError, match="STARTING to COMPLETE"):
        lifecycle.advance(starting, {"status": Status.COMPLETE})
    done = lifecycle.advance(running, {"status": Status.COMPLETE, "percent_progress": 100})
    assert done.status == Status.COMPLETE
    # A finished task never changes again.
    assert lifecycle.advance(done, {"status": Status.FAILED, "failure_cause": "late"}) == done


def test_percent_progress_never_goes_back_and_request_fields_stay():
    running = lifecycle.advance(task(), {"status": Status.IN_PROGRESS, "percent_progress": 40})
    later = lifecycle.advance(running, {"percent_progress": 30, "s3_bucket": "elsewhere", "export_only": ["x"]})
    assert later.percent_progress == 40
    assert later.s3_bucket == running.s3_bucket
    assert later.export_only == []


@pytest.mark.parametrize("status", [Status.STARTING, Status.IN_PROGRESS])
def test_cancel_of_an_unfinished_task_is_canceling_then_canceled_whatever_the_runner_reports(status):
    current = task(status=status)
    canceling = lifecycle.cancel(current)
    assert canceling.status == Status.CANCELING
    assert lifecycle.cancel(canceling) == canceling  # a second cancel changes nothing
    # Progress still counts while the workers stop; the status stays CANCELING.
    still = lifecycle.advance(canceling, {"status": Status.IN_PROGRESS, "percent_progress": 50})
    assert (still.status, still.percent_progress) == (Status.CANCELING, 50)
    for end in (Status.COMPLETE, Status.FAILED, Status.CANCELED):
        ended = lifecycle.advance(still, {"status": end, "failure_cause": "x"})
        assert ended.status == Status.CANCELED
        assert ended.failure_cause is None


@pytest.mark.parametrize("status", [Status.COMPLETE, Status.FAILED, Status.CANCELED])
def test_a_finished_task_cannot_be_canceled(status):
    with pytest.raises(InvalidExportTaskStateFault) as caught:
        lifecycle.cancel(task("done-1", status=status))
    assert caught.value.operation == "CancelExportTask"
    assert "done-1" in str(caught.value) and status.value in str(caught.value)


def test_describe_parameters_are_checked():
    with pytest.raises(InvalidParameterValue, match="Unrecognized filter name: state"):
        lifecycle.make_query(filters=[{"Name": "state", "Values": ["complete"]}])
    with pytest.raises(InvalidParameterValue, match="needs at least one value"):
        lifecycle.make_query(filters=[{"Name": "status", "Values": []}])
    with pytest.raises(InvalidParameterValue):
        lifecycle.make_query(filters=[{"Name": "status", "Values": "complete"}])  # not a list
    with pytest.raises(InvalidParameterValue):
        lifecycle.make_query(filters=["status"])  # type: ignore[list-item]
    for bad in (0, 19, 101):
        with pytest.raises(InvalidParameterValue, match="MaxRecords must be between 20 and 100"):
            lifecycle.make_query(max_records=bad)
    assert lifecycle.make_query(max_records=20).max_records == 20
    assert lifecycle.make_query().max_records == 100
    for bad in ("nonsense", "%%%", lifecycle.encode_marker(3)[:-2] + "!!"):
        with pytest.raises(InvalidParameterValue, match="marker"):
            lifecycle.make_query(marker=bad)
    assert lifecycle.make_query(marker=lifecycle.encode_marker(7)).after == 7


def test_filters_match_case_sensitively():
    running = task(status=Status.IN_PROGRESS)
    assert lifecycle.make_query(filters=[{"Name": "status", "Values": ["in_progress"]}]).matches(running)
    assert not lifecycle.make_query(filters=[{"Name": "status", "Values": ["IN_PROGRESS"]}]).matches(running)
    assert lifecycle.make_query(filters=[{"Name": "source-type", "Values": ["CLUSTER"]}]).matches(running)


# --- The SQLite store --------------------------------------------------------------------------------------


@pytest.fixture
def store(tmp_path) -> SqliteTaskStore:
    return SqliteTaskStore(tmp_path / "tasks.sqlite3")


def create(store: SqliteTaskStore, identifier: str, source: str | None = None, **fields: object) -> ExportTask:
    return store.create(task(identifier, source or f"postgresql://{identifier}/db", **fields), ExportSettings())


def finish(store: SqliteTaskStore, identifier: str, status: Status = Status.COMPLETE) -> None:
    store.update(identifier, status=Status.IN_PROGRESS)
    store.update(identifier, status=status, task_end_time=datetime.now(UTC))


def test_an_identifier_is_unique_for_ever(store):
    create(store, "once")
    with pytest.raises(ExportTaskAlreadyExists) as caught:
        create(store, "once", source="postgresql://elsewhere/db")
    assert str(caught.value) == (
        "An error occurred (ExportTaskAlreadyExists) when calling the StartExportTask operation: "
        "The export task with the ID once already exists."
    )
    assert caught.value.http_status == 400
    for end in (Status.COMPLETE, Status.FAILED):
        create(store, f"ended-{end.value.lower()}")
        finish(store, f"ended-{end.value.lower()}", end)
        with pytest.raises(ExportTaskAlreadyExists):
            create(store, f"ended-{end.value.lower()}")
    create(store, "canceled")
    store.cancel("canceled")
    store.update("canceled", status=Status.CANCELED)
    with pytest.raises(ExportTaskAlreadyExists):
        create(store, "canceled")


def test_many_first_openings_of_one_state_file_at_once_all_succeed(tmp_path):
    """Switching a new file to WAL makes SQLite answer "locked" at once; seen as 3 failures in 2,400 openings."""
    failures: list[BaseException] = []
    for round_ in range(150):
        path = tmp_path / str(round_) / "tasks.sqlite3"
        barrier = threading.Barrier(16)

        def opener(path=path, barrier=barrier):
            barrier.wait(timeout=60)
            try:
                SqliteTaskStore(path)
            except Exception as exc:
                failures.append(exc)

        threads = [threading.Thread(target=opener) for _ in range(16)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert failures == []


def test_concurrent_creates_of_one_identifier_register_it_once(tmp_path):
    path = tmp_path / "race" / "tasks.sqlite3"  # created by the racers themselves
    barrier = threading.Barrier(8)
    outcomes: list[str] = []

    def racer(n: int) -> None:
        racing = SqliteTaskStore(path, max_unfinished=100)  # eight first openings of one file at once
        barrier.wait(timeout=60)  # a racer that died breaks the barrier instead of hanging the others
        try:
            racing.create(task("same", f"postgresql://h/{n}"), ExportSettings())
            outcomes.append("created")
        except ExportTaskAlreadyExists:
            outcomes.append("exists")

    threads = [threading.Thread(target=racer, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == ["created"] + ["exists"] * 7


def test_one_unfinished_export_per_source(store):
    create(store, "first", source="postgresql://h/db")
    for status in (Status.STARTING, Status.IN_PROGRESS, Status.CANCELING):
        if status == Status.IN_PROGRESS:
            store.update("first", status=Status.IN_PROGRESS)
        if status == Status.CANCELING:
            store.cancel("first")
        with pytest.raises(InvalidExportSourceState) as caught:
            create(store, "second", source="postgresql://h/db")
        assert "postgresql://h/db" in str(caught.value) and "first" in str(caught.value)
        assert caught.value.code == "InvalidExportSourceState"
    store.update("first", status=Status.CANCELED)
    create(store, "second", source="postgresql://h/db")  # the source is free again


@pytest.mark.parametrize("spelling", ONE_SERVER[1:])
def test_one_source_is_one_source_however_it_is_spelled(store, spelling):
    first = create(store, "first", source=ONE_SERVER[0])
    with pytest.raises(InvalidExportSourceState, match=r"first \(STARTING\).*postgresql://localhost:5432") as caught:
        create(store, "second", source=redact(spelling))
    assert "pw" not in str(caught.value)
    for n, other in enumerate(OTHER_SERVERS):
        create(store, f"other{n}", source=other)
    assert store.get("first") == first and store.get("first").source_arn == ONE_SERVER[0]  # kept as given


def test_a_state_file_from_before_source_identities_gets_them(tmp_path):
    path = tmp_path / "tasks.sqlite3"
    with closing(sqlite3.connect(path)) as db, db:
        db.executescript(
            """CREATE TABLE export_tasks (position INTEGER PRIMARY KEY AUTOINCREMENT, identifier TEXT NOT NULL UNIQUE,
            source_arn TEXT NOT NULL, status TEXT NOT NULL, record TEXT NOT NULL, settings TEXT NOT NULL,
            runner_pid INTEGER, heartbeat REAL);"""
        )
        old = task("old", "postgres://u@localhost/db")
        db.execute(
            "INSERT INTO export_tasks (identifier, source_arn, status, record, settings) VALUES (?, ?, ?, ?, ?)",
            ["old", old.source_arn, old.status.value, old.model_dump_json(), ExportSettings().model_dump_json()],
        )
    store = SqliteTaskStore(path)
    with pytest.raises(InvalidExportSourceState, match="old"):
        create(store, "new", source="postgresql://127.0.0.1:5432/")
    assert store.get("old") == old


def test_at_most_max_unfinished_exports_in_all(tmp_path):
    store = SqliteTaskStore(tmp_path / "tasks.sqlite3", max_unfinished=3)
    for n in range(3):
        create(store, f"t{n}")
    with pytest.raises(InvalidExportSourceState, match=r"already 3 unfinished export tasks.*\(3\)"):
        create(store, "t3")
    finish(store, "t0")
    create(store, "t3")
    store.cancel("t1")  # CANCELING still counts
    with pytest.raises(InvalidExportSourceState):
        create(store, "t4")
    # The default is 5.
    default = SqliteTaskStore(tmp_path / "other.sqlite3")
    for n in range(5):
        create(default, f"d{n}")
    with pytest.raises(InvalidExportSourceState, match="already 5"):
        create(default, "d5")


def test_unknown_identifiers_are_export_task_not_found(store):
    with pytest.raises(ExportTaskNotFound) as caught:
        store.get("nope")
    assert caught.value.http_status == 404
    with pytest.raises(ExportTaskNotFound, match="CancelExportTask operation: .*nope"):
        store.cancel("nope")
    with pytest.raises(ExportTaskNotFound, match="DescribeExportTasks"):
        store.describe(lifecycle.make_query(identifier="nope"))


def test_describe_pages_through_the_tasks_in_start_order(store):
    for n in range(45):
        create(store, f"p{n:02d}")
        finish(store, f"p{n:02d}")
    seen: list[str] = []
    marker = None
    pages = []
    while True:
        tasks, marker = store.describe(lifecycle.make_query(max_records=20, marker=marker))
        pages.append(len(tasks))
        seen += [t.export_task_identifier for t in tasks]
        if marker is None:
            break
    assert pages == [20, 20, 5]
    assert seen == [f"p{n:02d}" for n in range(45)]


def test_an_unclaimed_task_stays_starting_only_during_the_grace_period(store):
    create(store, "fresh", task_start_time=datetime.now(UTC) - timedelta(seconds=5))
    create(store, "stale", task_start_time=datetime.now(UTC) - timedelta(minutes=10))
    ended = store.fail_dead_runners()
    assert [t.export_task_identifier for t in ended] == ["stale"]
    assert store.get("fresh").status == Status.STARTING
    stale = store.get("stale")
    assert stale.status == Status.FAILED
    assert stale.task_end_time is not None
    assert "pid None" not in (stale.failure_cause or "")
    assert "never started" in (stale.failure_cause or "")


def dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def zombie_pid() -> tuple[int, subprocess.Popen[bytes]]:
    """A child that exited and that nobody has reaped yet (as under a container's init that reaps nothing)."""
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    os.waitid(os.P_PID, process.pid, os.WEXITED | os.WNOWAIT)  # exited, still in the process table
    return process.pid, process


def test_a_task_whose_runner_died_ends_failed_or_canceled(store):
    create(store, "running")
    create(store, "canceling")
    create(store, "zombie")
    create(store, "alive")
    pid, zombie = zombie_pid()
    store.claim("running", dead_pid())
    store.update("running", status=Status.IN_PROGRESS, percent_progress=30)
    store.claim("canceling", dead_pid())
    store.cancel("canceling")
    store.claim("zombie", pid)
    store.claim("alive", os.getpid())
    try:
        ended = {t.export_task_identifier: t for t in store.fail_dead_runners()}
    finally:
        zombie.wait()
    assert set(ended) == {"running", "canceling", "zombie"}
    running = store.get("running")
    assert running.status == Status.FAILED
    assert "stopped before the export ended" in (running.failure_cause or "")
    assert running.percent_progress == 30
    assert store.get("canceling").status == Status.CANCELED
    assert store.get("zombie").status == Status.FAILED
    assert store.get("alive").status == Status.STARTING
    assert store.fail_dead_runners() == []  # each ends once


def test_a_runner_that_stopped_heartbeating_is_taken_for_dead(store, monkeypatch):
    create(store, "hung")
    store.claim("hung", os.getpid())
    import dbexport.tasks.sqlite as sqlite_store

    monkeypatch.setattr(sqlite_store, "STALE_AFTER_SECONDS", -1.0)
    assert [t.export_task_identifier for t in store.fail_dead_runners()] == ["hung"]


def test_a_task_is_claimed_by_one_runner_only(store):
    create(store, "claimed")
    assert store.claim("claimed", os.getpid()) == Status.STARTING
    assert store.claim("claimed", os.getpid() + 1) is None  # another runner does not run it again
    finish(store, "claimed")
    create(store, "ended")
    finish(store, "ended", Status.FAILED)
    assert store.claim("ended", os.getpid()) is None


# --- run_task: the runner's side of the lifecycle ----------------------------------------------------------


@pytest.fixture
def state(tmp_path) -> StateDir:
    return StateDir(tmp_path / "state")


def test_a_task_canceled_before_its_runner_started_ends_canceled_without_exporting(state):
    store = state.store()
    create(store, "early")
    store.cancel("early")
    ended = run_task(store, state, "early", "postgresql://nobody@127.0.0.1:1/db")  # never connects
    assert ended.status == Status.CANCELED and ended.task_end_time is not None
    (event,) = [json.loads(line) for line in state.events.read_text().splitlines()]
    assert event["detail"]["EventID"] == "RDS-EVENT-0235"
    assert (event["detail"]["ExportedRows"], event["detail"]["ExportedBytes"]) == (0, 0)


def test_a_finished_task_is_not_run_again(state):
    store = state.store()
    create(store, "done")
    finish(store, "done")
    assert run_task(store, state, "done", "postgresql://nobody@127.0.0.1:1/db").status == Status.COMPLETE
    assert not state.events.exists()  # its event was the first runner's


def test_a_failure_before_the_export_starts_fails_the_task(state):
    store = state.store()
    store.create(
        ExportTask(
            export_task_identifier="no-client",
            source_arn="postgresql://nobody@127.0.0.1:1/db",
            s3_bucket="some-bucket",
            task_start_time=datetime.now(UTC),
        ),
        ExportSettings(),
    )
    ended = run_task(store, state, "no-client", "postgresql://nobody@127.0.0.1:1/db", endpoint_url="not a url")
    assert ended.status == Status.FAILED
    assert ended.failure_cause and ended.task_end_time is not None
    assert store.fail_dead_runners() == []  # ended by its runner, not left for recovery
    (event,) = [json.loads(line) for line in state.events.read_text().splitlines()]
    assert event["detail"]["EventID"] == "RDS-EVENT-0234"


def test_events_are_appended_whole_by_concurrent_writers(state):
    finished = task("big", status=Status.COMPLETE, warning_message="w" * 20_000)

    def write() -> None:
        for _ in range(20):
            state.append_event(task_event(finished, 1, 2))

    writers = [threading.Thread(target=write) for _ in range(4)]
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join()
    lines = state.events.read_text().splitlines()
    assert len(lines) == 80
    assert all(json.loads(line)["detail"]["ExportTask"]["WarningMessage"] == "w" * 20_000 for line in lines)
