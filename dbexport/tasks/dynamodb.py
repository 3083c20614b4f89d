"""Export task records in DynamoDB: the AWS runtime's store, safe with thousands of Lambdas at once.

One table, partition key `pk` and sort key `sk` (both strings), holds three kinds of item:

- the task, `pk = task#<identifier>`, `sk = task`: the ExportTask and its settings as JSON, its start
  position, a `version` for optimistic locking, the plan (`planned_bytes`, `partitions`) and the counters
  that workers ADD to (`done_bytes`, `written_bytes`, `partitions_done`);
- one item per finished partition, `pk = task#<identifier>`, `sk = partition#<target>#<index>`: its
  PartitionResult, so that workers never contend on a read-modify-write of the task;
- the registry, `pk = registry`, `sk = unfinished`: the unfinished tasks (identifier -> source, its identity
  and status), the next start position and a `version`. Every create is one transaction of the task's conditional put
  and the registry's versioned put, so the limits hold however many creates race; every status change
  updates the registry in the same transaction as the task, and a finished task leaves it there.

The lifecycle rules themselves are lifecycle.py's, shared with the SQLite store.
"""

from __future__ import annotations

import random
import time
import uuid
from typing import TYPE_CHECKING, Any, TypeVar

import boto3
from botocore.exceptions import ClientError

from dbexport.errors import ExportTaskAlreadyExists, RetryableError
from dbexport.models import GIB, ExportSettings, ExportTask, PartitionResult, Status
from dbexport.tasks import lifecycle
from dbexport.urls import source_identity

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

Item = dict[str, Any]
T = TypeVar("T")

TASK_SK = "task"
PARTITION_PREFIX = "partition#"
REGISTRY_KEY: Item = {"pk": {"S": "registry"}, "sk": {"S": "unfinished"}}

# Lost races are retried with full jitter: a random sleep up to base * 2**attempt, at most the cap.
MAX_ATTEMPTS = 40
BACKOFF_BASE_SECONDS = 0.005
BACKOFF_CAP_SECONDS = 0.5

# Why DynamoDB refused a write that a fresh read may make succeed.
_CONFLICTS = frozenset({"ConditionalCheckFailedException", "TransactionConflictException"})
# Why DynamoDB cancelled a transaction that may commit when tried again (others, like ValidationError, are bugs).
_CANCELLATIONS_TO_RETRY = frozenset(
    {"None", "ConditionalCheckFailed", "TransactionConflict", "ThrottlingError", "ProvisionedThroughputExceeded"}
)


def task_key(identifier: str) -> Item:
    return {"pk": {"S": f"task#{identifier}"}, "sk": {"S": TASK_SK}}


def partition_sk(result: PartitionResult) -> str:
    return f"{PARTITION_PREFIX}{result.target}#{result.partition_index}"


class _Retry(Exception):
    """Another writer got there first: read again and retry."""


