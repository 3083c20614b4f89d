"""The AWS runtime's task store on DynamoDB (moto, in-process): the same rules as the SQLite store, under races.

moto's DynamoDB is not safe under threads: it checks conditions and writes in separate steps, and a
cancelled transaction restores a deep copy of the whole table taken before it began, undoing what other
threads wrote meanwhile. DynamoDB itself applies each request atomically, so the `dynamodb` fixture runs
moto's requests one at a time; the store's own reads and writes still interleave freely between threads.
The `conflicts` fixture adds what moto never does: transactions cancelled with TransactionConflict and
single writes refused with TransactionConflictException, as DynamoDB does when requests meet on an item.
"""

from __future__ import annotations

import queue
import random
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any
from unittest import mock

import boto3
import pytest
from moto import mock_aws
from moto.core.exceptions import JsonRESTError
from moto.dynamodb.exceptions import TransactionCanceledException
from moto.dynamodb.responses import DynamoHandler

from dbexport.errors import (
    ExportTaskAlreadyExists,
    ExportTaskNotFound,
    InvalidExportSourceState,
    InvalidExportTaskStateFault,
)
from dbexport.models import GIB, MIB, ExportSettings, ExportTask, PartitionResult, Status
from dbexport.tasks import lifecycle
from dbexport.tasks.dynamodb import REGISTRY_KEY, DynamoDbTaskStore, task_key
from dbexport.urls import redact
from tests.helpers import ONE_SERVER, OTHER_SERVERS

TABLE = "dbexport-export-tasks"


# --- Fixtures ----------------------------------------------------------------------------------------------


