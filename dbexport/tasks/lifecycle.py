"""The export task's lifecycle: statuses, transitions, limits, DescribeExportTasks filters (pure).

Every store (SQLite locally, DynamoDB on AWS) applies these same rules.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from dbexport.errors import (
    ExportTaskNotFound,
    InvalidExportSourceState,
    InvalidExportTaskStateFault,
    InvalidParameterValue,
)
from dbexport.models import Status
from dbexport.urls import source_identity

if TYPE_CHECKING:
    from collections.abc import Iterable

    from dbexport.models import ExportTask

UNFINISHED = frozenset({Status.STARTING, Status.IN_PROGRESS, Status.CANCELING})
FINISHED = frozenset({Status.COMPLETE, Status.FAILED, Status.CANCELED})
_NEXT = {
    Status.STARTING: {Status.IN_PROGRESS, Status.FAILED, Status.CANCELING},
    Status.IN_PROGRESS: {Status.COMPLETE, Status.FAILED, Status.CANCELING},
    # Once a cancel is asked for, the task ends CANCELED whatever its runner was about to report.
    Status.CANCELING: {Status.CANCELED},
}
DEFAULT_MAX_UNFINISHED = 5
MIN_RECORDS, MAX_RECORDS = 20, 100
# What a runner may change; the request's fields stay as they were started.
RUNNER_FIELDS = frozenset(
    {
        "status",
        "snapshot_time",
        "task_end_time",
        "percent_progress",
        "total_extracted_data_in_gb",
        "failure_cause",
        "warning_message",
    }
)
FILTER_NAMES = ("export-task-identifier", "s3-bucket", "source-arn", "status", "source-type")


def check_can_start(task: ExportTask, unfinished: Iterable[tuple[str, ExportTask]], max_unfinished: int) -> None:
    """One unfinished export per source, whatever its spelling; at most `max_unfinished` in all.

    `unfinished` holds each unfinished task with its source's identity, as the store keeps it (see source_identity).
    """
    unfinished = list(unfinished)
    source = source_identity(task.source_arn)
    for identity, other in unfinished:
        if identity == source:
            spelled = "" if other.source_arn == task.source_arn else f" (its source: {other.source_arn})"
            raise InvalidExportSourceState(
                f"The source {task.source_arn} already has an unfinished export task, "
                f"{other.export_task_identifier} ({other.status.value}){spelled}: one export at a time per server "
                f"({source}), whichever database, user or form of its address. Wait for it to finish or cancel it."
            )
    if len(unfinished) >= max_unfinished:
        raise InvalidExportSourceState(
            f"There are already {len(unfinished)} unfinished export tasks, the most allowed at once "
            f"({max_unfinished}). Wait for one to finish or cancel one."
        )


def already_exists(identifier: str) -> str:
    return f"The export task with the ID {identifier} already exists."


def not_found(identifier: str, operation: str) -> ExportTaskNotFound:
    return ExportTaskNotFound(f"The export task with the ID {identifier} doesn't exist.", operation)


def percent_progress(done_bytes: int, planned_bytes: int) -> int:
    """PercentProgress from the planned bytes of the partitions done; 100 belongs to COMPLETE, after verification."""
    return min(99, done_bytes * 100 // planned_bytes) if planned_bytes > 0 else 0


def advance(current: ExportTask, changes: dict[str, Any]) -> ExportTask:
    """Apply a runner's update under the lifecycle rules.

    A finished task never changes again; a status may only move forward; CANCELING keeps its
    status while progress still counts; PercentProgress never goes back.
    """
    if current.status in FINISHED:
        return current
    changes = {k: v for k, v in changes.items() if k in RUNNER_FIELDS}
    status = changes.get("status")
    if current.status == Status.CANCELING and status is not None:
        # However the runner ended, the user asked for a cancel: the task ends CANCELED.
        changes.pop("failure_cause", None)
        changes["status"] = Status.CANCELED if status in FINISHED else Status.CANCELING
    elif status is not None and status != current.status and status not in _NEXT[current.status]:
        raise ValueError(f"an export task can't go from {current.status.value} to {status}")
    if "percent_progress" in changes:
        changes["percent_progress"] = max(current.percent_progress, int(changes["percent_progress"]))
    return current.model_copy(update=changes)


def cancel(current: ExportTask) -> ExportTask:
    """CancelExportTask: an unfinished task moves to CANCELING; a finished one can't be canceled."""
    if current.status not in UNFINISHED:
        raise InvalidExportTaskStateFault(
            f"The export task with the ID {current.export_task_identifier} is {current.status.value} "
            "and can't be canceled.",
            "CancelExportTask",
        )
    if current.status == Status.CANCELING:
        return current
    return current.model_copy(update={"status": Status.CANCELING})