class DynamoDbTaskStore:
    """Task records in one DynamoDB table; the same methods and rules as SqliteTaskStore."""

    def __init__(
        self, table_name: str, max_unfinished: int = lifecycle.DEFAULT_MAX_UNFINISHED, client: Any = None
    ) -> None:
        self.table_name = table_name
        self.max_unfinished = max_unfinished
        self.client = client if client is not None else boto3.client("dynamodb")

    # --- The API shared with SqliteTaskStore ---------------------------------------------------------------

    def create(self, task: ExportTask, settings: ExportSettings) -> ExportTask:
        """Register a new task: unique identifier for ever, one unfinished per source, a global limit.

        One transaction puts the task (only if its identifier was never used) and the registry (only if
        nobody changed it since it was read), so two creates can't both pass the limits.
        """
        identifier = task.export_task_identifier
        if self._read(task_key(identifier), ["pk"]) is not None:
            raise ExportTaskAlreadyExists(lifecycle.already_exists(identifier))

        def attempt() -> ExportTask:
            registry = self._read(REGISTRY_KEY)
            unfinished = _registered(registry)
            if identifier in unfinished:
                raise ExportTaskAlreadyExists(lifecycle.already_exists(identifier))
            lifecycle.check_can_start(task, _placeholders(unfinished), self.max_unfinished)
            version = _number(registry, "version")
            position = _number(registry, "next_position") + 1
            if task.status in lifecycle.UNFINISHED:
                unfinished[identifier] = _entry(task)
            item = {
                **task_key(identifier),
                "identifier": {"S": identifier},
                "source_arn": {"S": task.source_arn},
                "source_identity": {"S": source_identity(task.source_arn)},
                "status": {"S": task.status.value},
                "position": {"N": str(position)},
                "version": {"N": "1"},
                "record": {"S": task.model_dump_json()},
                "settings": {"S": settings.model_dump_json()},
            }
            registry_item = {
                **REGISTRY_KEY,
                "version": {"N": str(version + 1)},
                "next_position": {"N": str(position)},
                "tasks": {"M": {key: {"M": entry} for key, entry in unfinished.items()}},
            }
            registry_check = (
                {"ConditionExpression": "attribute_not_exists(pk)"}
                if registry is None
                else {
                    "ConditionExpression": "#version = :version",
                    "ExpressionAttributeNames": {"#version": "version"},
                    "ExpressionAttributeValues": {":version": {"N": str(version)}},
                }
            )
            reasons = self._transact(
                [
                    {"Put": {"Item": item, "ConditionExpression": "attribute_not_exists(pk)"}},
                    {"Put": {"Item": registry_item, **registry_check}},
                ]
            )
            if reasons is None:
                return task
            if reasons[0] == "ConditionalCheckFailed":
                raise ExportTaskAlreadyExists(lifecycle.already_exists(identifier))
            raise _Retry

        return _retrying(attempt, f"register the export task {identifier}")

    def get(self, identifier: str, operation: str = "DescribeExportTasks") -> ExportTask:
        return _task(self._task_item(identifier, operation))

    def settings(self, identifier: str) -> ExportSettings:
        item = self._read(task_key(identifier), ["settings"])
        if item is None:
            raise lifecycle.not_found(identifier, "DescribeExportTasks")
        return ExportSettings.model_validate_json(item["settings"]["S"])

    def update(self, identifier: str, **changes: Any) -> ExportTask:
        """A runner's progress or end, under the lifecycle rules (a cancel wins over progress)."""

        def attempt() -> ExportTask:
            item = self._task_item(identifier, "UpdateExportTask")
            current = _task(item)
            return self._write(item, current, lifecycle.advance(current, changes))

        return _retrying(attempt, f"update the export task {identifier}")

    def cancel(self, identifier: str) -> ExportTask:
        def attempt() -> ExportTask:
            item = self._task_item(identifier, "CancelExportTask")
            current = _task(item)
            return self._write(item, current, lifecycle.cancel(current))

        return _retrying(attempt, f"cancel the export task {identifier}")

    def describe(self, query: lifecycle.Query) -> tuple[list[ExportTask], str | None]:
        """DescribeExportTasks: matching tasks in start order, a page at a time."""
        if query.identifier is not None:
            items: list[Item] = [self._task_item(query.identifier, "DescribeExportTasks")]
        else:
            items = list(self._task_items())
        matching = sorted(
            (position, task)
            for item in items
            if (position := _number(item, "position")) > query.after and query.matches(task := _task(item))
        )
        page = matching[: query.max_records]
        marker = lifecycle.encode_marker(page[-1][0]) if len(matching) > len(page) else None
        return [task for _, task in page], marker

    # --- The fan-out: plan, per-partition results, progress ------------------------------------------------

    def set_plan(self, identifier: str, planned_bytes: int, partitions: int) -> None:
        """Record what the export plans to copy; PercentProgress is measured against it.

        A new plan never lowers the PercentProgress already reported: the progress under the old plan
        becomes a floor. The write is conditional on the counters it read, so a partition recorded
        meanwhile is not lost from that floor.
        """

        def attempt() -> None:
            item = self._task_item(identifier, "PlanExport")
            floor = max(_number(item, "progress_floor"), _derived_percent(item))
            names = {"#planned": "planned_bytes", "#partitions": "partitions", "#floor": "progress_floor"}
            values = {
                ":planned": {"N": str(planned_bytes)},
                ":partitions": {"N": str(partitions)},
                ":floor": {"N": str(floor)},
            }
            condition = _unchanged(item, ("planned_bytes", "done_bytes"), names, values)
            self._update(
                task_key(identifier),
                "SET #planned = :planned, #partitions = :partitions, #floor = :floor",
                f"attribute_exists(pk) AND {condition}",
                names,
                values,
            )

        _retrying(attempt, f"record the plan of the export task {identifier}")

    def record_partition(self, identifier: str, result: PartitionResult, estimated_bytes: int) -> ExportTask:
        """Count one finished partition, once, however many workers or retries report it.

        The result is its own item, put only if absent, and the same transaction ADDs to the task's
        counters: concurrent workers never read-modify-write the task. A retried partition whose result
        differs (its objects were written again) replaces the stored result; its bytes still count once.
        """

        key = {"pk": {"S": f"task#{identifier}"}, "sk": {"S": partition_sk(result)}}
        stored = {"S": result.model_dump_json()}
        # Most calls are a partition's first: put it if absent, and look only when it was there.
        look = False

        def attempt() -> None:
            nonlocal look
            put: Item = {"Item": {**key, "result": stored}, "ConditionExpression": "attribute_not_exists(pk)"}
            names = {"#done": "done_bytes", "#written": "written_bytes", "#count": "partitions_done"}
            add = "ADD #done :done, #written :written, #count :one"
            counted = {":done": estimated_bytes, ":written": result.bytes_written, ":one": 1}
            previous = self._read(key, ["result"]) if look else None
            if previous is not None:
                if previous["result"] == stored:
                    return  # counted already
                # A retried worker wrote the partition's objects again: its result replaces the first one.
                before = PartitionResult.model_validate_json(previous["result"]["S"])
                put["ConditionExpression"] = "#result = :previous"
                put["ExpressionAttributeNames"] = {"#result": "result"}
                put["ExpressionAttributeValues"] = {":previous": previous["result"]}
                names = {"#written": "written_bytes"}
                add = "ADD #written :written"
                counted = {":written": result.bytes_written - before.bytes_written}
            update: Item = {
                "Key": task_key(identifier),
                "UpdateExpression": add,
                "ConditionExpression": "attribute_exists(pk)",
                "ExpressionAttributeNames": names,
                "ExpressionAttributeValues": {name: {"N": str(value)} for name, value in counted.items()},
            }
            reasons = self._transact([{"Put": put}, {"Update": update}])
            if reasons is None:
                return
            if reasons[1] == "ConditionalCheckFailed":
                raise lifecycle.not_found(identifier, "ExportPartition")
            # Recorded meanwhile (by another worker, or by this call before a lost response), or a
            # transaction conflict: look at what is stored and try again.
            look = look or reasons[0] == "ConditionalCheckFailed"
            raise _Retry

        _retrying(attempt, f"record a partition of the export task {identifier}")
        return self.get(identifier, "ExportPartition")

    def partition_results(self, identifier: str) -> list[PartitionResult]:
        """Every recorded partition's result (a Query on the task's partition key, page by page)."""
        results = []
        found = False
        for item in self._pages(
            "query",
            KeyConditionExpression="pk = :pk",
            ExpressionAttributeValues={":pk": {"S": f"task#{identifier}"}},
            ProjectionExpression="sk, #result",
            ExpressionAttributeNames={"#result": "result"},
        ):
            if item["sk"]["S"] == TASK_SK:
                found = True
            elif item["sk"]["S"].startswith(PARTITION_PREFIX):
                results.append(PartitionResult.model_validate_json(item["result"]["S"]))
        if not found:
            raise lifecycle.not_found(identifier, "Finalize")
        return results

    # --- DynamoDB -----------------------------------------------------------------------------------------

    def _write(self, item: Item, current: ExportTask, task: ExportTask) -> ExportTask:
        """Store a task the lifecycle moved on, if nobody else did meanwhile (the version read must hold).

        A change of status updates the registry in the same transaction; a finished task leaves it.
        """
        if task.status == Status.COMPLETE:
            task = task.model_copy(update={"percent_progress": 100})
        if task == current:
            return task
        identifier = task.export_task_identifier
        version = _number(item, "version")
        update: Item = {
            "Key": task_key(identifier),
            "UpdateExpression": "SET #record = :record, #status = :status, #version = :next",
            "ConditionExpression": "#version = :version",
            "ExpressionAttributeNames": {"#record": "record", "#status": "status", "#version": "version"},
            "ExpressionAttributeValues": {
                ":record": {"S": task.model_dump_json()},
                ":status": {"S": task.status.value},
                ":version": {"N": str(version)},
                ":next": {"N": str(version + 1)},
            },
        }
        if task.status in lifecycle.FINISHED:
            # The task ends with the progress read: no partition may have counted since, or a get() in
            # between could have reported more than the task keeps.
            update["ConditionExpression"] += " AND " + _unchanged(
                item,
                ("planned_bytes", "progress_floor", "done_bytes", "written_bytes"),
                update["ExpressionAttributeNames"],
                update["ExpressionAttributeValues"],
            )
        if task.status == current.status:
            self._update(
                update["Key"],
                update["UpdateExpression"],
                update["ConditionExpression"],
                update["ExpressionAttributeNames"],
                update["ExpressionAttributeValues"],
            )
            return task
        registry: Item = {
            "Key": REGISTRY_KEY,
            "ExpressionAttributeNames": {"#tasks": "tasks", "#id": identifier, "#version": "version"},
            "ExpressionAttributeValues": {":one": {"N": "1"}},
            "ConditionExpression": "attribute_exists(pk)",
        }
        if task.status in lifecycle.FINISHED:
            registry["UpdateExpression"] = "REMOVE #tasks.#id ADD #version :one"
        else:
            registry["UpdateExpression"] = "SET #tasks.#id = :entry ADD #version :one"
            registry["ExpressionAttributeValues"][":entry"] = {"M": _entry(task)}
        if self._transact([{"Update": update}, {"Update": registry}]) is not None:
            raise _Retry
        return task

    def _task_item(self, identifier: str, operation: str) -> Item:
        item = self._read(task_key(identifier))
        if item is None:
            raise lifecycle.not_found(identifier, operation)
        return item

    def _read(self, key: Item, attributes: list[str] | None = None) -> Item | None:
        request: Item = {"TableName": self.table_name, "Key": key, "ConsistentRead": True}
        if attributes:
            request["ProjectionExpression"] = ", ".join(f"#a{n}" for n in range(len(attributes)))
            request["ExpressionAttributeNames"] = {f"#a{n}": name for n, name in enumerate(attributes)}
        item: Item | None = self.client.get_item(**request).get("Item")
        return item

    def _task_items(self) -> Iterator[Item]:
        """Every task item (a Scan: the table also holds partitions and the registry, filtered out)."""
        return self._pages(
            "scan",
            FilterExpression="sk = :task",
            ExpressionAttributeValues={":task": {"S": TASK_SK}},
            ProjectionExpression=", ".join(f"#{name}" for name in _TASK_ATTRIBUTES),
            ExpressionAttributeNames={f"#{name}": name for name in _TASK_ATTRIBUTES},
        )

    def _pages(self, operation: str, **request: Any) -> Iterator[Item]:
        call = getattr(self.client, operation)
        start: Item | None = None
        while True:
            page = call(
                TableName=self.table_name,
                ConsistentRead=True,
                **request,
                **({"ExclusiveStartKey": start} if start else {}),
            )
            yield from page.get("Items", [])
            start = page.get("LastEvaluatedKey")
            if not start:
                return

    def _update(self, key: Item, expression: str, condition: str, names: Item, values: Item) -> None:
        try:
            self.client.update_item(
                TableName=self.table_name,
                Key=key,
                UpdateExpression=expression,
                ConditionExpression=condition,
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=values,
            )
        except ClientError as exc:
            if exc.response["Error"]["Code"] in _CONFLICTS:
                raise _Retry from exc
            raise

    def _transact(self, operations: list[Item]) -> list[str] | None:
        """Run one transaction; None when it committed, else each operation's cancellation reason."""
        for operation in operations:
            next(iter(operation.values()))["TableName"] = self.table_name
        try:
            # The token makes botocore's own retries of a committed transaction succeed again, not fail.
            self.client.transact_write_items(TransactItems=operations, ClientRequestToken=str(uuid.uuid4()))
        except ClientError as exc:
            code = exc.response["Error"]["Code"]
            if code == "TransactionCanceledException":
                reasons = [r.get("Code", "None") for r in exc.response.get("CancellationReasons") or []]
                if reasons and set(reasons) <= _CANCELLATIONS_TO_RETRY:
                    return reasons
            if code in _CONFLICTS or code == "TransactionInProgressException":
                return ["TransactionConflict"] * len(operations)
            raise
        return None


