"""What each state of the state machine gets and gives: its event and its result (pydantic models).

The field names are the paths of ../../statemachine/export.asl.json (each state's Payload, ResultSelector and
the Map's ItemSelector); the handlers parse the event with Powertools' event_parser and dump the result as JSON.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field

from dbexport.events import task_event
from dbexport.models import (  # noqa: TC001 (pydantic reads them at run time)
    ExportRequestFields,
    ExportSettings,
    ExportTask,
    Partition,
    PartitionWork,
    StartExportTaskRequest,
    Status,
    TablePlan,
)
from dbexport.urls import EngineName  # noqa: TC001 (pydantic reads it at run time)

if TYPE_CHECKING:
    from datetime import datetime

    from dbexport.models import PartitionResult


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


# --- what states pass along -----------------------------------------------------------------------------------


class ExportRequest(ExportRequestFields):
    """The execution's input, as the user or a schedule gives it: StartExportTask's, in RDS's names.

    dbexport adds its optional `Settings`; a schedule gives `ExportTaskIdentifierPrefix` instead of an identifier,
    and each run gets its own.
    """

    export_task_identifier: str | None = None
    export_task_identifier_prefix: str | None = None
    settings: ExportSettings = Field(default_factory=ExportSettings)

    def start_request(self, now: datetime) -> StartExportTaskRequest:
        """StartExportTask's request, with the run's own identifier where a schedule gave a prefix."""
        identifier = self.export_task_identifier
        if identifier is None and self.export_task_identifier_prefix:
            identifier = f"{self.export_task_identifier_prefix}-{now:%Y%m%d-%H%M%S}"
        fields = self.model_dump(exclude={"export_task_identifier", "export_task_identifier_prefix", "settings"})
        return StartExportTaskRequest.model_validate({**fields, "export_task_identifier": identifier})


class Source(BaseModel):
    """Where the workers read: the clone's endpoint and port, or None for the secret's own host (direct mode).

    `secret_arn` is the cluster's managed master user secret, used when the stack names no source secret;
    `secret_version` the version of the secret that was current when the clone was made: the clone keeps the
    password of that moment, even if the source's is rotated during the export.
    `canceled` says the task was canceled before the export began (the state machine goes to Finalize).
    `engine` is the cluster's (PostgreSQL or MySQL); None where no cluster was described (direct mode with the
    stack's secret, whose `engine` field then says it).
    """

    model_config = ConfigDict(frozen=True, extra="ignore")

    ready: bool = True
    endpoint: str | None = None
    port: int | None = None
    secret_arn: str | None = None
    secret_version: str | None = None
    canceled: bool = False
    engine: EngineName | None = None


class PartitionItem(_Model):
    """One entry of the partition manifest the Distributed Map reads."""

    table: TablePlan
    partition: Partition

    def work(self, task: ExportTask, settings: ExportSettings) -> PartitionWork:
        """The partition as a unit of work; a clone nobody writes to needs no snapshot."""
        return PartitionWork(task=task, settings=settings, table=self.table, partition=self.partition, snapshot_id=None)


class StepError(BaseModel):
    """Step Functions' Catch output: the error's name and its cause (Lambda's JSON for a function's error)."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    error: str = Field(default="", alias="Error")
    cause: str | None = Field(default=None, alias="Cause")

    @property
    def message(self) -> str | None:
        """The error's message, where the cause is Lambda's report of it."""
        try:
            cause = json.loads(self.cause or "{}")
        except json.JSONDecodeError:
            return None
        message = cause.get("errorMessage") if isinstance(cause, dict) else None
        return str(message) if message else None


# --- the events (each state's Payload) ------------------------------------------------------------------------


class ValidateEvent(_Model):
    """ValidateRequest's input: the execution's input, as the user gave it."""

    request: ExportRequest


class TaskEvent(_Model):
    """CheckAccess, PrepareSource and Cleanup: the task is all they need."""

    export_task_identifier: str


class SourceEvent(TaskEvent):
    """CheckSource, PlanExport and Finalize: the task, and where its data is read."""

    source: Source


class PartitionEvent(SourceEvent):
    """ExportPartition: one manifest entry, as the Distributed Map's ItemSelector passes it."""

    partition: PartitionItem


class FailureEvent(TaskEvent):
    """RecordFailure: the task, and the error a Catch caught."""

    error: StepError


# --- the results (each state's Payload, before its ResultSelector) ---------------------------------------------


class Registered(_Model):
    """ValidateRequest registered the task; the Map runs at most `max_concurrency` partitions at once."""

    export_task_identifier: str
    max_concurrency: int


class Planned(_Model):
    """PlanExport wrote the partition manifest the Distributed Map reads."""

    manifest_key: str
    partitions: int


class PartitionDone(_Model):
    """ExportPartition: what one partition wrote; `skipped` names the task's status when it exported nothing."""

    rows: int
    bytes_written: int = 0
    skipped: Status | None = None


class Outcome(_Model):
    """Finalize and RecordFailure: the task's end status and the event Notify publishes."""

    status: Status
    event: dict[str, Any]

    @classmethod
    def of(cls, task: ExportTask, results: list[PartitionResult]) -> Outcome:
        event = task_event(task, sum(r.rows for r in results), sum(r.bytes_written for r in results))
        return cls(status=task.status, event=event)