@dataclass(frozen=True)
class Query:
    """DescribeExportTasks' input, checked."""

    identifier: str | None = None
    source_arn: str | None = None
    source_type: str | None = None
    filters: tuple[tuple[str, frozenset[str]], ...] = ()
    max_records: int = MAX_RECORDS
    after: int = 0  # the position the Marker points past

    def matches(self, task: ExportTask) -> bool:
        fields = {
            "export-task-identifier": task.export_task_identifier,
            "s3-bucket": task.s3_bucket,
            "source-arn": task.source_arn,
            "status": task.status.value.lower(),
            "source-type": task.source_type,
        }
        return (
            (self.identifier is None or task.export_task_identifier == self.identifier)
            and (self.source_arn is None or task.source_arn == self.source_arn)
            and (self.source_type is None or task.source_type == self.source_type)
            and all(fields[name] in values for name, values in self.filters)
        )


def make_query(
    identifier: str | None = None,
    source_arn: str | None = None,
    source_type: str | None = None,
    filters: list[dict[str, Any]] | None = None,
    max_records: int | None = None,
    marker: str | None = None,
) -> Query:
    """Check DescribeExportTasks' parameters as RDS does: case-sensitive filters, no wildcards."""
    op = "DescribeExportTasks"
    checked = []
    for item in filters or []:
        if not isinstance(item, dict):
            raise InvalidParameterValue(f"A filter is an object with Name and Values, not {item!r}.", op)
        name, values = item.get("Name"), item.get("Values")
        if name not in FILTER_NAMES:
            raise InvalidParameterValue(
                f"Unrecognized filter name: {name}. Valid filters: {', '.join(FILTER_NAMES)}.", op
            )
        # A string is not a list of values: "complete" would otherwise match the statuses c, o, m, ...
        if not isinstance(values, list) or not values or not all(isinstance(v, str) for v in values):
            raise InvalidParameterValue(f"The filter {name} needs at least one value, as a list of strings.", op)
        checked.append((name, frozenset(values)))
    if source_type not in (None, "SNAPSHOT", "CLUSTER"):
        raise InvalidParameterValue(f"SourceType must be SNAPSHOT or CLUSTER, not {source_type}.", op)
    if max_records is not None and not MIN_RECORDS <= max_records <= MAX_RECORDS:
        raise InvalidParameterValue(
            f"MaxRecords must be between {MIN_RECORDS} and {MAX_RECORDS}, not {max_records}.", op
        )
    return Query(
        identifier=identifier,
        source_arn=source_arn,
        source_type=source_type,
        filters=tuple(checked),
        max_records=max_records or MAX_RECORDS,
        after=decode_marker(marker) if marker else 0,
    )


def encode_marker(position: int) -> str:
    return base64.urlsafe_b64encode(f"after:{position}".encode()).decode()


# SQLite's largest INTEGER: no task is past it.
_MAX_POSITION = 2**63 - 1
_MAX_MARKER_SHOWN = 60


def decode_marker(marker: str) -> int:
    try:
        text = base64.urlsafe_b64decode(marker.encode()).decode()
        kind, _, position = text.partition(":")
        if kind == "after" and 0 <= (after := int(position)) <= _MAX_POSITION:
            return after
    except ValueError:
        pass
    # A marker is pasted back from our own output: one that is not ours is quoted short.
    shown = marker if len(marker) <= _MAX_MARKER_SHOWN else marker[:_MAX_MARKER_SHOWN] + "..."
    raise InvalidParameterValue(f"The marker {shown!r} is not valid.", "DescribeExportTasks")