_TASK_ATTRIBUTES = (
    "position",
    "record",
    "version",
    "planned_bytes",
    "done_bytes",
    "written_bytes",
    "progress_floor",
)


def _retrying(attempt: Callable[[], T], what: str) -> T:
    for n in range(MAX_ATTEMPTS):
        try:
            return attempt()
        except _Retry:
            time.sleep(random.uniform(0, min(BACKOFF_CAP_SECONDS, BACKOFF_BASE_SECONDS * 2**n)))
    raise RetryableError(f"Could not {what}: too many concurrent changes to it. Try again.")


def _number(item: Item | None, name: str) -> int:
    if item is None or name not in item:
        return 0
    return int(item[name]["N"])


def _unchanged(item: Item, attributes: tuple[str, ...], names: Item, values: Item) -> str:
    """A condition that the item's `attributes` still hold what was read (or are still absent)."""
    conditions = []
    for n, attribute in enumerate(attributes):
        names[f"#u{n}"] = attribute
        if attribute in item:
            values[f":u{n}"] = item[attribute]
            conditions.append(f"#u{n} = :u{n}")
        else:
            conditions.append(f"attribute_not_exists(#u{n})")
    return " AND ".join(conditions)


def _derived_percent(item: Item) -> int:
    return lifecycle.percent_progress(_number(item, "done_bytes"), _number(item, "planned_bytes"))


