"""The export task operations, the same for the local runtime and a deployed stack: the CLI's only way in."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from dbexport.tasks.lifecycle import make_query
from dbexport.urls import redact

if TYPE_CHECKING:
    from dbexport.models import ExportSettings, ExportTask, StartExportTaskRequest
    from dbexport.tasks import TaskStore


class Progress(Protocol):
    """What a progress display hears from an export running in this process (the local runtime)."""

    def begin(self, tables: int, estimated_bytes: int) -> None: ...
    def rows(self, count: int) -> None:
        """`count` more rows read; negative where a failed attempt's rows are taken back, to be read again."""

    def partition_done(self, estimated_bytes: int, bytes_written: int, table_done: bool) -> None: ...


class Display(Progress, Protocol):
    """What the caller shows while start_export_task waits: an export's progress here, or a stack's task polled."""

    def polled(self, task: ExportTask) -> None: ...


@dataclass(frozen=True)
class DescribeRequest:
    """DescribeExportTasks' parameters as given; the runtime checks them as RDS does."""

    identifier: str | None = None
    source_arn: str | None = None
    source_type: str | None = None
    filters: list[dict[str, Any]] = field(default_factory=list)
    max_records: int | None = None
    marker: str | None = None


@dataclass(frozen=True)
class TaskPage:
    """One page of DescribeExportTasks: a marker when more tasks follow."""

    tasks: list[ExportTask]
    marker: str | None = None


class ExportApi(Protocol):
    """StartExportTask, DescribeExportTasks and CancelExportTask, on this machine or through a deployed stack."""

    def start_export_task(
        self,
        request: StartExportTaskRequest,
        settings: ExportSettings,
        *,
        wait: bool = False,
        display: Display | None = None,
    ) -> ExportTask:
        """Start the task; with `wait`, return it only once it has ended."""
        ...

    def describe_export_tasks(self, request: DescribeRequest) -> TaskPage: ...
    def cancel_export_task(self, identifier: str) -> ExportTask: ...


def describe(store: TaskStore, request: DescribeRequest) -> TaskPage:
    """DescribeExportTasks on a task store, its parameters checked as RDS checks them."""
    # Tasks keep their source without its password: the URL a task was started with finds it all the same.
    filters = [_redacted(item) for item in request.filters]
    query = make_query(
        identifier=request.identifier,
        source_arn=redact(request.source_arn) if request.source_arn else None,
        source_type=request.source_type,
        filters=filters,
        max_records=request.max_records,
        marker=request.marker,
    )
    tasks, marker = store.describe(query)
    return TaskPage(tasks, marker)


def _redacted(item: dict[str, Any]) -> dict[str, Any]:
    """A source-arn filter with its values redacted; any other filter as it is (make_query judges it)."""
    if isinstance(item, dict) and item.get("Name") == "source-arn" and isinstance(item.get("Values"), list):
        return {**item, "Values": [redact(v) if isinstance(v, str) else v for v in item["Values"]]}
    return item
