"""The export API on this machine: task records, detached runners and events in the state directory."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from dbexport.api import describe
from dbexport.runner import SOURCE_URL_ENV, StateDir, default_state_dir, end_dead_runners, run_task, spawn_runner
from dbexport.tasks.lifecycle import DEFAULT_MAX_UNFINISHED
from dbexport.validation import validate_request

if TYPE_CHECKING:
    from pathlib import Path

    from dbexport.api import DescribeRequest, Display, TaskPage
    from dbexport.models import ExportSettings, ExportTask, StartExportTaskRequest
    from dbexport.tasks.sqlite import SqliteTaskStore


class LocalApi:
    """Export tasks run on this machine, recorded in a state directory (default_state_dir() unless given)."""

    def __init__(
        self,
        state_dir: Path | None = None,
        max_unfinished: int | None = None,
        endpoint_url: str | None = None,
    ) -> None:
        self.state = StateDir(state_dir or default_state_dir())
        self.max_unfinished = DEFAULT_MAX_UNFINISHED if max_unfinished is None else max_unfinished
        self.endpoint_url = endpoint_url  # an S3-compatible endpoint the exports write to

    def _store(self) -> SqliteTaskStore:
        """The task records, with the tasks of dead runners ended first."""
        store = self.state.store(self.max_unfinished)
        end_dead_runners(self.state, store)
        return store

    def start_export_task(
        self,
        request: StartExportTaskRequest,
        settings: ExportSettings,
        *,
        wait: bool = False,
        display: Display | None = None,
    ) -> ExportTask:
        """Register the task, then run it here (wait) or in a detached runner (return at once)."""
        store = self._store()
        task = store.create(validate_request(request), settings)
        identifier = task.export_task_identifier
        if not wait:
            spawn_runner(self.state, identifier, request.source_arn, self.endpoint_url)
            return task
        return run_task(store, self.state, identifier, request.source_arn, self.endpoint_url, display)

    def describe_export_tasks(self, request: DescribeRequest) -> TaskPage:
        return describe(self._store(), request)

    def cancel_export_task(self, identifier: str) -> ExportTask:
        return self._store().cancel(identifier)

    def run_spawned_task(self, identifier: str) -> ExportTask:
        """Run a task in the detached runner spawn_runner started: the source URL comes from its environment."""
        store = self._store()
        return run_task(store, self.state, identifier, os.environ[SOURCE_URL_ENV], os.environ.get("AWS_ENDPOINT_URL"))