@pytest.fixture
def dynamodb(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """A moto DynamoDB client and the table, created as the stack creates it: pk/sk strings, on demand."""
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(name, value)
    one_at_a_time = threading.RLock()
    original = DynamoHandler.call_action

    def call_action(self: DynamoHandler) -> Any:
        with one_at_a_time:
            return original(self)

    with mock.patch.object(DynamoHandler, "call_action", call_action), mock_aws():
        client = boto3.client("dynamodb", region_name="us-east-1")
        client.create_table(
            TableName=TABLE,
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
            AttributeDefinitions=[
                {"AttributeName": "pk", "AttributeType": "S"},
                {"AttributeName": "sk", "AttributeType": "S"},
            ],
            BillingMode="PAY_PER_REQUEST",
        )
        yield client


@pytest.fixture
def store(dynamodb: Any) -> DynamoDbTaskStore:
    return DynamoDbTaskStore(TABLE, client=dynamodb)


@pytest.fixture
def conflicts(dynamodb: Any) -> Iterator[Counter[str]]:
    """About a third of transactions and single updates are refused as DynamoDB refuses colliding requests."""
    rng = random.Random(5)
    injected: Counter[str] = Counter()
    transact, update = DynamoHandler.transact_write_items, DynamoHandler.update_item

    def transact_write_items(self: DynamoHandler) -> Any:
        if rng.random() < 0.35:
            injected["transaction"] += 1
            items = self.body["TransactItems"]
            reasons: list[tuple[str | None, str | None, None]] = [(None, None, None)] * len(items)
            reasons[rng.randrange(len(items))] = ("TransactionConflict", "Transaction is ongoing for the item", None)
            raise TransactionCanceledException(reasons)
        return transact(self)

    def update_item(self: DynamoHandler) -> Any:
        if rng.random() < 0.35:
            injected["update"] += 1
            raise JsonRESTError("TransactionConflictException", "Transaction is ongoing for the item")
        return update(self)

    with (
        mock.patch.object(DynamoHandler, "transact_write_items", transact_write_items),
        mock.patch.object(DynamoHandler, "update_item", update_item),
        mock.patch("dbexport.tasks.dynamodb.BACKOFF_BASE_SECONDS", 0.001),
    ):
        yield injected


# --- Helpers -----------------------------------------------------------------------------------------------


def task(identifier: str, source: str | None = None, **fields: Any) -> ExportTask:
    fields.setdefault("task_start_time", datetime.now(UTC))
    return ExportTask(
        export_task_identifier=identifier,
        source_arn=source or f"arn:aws:rds:us-east-1:123456789012:cluster:{identifier}",
        s3_bucket="export-bucket",
        **fields,
    )


def create(store: DynamoDbTaskStore, identifier: str, source: str | None = None, **fields: Any) -> ExportTask:
    return store.create(task(identifier, source, **fields), ExportSettings())


def finish(store: DynamoDbTaskStore, identifier: str, status: Status = Status.COMPLETE) -> ExportTask:
    store.update(identifier, status=Status.IN_PROGRESS)
    return store.update(identifier, status=status, task_end_time=datetime.now(UTC))


def registry(client: Any) -> dict[str, str]:
    """The registry's unfinished tasks: identifier -> status."""
    item = client.get_item(TableName=TABLE, Key=REGISTRY_KEY, ConsistentRead=True).get("Item")
    if item is None:
        return {}
    return {identifier: entry["M"]["status"]["S"] for identifier, entry in item["tasks"]["M"].items()}


def every_task(store: DynamoDbTaskStore) -> list[ExportTask]:
    tasks, marker = store.describe(lifecycle.make_query())
    while marker is not None:
        more, marker = store.describe(lifecycle.make_query(marker=marker))
        tasks += more
    return tasks


def unfinished(store: DynamoDbTaskStore) -> dict[str, str]:
    return {t.export_task_identifier: t.status.value for t in every_task(store) if t.status in lifecycle.UNFINISHED}


def raw_task_item(client: Any, identifier: str) -> dict[str, Any]:
    item: dict[str, Any] = client.get_item(TableName=TABLE, Key=task_key(identifier), ConsistentRead=True)["Item"]
    return item


def counters(client: Any, identifier: str) -> tuple[int, int, int]:
    item = raw_task_item(client, identifier)
    return tuple(int(item.get(name, {"N": "0"})["N"]) for name in ("done_bytes", "written_bytes", "partitions_done"))  # type: ignore[return-value]


def result(index: int, bytes_written: int = MIB, target: str = "db.public.t") -> PartitionResult:
    return PartitionResult(
        target=target,
        partition_index=str(index),
        rows=index * 10,
        bytes_written=bytes_written,
        objects=[f"prefix/exp/db/public.t/{index}/part-00000-{index:08d}-c000.gz.parquet"],
    )


def run_at_once(count: int, work: Callable[[int], str]) -> Counter[str]:
    """Run `work(n)` in `count` threads released together; count what they return (or raise)."""
    barrier = threading.Barrier(count)
    outcomes: Counter[str] = Counter()
    lock = threading.Lock()

    def racer(n: int) -> None:
        barrier.wait()
        try:
            outcome = work(n)
        except Exception as exc:
            outcome = type(exc).__name__
        with lock:
            outcomes[outcome] += 1

    threads = [threading.Thread(target=racer, args=(n,)) for n in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return outcomes


class SmallPages:
    """A client whose Scans and Queries return a few items a page, so every caller must follow LastEvaluatedKey."""

    def __init__(self, client: Any, limit: int) -> None:
        self.client, self.limit = client, limit
        self.pages: Counter[str] = Counter()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.client, name)

    def scan(self, **request: Any) -> Any:
        self.pages["scan"] += 1
        return self.client.scan(Limit=self.limit, **request)

    def query(self, **request: Any) -> Any:
        self.pages["query"] += 1
        return self.client.query(Limit=self.limit, **request)


# --- Identifiers and limits --------------------------------------------------------------------------------


def test_an_identifier_is_unique_for_ever(store):
    create(store, "once")
    with pytest.raises(ExportTaskAlreadyExists) as caught:
        create(store, "once", source="arn:aws:rds:us-east-1:123456789012:cluster:elsewhere")
    assert str(caught.value) == (
        "An error occurred (ExportTaskAlreadyExists) when calling the StartExportTask operation: "
        "The export task with the ID once already exists."
    )
    assert caught.value.message == lifecycle.already_exists("once")
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
    # Refused creates leave nothing behind.
    assert [t.export_task_identifier for t in every_task(store)] == [
        "once",
        "ended-complete",
        "ended-failed",
        "canceled",
    ]


def test_one_unfinished_export_per_source(store, dynamodb):
    source = "arn:aws:rds:us-east-1:123456789012:cluster:db"
    create(store, "first", source=source)
    for status in (Status.STARTING, Status.IN_PROGRESS, Status.CANCELING):
        if status == Status.IN_PROGRESS:
            store.update("first", status=Status.IN_PROGRESS)
        if status == Status.CANCELING:
            store.cancel("first")
        assert registry(dynamodb) == {"first": status.value}
        with pytest.raises(InvalidExportSourceState) as caught:
            create(store, "second", source=source)
        assert source in str(caught.value) and f"first ({status.value})" in str(caught.value)
    store.update("first", status=Status.CANCELED)
    assert registry(dynamodb) == {}
    create(store, "second", source=source)  # the source is free again
    assert registry(dynamodb) == {"second": "STARTING"}


@pytest.mark.parametrize("spelling", ONE_SERVER[1:])
def test_one_source_is_one_source_however_it_is_spelled(store, dynamodb, spelling):
    create(store, "first", source=ONE_SERVER[0])
    with pytest.raises(InvalidExportSourceState, match=r"first \(STARTING\).*postgresql://localhost:5432"):
        create(store, "second", source=redact(spelling))
    for n, other in enumerate(OTHER_SERVERS):
        create(store, f"other{n}", source=other)
    assert store.get("first").source_arn == ONE_SERVER[0]  # kept as given
    item = dynamodb.get_item(TableName=TABLE, Key=REGISTRY_KEY, ConsistentRead=True)["Item"]
    assert item["tasks"]["M"]["first"]["M"]["source_identity"] == {"S": "postgresql://localhost:5432"}


def test_at_most_max_unfinished_exports_in_all(dynamodb):
    store = DynamoDbTaskStore(TABLE, max_unfinished=3, client=dynamodb)
    for n in range(3):
        create(store, f"t{n}")
    with pytest.raises(InvalidExportSourceState, match=r"already 3 unfinished export tasks.*\(3\)"):
        create(store, "t3")
    finish(store, "t0")
    create(store, "t3")
    store.cancel("t1")  # CANCELING still counts
    with pytest.raises(InvalidExportSourceState):
        create(store, "t4")
    finish(store, "t2", Status.FAILED)
    create(store, "t4")
    assert registry(dynamodb) == {"t1": "CANCELING", "t3": "STARTING", "t4": "STARTING"}


def test_the_default_limit_is_five(store):
    for n in range(5):
        create(store, f"d{n}")
    with pytest.raises(InvalidExportSourceState, match="already 5"):
        create(store, "d5")


def test_the_default_client_is_boto3s(dynamodb):
    store = DynamoDbTaskStore(TABLE)
    create(store, "default-client")
    assert DynamoDbTaskStore(TABLE, client=dynamodb).get("default-client").export_task_identifier == "default-client"


# --- Races -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("injected", [False, True], ids=["plain", "with-conflicts"])
def test_concurrent_creates_of_one_identifier_register_it_once(dynamodb, request, injected):
    if injected:
        request.getfixturevalue("conflicts")
    store = DynamoDbTaskStore(TABLE, max_unfinished=100, client=dynamodb)

    def work(n: int) -> str:
        store.create(task("same", f"arn:aws:rds:us-east-1:123456789012:cluster:c{n}"), ExportSettings())
        return "created"

    assert run_at_once(16, work) == {"created": 1, "ExportTaskAlreadyExists": 15}
    assert list(registry(dynamodb)) == ["same"]
    assert [t.export_task_identifier for t in every_task(store)] == ["same"]


@pytest.mark.parametrize("injected", [False, True], ids=["plain", "with-conflicts"])
def test_concurrent_creates_never_pass_the_limits(dynamodb, request, injected):
    if injected:
        request.getfixturevalue("conflicts")
    store = DynamoDbTaskStore(TABLE, max_unfinished=5, client=dynamodb)

    def everywhere(n: int) -> str:
        store.create(task(f"any-{n}"), ExportSettings())
        return "created"

    assert run_at_once(30, everywhere) == {"created": 5, "InvalidExportSourceState": 25}
    assert len(registry(dynamodb)) == 5
    assert registry(dynamodb) == unfinished(store)

    for identifier in list(registry(dynamodb)):
        finish(store, identifier)
    source = "arn:aws:rds:us-east-1:123456789012:cluster:one"

    def one_source(n: int) -> str:
        store.create(task(f"same-source-{n}", source), ExportSettings())
        return "created"

    assert run_at_once(12, one_source) == {"created": 1, "InvalidExportSourceState": 11}
    assert registry(dynamodb) == unfinished(store)


def test_creates_racing_ends_keep_the_registry_exact(dynamodb, conflicts):
    """Threads start, run and end tasks at once; the registry never holds more than the limit, and always
    ends up listing exactly the unfinished tasks."""
    store = DynamoDbTaskStore(TABLE, max_unfinished=4, client=dynamodb)
    stop = threading.Event()
    seen: list[int] = []

    def watch() -> None:
        while not stop.is_set():
            seen.append(len(registry(dynamodb)))

    watcher = threading.Thread(target=watch)
    watcher.start()

    def work(n: int) -> str:
        created = 0
        for round_ in range(6):
            identifier = f"churn-{n}-{round_}"
            try:
                store.create(task(identifier, f"arn:aws:rds:us-east-1:123456789012:cluster:c{n % 5}"), ExportSettings())
            except InvalidExportSourceState:
                continue
            created += 1
            if round_ % 3 == 0:
                store.cancel(identifier)
                store.update(identifier, status=Status.CANCELED)
            else:
                finish(store, identifier, Status.COMPLETE if round_ % 3 == 1 else Status.FAILED)
        return f"created {created}"

    try:
        outcomes = run_at_once(10, work)
    finally:
        stop.set()
        watcher.join()
    assert sum(outcomes.values()) == 10 and all(o.startswith("created") for o in outcomes)
    assert max(seen) <= 4
    assert registry(dynamodb) == {} == unfinished(store)
    tasks = every_task(store)
    assert len(tasks) == sum(int(o.split()[1]) * c for o, c in outcomes.items()) > 0
    assert all(t.status in lifecycle.FINISHED for t in tasks)
    positions = [int(raw_task_item(dynamodb, t.export_task_identifier)["position"]["N"]) for t in tasks]
    assert positions == sorted(set(positions))  # one position each, in start order
    assert conflicts["transaction"] > 0  # every status change here is a transaction


def test_concurrent_runner_updates_and_a_cancel(store, dynamodb, conflicts):
    """Runners report progress from many threads while a user cancels: no write is lost, the cancel wins."""
    create(store, "busy")
    store.update("busy", status=Status.IN_PROGRESS)

    def work(n: int) -> str:
        statuses = set()
        for step in range(10):
            if n == 0 and step == 3:
                statuses.add(store.cancel("busy").status.value)
            task = store.update("busy", status=Status.IN_PROGRESS, percent_progress=step * 10 + n % 10)
            statuses.add(task.status.value)
        return ",".join(sorted(statuses))

    outcomes = run_at_once(20, work)
    assert sum(outcomes.values()) == 20 and set(outcomes) <= {"IN_PROGRESS", "CANCELING", "CANCELING,IN_PROGRESS"}
    busy = store.get("busy")
    assert busy.status == Status.CANCELING  # no runner's update undid the cancel
    assert registry(dynamodb) == {"busy": "CANCELING"}
    assert busy.percent_progress == 99  # no update lost the highest progress
    assert conflicts["update"] > 0  # refused progress writes were retried
    assert store.update("busy", status=Status.COMPLETE).status == Status.CANCELED


# --- The lifecycle ----------------------------------------------------------------------------------------


def test_statuses_move_forward_only_and_request_fields_stay(store, dynamodb):
    create(store, "t", export_only=["db.public.a"])
    with pytest.raises(ValueError, match="STARTING to COMPLETE"):
        store.update("t", status=Status.COMPLETE)
    running = store.update("t", status=Status.IN_PROGRESS, percent_progress=10, s3_bucket="elsewhere")
    assert running.status == Status.IN_PROGRESS
    assert registry(dynamodb) == {"t": "IN_PROGRESS"}
    assert (running.s3_bucket, running.export_only) == ("export-bucket", ["db.public.a"])
    with pytest.raises(ValueError, match="IN_PROGRESS to STARTING"):
        store.update("t", status=Status.STARTING)
    assert store.update("t", percent_progress=5).percent_progress == 10
    store.update("t", warning_message="one table skipped")
    end = datetime.now(UTC)
    done = store.update("t", status=Status.COMPLETE, task_end_time=end)
    assert (done.status, done.percent_progress, done.task_end_time) == (Status.COMPLETE, 100, end)
    assert done.warning_message == "one table skipped"
    assert registry(dynamodb) == {}
    # A finished task never changes again.
    assert store.update("t", status=Status.FAILED, failure_cause="late") == done
    assert store.get("t") == done


def test_a_task_can_fail_from_starting_and_from_in_progress(store, dynamodb):
    create(store, "early")
    failed = store.update("early", status=Status.FAILED, failure_cause="The IAM role can't be assumed.")
    assert (failed.status, failed.failure_cause) == (Status.FAILED, "The IAM role can't be assumed.")
    create(store, "late")
    store.update("late", status=Status.IN_PROGRESS)
    assert store.update("late", status=Status.FAILED, failure_cause="x").status == Status.FAILED
    assert registry(dynamodb) == {}
    with pytest.raises(InvalidExportTaskStateFault, match="is FAILED and can't be canceled"):
        store.cancel("late")


@pytest.mark.parametrize("status", [Status.STARTING, Status.IN_PROGRESS])
@pytest.mark.parametrize("runner_end", [Status.COMPLETE, Status.FAILED, Status.CANCELED])
def test_cancel_is_canceling_then_canceled_whatever_the_runner_reports(store, dynamodb, status, runner_end):
    create(store, "c")
    if status == Status.IN_PROGRESS:
        store.update("c", status=Status.IN_PROGRESS, percent_progress=20)
    canceling = store.cancel("c")
    assert canceling.status == Status.CANCELING
    assert registry(dynamodb) == {"c": "CANCELING"}
    assert store.cancel("c") == canceling  # a second cancel changes nothing
    # The runner does not know yet: its progress still counts, the status stays CANCELING.
    still = store.update("c", status=Status.IN_PROGRESS, percent_progress=50)
    assert (still.status, still.percent_progress) == (Status.CANCELING, 50)
    ended = store.update("c", status=runner_end, failure_cause="the runner's view", task_end_time=datetime.now(UTC))
    assert (ended.status, ended.failure_cause, ended.percent_progress) == (Status.CANCELED, None, 50)
    assert store.get("c") == ended
    assert registry(dynamodb) == {}
    with pytest.raises(InvalidExportTaskStateFault) as caught:
        store.cancel("c")
    assert caught.value.operation == "CancelExportTask" and "CANCELED" in caught.value.message
    create(store, "next", source=ended.source_arn)  # the source is free again


def test_unknown_identifiers_are_export_task_not_found(store):
    with pytest.raises(ExportTaskNotFound) as caught:
        store.get("nope")
    assert caught.value.http_status == 404
    assert caught.value.message == "The export task with the ID nope doesn't exist."
    with pytest.raises(ExportTaskNotFound, match="CancelExportTask operation: .*nope"):
        store.cancel("nope")
    with pytest.raises(ExportTaskNotFound, match="DescribeExportTasks"):
        store.describe(lifecycle.make_query(identifier="nope"))
    with pytest.raises(ExportTaskNotFound):
        store.update("nope", status=Status.IN_PROGRESS)
    with pytest.raises(ExportTaskNotFound):
        store.settings("nope")
    with pytest.raises(ExportTaskNotFound):
        store.set_plan("nope", 100, 1)
    with pytest.raises(ExportTaskNotFound):
        store.record_partition("nope", result(1), 10)
    with pytest.raises(ExportTaskNotFound):
        store.partition_results("nope")
    # Nothing was written for the unknown task.
    assert store.client.scan(TableName=TABLE)["Count"] == 0


def test_settings_and_the_task_round_trip(store):
    settings = ExportSettings(
        type_mapping="typed",
        compression="zstd",
        partition_target_bytes=64 * MIB,
        max_file_bytes=10**9,
        row_group_rows=4096,
        workers=16,
        max_row_bytes=GIB,
        max_value_bytes=100 * MIB,
    )
    started = task(
        "round-trip",
        export_only=["db", "db.public.t"],
        s3_prefix="exports/nightly",
        iam_role_arn="arn:aws:iam::123456789012:role/export",
        kms_key_id="arn:aws:kms:us-east-1:123456789012:key/abc",
    )
    assert store.create(started, settings) == started
    assert store.settings("round-trip") == settings
    assert store.get("round-trip") == started
    assert store.describe(lifecycle.make_query(identifier="round-trip")) == ([started], None)


# --- Partitions, progress ---------------------------------------------------------------------------------


def test_record_partition_counts_each_partition_once(store, dynamodb):
    create(store, "p")
    store.update("p", status=Status.IN_PROGRESS)
    store.set_plan("p", planned_bytes=1000, partitions=4)
    first = store.record_partition("p", result(1, bytes_written=3 * GIB + 5), 250)
    assert (first.percent_progress, first.total_extracted_data_in_gb) == (25, 3)
    again = store.record_partition("p", result(1, bytes_written=3 * GIB + 5), 250)  # a retried worker
    assert again == first
    assert counters(dynamodb, "p") == (250, 3 * GIB + 5, 1)
    # A retry that wrote the partition's objects again: its result replaces the first, counted once.
    rewritten = result(1, bytes_written=4 * GIB)
    assert store.record_partition("p", rewritten, 250).total_extracted_data_in_gb == 4
    assert counters(dynamodb, "p") == (250, 4 * GIB, 1)
    assert store.partition_results("p") == [rewritten]
    # Partitions of different tables with the same index are different partitions.
    store.record_partition("p", result(1, target="db.public.u"), 250)
    assert counters(dynamodb, "p") == (500, 4 * GIB + MIB, 2)
    assert store.get("p").percent_progress == 50


@pytest.mark.parametrize("injected", [False, True], ids=["plain", "with-conflicts"])
def test_concurrent_workers_count_exactly(dynamodb, request, injected):
    """50 workers record 200 partitions, each reported twice (a retry), in any order, at once."""
    if injected:
        request.getfixturevalue("conflicts")
    store = DynamoDbTaskStore(TABLE, client=SmallPages(dynamodb, limit=13))
    create(store, "fan-out")
    store.update("fan-out", status=Status.IN_PROGRESS)
    results = [result(n, bytes_written=64 * MIB + n, target=f"db.public.t{n % 3}") for n in range(200)]
    estimated = {r.partition_index: 1000 + n for n, r in enumerate(results)}
    store.set_plan("fan-out", planned_bytes=sum(estimated.values()), partitions=len(results))
    work: queue.Queue[PartitionResult] = queue.Queue()
    for item in random.Random(3).sample(results * 2, k=400):
        work.put(item)
    percents: list[list[int]] = [[] for _ in range(50)]

    def worker(n: int) -> str:
        while True:
            try:
                item = work.get_nowait()
            except queue.Empty:
                return "done"
            percents[n].append(
                store.record_partition("fan-out", item, estimated[item.partition_index]).percent_progress
            )

    assert run_at_once(50, worker) == {"done": 50}
    assert counters(dynamodb, "fan-out") == (
        sum(estimated.values()),
        sum(r.bytes_written for r in results),
        200,
    )
    for seen in percents:
        assert seen == sorted(seen)  # what each worker saw never went back
    running = store.get("fan-out")
    assert (running.percent_progress, running.total_extracted_data_in_gb) == (99, 12)  # 99 until COMPLETE
    recorded = store.partition_results("fan-out")
    assert sorted(recorded, key=lambda r: int(r.partition_index)) == results
    assert store.client.pages["query"] > 200 // 13  # the Query was followed page after page
    assert store.update("fan-out", status=Status.COMPLETE).percent_progress == 100


def test_percent_progress_never_goes_back(store):
    create(store, "m")
    store.update("m", status=Status.IN_PROGRESS)
    assert store.get("m").percent_progress == 0  # no plan yet
    store.set_plan("m", planned_bytes=1000, partitions=4)
    reported = [store.record_partition("m", result(1), 250).percent_progress]
    reported.append(store.update("m", percent_progress=10).percent_progress)  # the runner's lower guess
    store.set_plan("m", planned_bytes=4000, partitions=16)  # planned again, bigger
    reported.append(store.get("m").percent_progress)
    for n in range(2, 17):
        reported.append(store.record_partition("m", result(n), 250).percent_progress)
    assert reported == sorted(reported)
    assert reported[:3] == [25, 25, 25]
    assert reported[-1] == 99  # everything counted, but not COMPLETE yet
    done = store.update("m", status=Status.COMPLETE, task_end_time=datetime.now(UTC))
    assert done.percent_progress == store.get("m").percent_progress == 100


@pytest.mark.parametrize("end", [Status.FAILED, Status.CANCELED])
def test_a_task_that_ended_keeps_its_progress(store, end):
    create(store, "f")
    store.update("f", status=Status.IN_PROGRESS)
    store.set_plan("f", planned_bytes=400, partitions=4)
    store.record_partition("f", result(1, bytes_written=2 * GIB), 100)
    store.record_partition("f", result(2, bytes_written=GIB), 100)
    if end == Status.CANCELED:
        store.cancel("f")
    ended = store.update("f", status=Status.FAILED, task_end_time=datetime.now(UTC))
    assert (ended.status, ended.percent_progress, ended.total_extracted_data_in_gb) == (end, 50, 3)
    # A worker that was still running reports its partition: recorded, but the ended task stays as it ended.
    assert store.record_partition("f", result(3, bytes_written=GIB), 100) == ended
    assert len(store.partition_results("f")) == 3


class RecordsWhileEnding:
    """A client on which, just before the task's ending transaction, another worker records a partition."""

    def __init__(self, client: Any, worker: Callable[[], object]) -> None:
        self.client, self.worker, self.ending_attempts = client, worker, 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.client, name)

    def transact_write_items(self, **request: Any) -> Any:
        ending = any(
            op.get("Update", {}).get("ExpressionAttributeValues", {}).get(":status", {}).get("S")
            in ("FAILED", "CANCELED")
            for op in request["TransactItems"]
        )
        if ending:
            self.ending_attempts += 1
            if self.ending_attempts == 1:
                self.worker()
        return self.client.transact_write_items(**request)