def _task(item: Item) -> ExportTask:
    """The stored task with its progress: measured from the counters while it runs, as it ended after."""
    task = ExportTask.model_validate_json(item["record"]["S"])
    if task.status == Status.COMPLETE:
        return task.model_copy(update={"percent_progress": 100})
    if task.status in lifecycle.FINISHED:
        return task  # a finished task never changes again: what it had when it ended
    percent = max(task.percent_progress, _number(item, "progress_floor"), _derived_percent(item))
    gb = max(task.total_extracted_data_in_gb, _number(item, "written_bytes") // GIB)
    return task.model_copy(update={"percent_progress": percent, "total_extracted_data_in_gb": gb})


def _entry(task: ExportTask) -> Item:
    return {
        "source_arn": {"S": task.source_arn},
        "source_identity": {"S": source_identity(task.source_arn)},
        "status": {"S": task.status.value},
    }


def _registered(registry: Item | None) -> dict[str, Item]:
    """The registry's unfinished tasks: identifier -> {source_arn, source_identity, status}."""
    if registry is None:
        return {}
    tasks: dict[str, Item] = registry["tasks"]["M"]
    return {identifier: entry["M"] for identifier, entry in tasks.items()}


def _placeholders(unfinished: dict[str, Item]) -> list[tuple[str, ExportTask]]:
    """The registry's entries as lifecycle.check_can_start looks at them: source identity, and task (source, status)."""
    return [
        (
            entry["source_identity"]["S"],
            ExportTask(
                export_task_identifier=identifier,
                source_arn=entry["source_arn"]["S"],
                status=Status(entry["status"]["S"]),
                s3_bucket="",
            ),
        )
        for identifier, entry in sorted(unfinished.items())
    ]
