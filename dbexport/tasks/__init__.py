"""Export task records: the lifecycle rules (shared) and the stores that keep them."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from dbexport.models import ExportSettings, ExportTask
    from dbexport.tasks.lifecycle import Query


class TaskStore(Protocol):
    """What both stores offer: SQLite for the local runtime, DynamoDB for the AWS runtime."""

    def create(self, task: ExportTask, settings: ExportSettings) -> ExportTask: ...
    def get(self, identifier: str, operation: str = ...) -> ExportTask: ...
    def settings(self, identifier: str) -> ExportSettings: ...
    def update(self, identifier: str, **changes: Any) -> ExportTask: ...
    def cancel(self, identifier: str) -> ExportTask: ...
    def describe(self, query: Query) -> tuple[list[ExportTask], str | None]: ...