def test_a_partition_counted_while_the_task_ends_is_in_what_it_keeps(dynamodb):
    other = DynamoDbTaskStore(TABLE, client=dynamodb)
    seen: list[int] = []
    racing = RecordsWhileEnding(
        dynamodb, lambda: seen.append(other.record_partition("e", result(2), 300).percent_progress)
    )
    store = DynamoDbTaskStore(TABLE, client=racing)
    create(store, "e")
    store.update("e", status=Status.IN_PROGRESS)
    store.set_plan("e", planned_bytes=1000, partitions=3)
    store.record_partition("e", result(1, bytes_written=GIB), 300)
    ended = store.update("e", status=Status.FAILED, failure_cause="a partition failed")
    assert seen == [60]  # what a reader saw between the ending's read and its write
    assert racing.ending_attempts == 2  # the first ending write was refused: the counters had moved
    assert (ended.percent_progress, ended.total_extracted_data_in_gb) == (60, 1)
    assert store.get("e") == ended


# --- DescribeExportTasks ----------------------------------------------------------------------------------


def test_describe_pages_through_the_tasks_in_start_order(dynamodb):
    small = SmallPages(dynamodb, limit=7)
    store = DynamoDbTaskStore(TABLE, client=small)
    for n in range(45):
        create(store, f"p{n:02d}")
        finish(store, f"p{n:02d}", Status.FAILED if n % 4 == 0 else Status.COMPLETE)
        store.record_partition(f"p{n:02d}", result(1), 1)  # partition items share the table
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
    assert small.pages["scan"] > 3 * (90 // 7)  # each describe followed the Scan to its end

    failed = [f"p{n:02d}" for n in range(0, 45, 4)]
    query = lifecycle.make_query(filters=[{"Name": "status", "Values": ["failed"]}], max_records=20)
    tasks, marker = store.describe(query)
    assert [t.export_task_identifier for t in tasks] == failed and marker is None
    query = lifecycle.make_query(filters=[{"Name": "status", "Values": ["complete"]}], max_records=20)
    first, marker = store.describe(query)
    assert marker is not None
    rest, last = store.describe(lifecycle.make_query(filters=query_filters(query), max_records=20, marker=marker))
    assert last is None
    assert [t.export_task_identifier for t in first + rest] == [f"p{n:02d}" for n in range(45) if n % 4]


def query_filters(query: lifecycle.Query) -> list[dict[str, Any]]:
    return [{"Name": name, "Values": sorted(values)} for name, values in query.filters]


def test_describe_filters(store):
    create(store, "a", "arn:aws:rds:us-east-1:123456789012:cluster:one")
    finish(store, "a")
    create(store, "b", "arn:aws:rds:us-east-1:123456789012:cluster:one")
    create(store, "c", "arn:aws:rds:us-east-1:123456789012:cluster:two", s3_prefix="x")
    store.create(
        task("d", "arn:aws:rds:us-east-1:123456789012:cluster:three").model_copy(update={"s3_bucket": "other"}),
        ExportSettings(),
    )
    store.cancel("c")

    def ids(**parameters: Any) -> list[str]:
        tasks, marker = store.describe(lifecycle.make_query(**parameters))
        assert marker is None
        return [t.export_task_identifier for t in tasks]

    assert ids() == ["a", "b", "c", "d"]
    assert ids(identifier="b") == ["b"]
    assert ids(source_arn="arn:aws:rds:us-east-1:123456789012:cluster:one") == ["a", "b"]
    assert ids(source_type="CLUSTER") == ["a", "b", "c", "d"]
    assert ids(source_type="SNAPSHOT") == []
    assert ids(filters=[{"Name": "status", "Values": ["starting", "canceling"]}]) == ["b", "c", "d"]
    assert ids(filters=[{"Name": "status", "Values": ["STARTING"]}]) == []  # case-sensitive, as RDS
    assert ids(filters=[{"Name": "s3-bucket", "Values": ["other"]}]) == ["d"]
    assert ids(filters=[{"Name": "export-task-identifier", "Values": ["a", "c"]}]) == ["a", "c"]
    assert ids(
        source_arn="arn:aws:rds:us-east-1:123456789012:cluster:one",
        filters=[{"Name": "status", "Values": ["complete"]}],
    ) == ["a"]
    assert ids(identifier="a", filters=[{"Name": "status", "Values": ["failed"]}]) == []
    # The Marker points past a position: a task for an identifier before it is not repeated.
    position_of_b = int(store.client.get_item(TableName=TABLE, Key=task_key("b"))["Item"]["position"]["N"])
    assert ids(marker=lifecycle.encode_marker(position_of_b)) == ["c", "d"]
    assert ids(identifier="a", marker=lifecycle.encode_marker(position_of_b)) == []


# --- The table ---------------------------------------------------------------------------------------------


def test_the_items_in_the_table(store, dynamodb):
    create(store, "layout", "arn:aws:rds:us-east-1:123456789012:cluster:db")
    store.update("layout", status=Status.IN_PROGRESS)
    store.set_plan("layout", planned_bytes=100, partitions=2)
    store.record_partition("layout", result(7), 50)
    items = {(i["pk"]["S"], i["sk"]["S"]): i for i in dynamodb.scan(TableName=TABLE)["Items"]}
    assert set(items) == {
        ("task#layout", "task"),
        ("task#layout", "partition#db.public.t#7"),
        ("registry", "unfinished"),
    }
    task_item = items["task#layout", "task"]
    assert set(task_item) == {
        "pk",
        "sk",
        "identifier",
        "source_arn",
        "source_identity",
        "status",
        "position",
        "version",
        "record",
        "settings",
        "planned_bytes",
        "partitions",
        "progress_floor",
        "done_bytes",
        "written_bytes",
        "partitions_done",
    }
    assert task_item["status"] == {"S": "IN_PROGRESS"}
    assert task_item["version"] == {"N": "2"}  # created, then moved on once; partitions never touch it
    assert (task_item["planned_bytes"], task_item["partitions"]) == ({"N": "100"}, {"N": "2"})
    assert PartitionResult.model_validate_json(items["task#layout", "partition#db.public.t#7"]["result"]["S"]) == (
        result(7)
    )
    registry_item = items["registry", "unfinished"]
    assert registry_item["tasks"] == {
        "M": {
            "layout": {
                "M": {
                    "source_arn": {"S": "arn:aws:rds:us-east-1:123456789012:cluster:db"},
                    "source_identity": {"S": "arn:aws:rds:us-east-1:123456789012:cluster:db"},
                    "status": {"S": "IN_PROGRESS"},
                }
            }
        }
    }
    assert registry_item["next_position"] == {"N": "1"}
    assert registry_item["version"] == {"N": "2"}
