"""What both runtimes tell of a task the same way: its export_info file, its FailureCause, how it ends.

Light (no pyarrow, no drivers): the AWS runtime's CheckAccess and RecordFailure use it as the local runtime does.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from dbexport.destinations import export_root
from dbexport.errors import AccessCheckFailed, DbExportError
from dbexport.models import Status

if TYPE_CHECKING:
    from collections.abc import Callable

    from dbexport.destinations import Destination
    from dbexport.models import ExportTask

log = logging.getLogger(__name__)

UNKNOWN_ERROR = "An unknown internal error occurred."


def failure_cause(exc: BaseException) -> str:
    """The FailureCause a user reads: our own errors' messages; anything else is the unknown error, logged in full."""
    if isinstance(exc, DbExportError):
        return str(exc)
    log.error("unexpected failure", exc_info=exc)
    return UNKNOWN_ERROR


@dataclass(frozen=True)
class Failure:
    """Why a task failed: the error's name (as Lambda reports it) and the FailureCause a user reads."""

    error: str
    cause: str

    @classmethod
    def reported(cls, error: str, message: str | None, details: str | None = None) -> Failure:
        """An error known only by the name and message it was reported with (Step Functions' Catch output).

        `details` (Lambda's whole report, its stack trace too) is logged where the error is not one of ours.
        """
        if message and error in _our_error_names():
            return cls(error, message)
        log.error("export failed with %s: %s", error, details or message)
        return cls(error, UNKNOWN_ERROR)

    @property
    def refused_access(self) -> bool:
        """The access check refused the bucket, role or key (a bucket in another Region, say)."""
        return self.error == AccessCheckFailed.__name__


def _our_error_names() -> set[str]:
    names, todo = set(), [DbExportError]
    while todo:
        cls = todo.pop()
        names.add(cls.__name__)
        todo += cls.__subclasses__()
    return names


def end_task(
    update: Callable[..., ExportTask],
    destination: Callable[[ExportTask], Destination] | None,
    failure: Failure | None = None,
) -> ExportTask:
    """End a task that did not complete: FAILED with `failure`'s cause, else CANCELED; then write its export_info.

    `update` applies changes to the task record and returns the task; `destination` gives where the task writes
    (None: nowhere yet). Writing is quiet, since the failure may be the destination's own, and skipped where the
    access check refused it: the task record says why.
    """
    if failure is None:
        task = update(status=Status.CANCELED, task_end_time=datetime.now(UTC))
    else:
        task = update(status=Status.FAILED, failure_cause=failure.cause, task_end_time=datetime.now(UTC))
    if destination is not None and not (failure and failure.refused_access):
        try:
            write_export_info(task, destination(task))
        except Exception:
            log.exception("could not write export_info of export %s", task.export_task_identifier)
    return task


def export_info(task: ExportTask, exported_files_path: str) -> dict[str, Any]:
    """export_info_<id>.json: the task as the anchor records it next to the data."""
    times = task.model_dump(mode="json", include={"snapshot_time", "task_start_time", "task_end_time"})
    return {
        "exportTaskIdentifier": task.export_task_identifier,
        "sourceArn": task.source_arn,
        "exportOnly": task.export_only,
        "snapshotTime": times["snapshot_time"],
        "taskStartTime": times["task_start_time"],
        "taskEndTime": times["task_end_time"],
        "s3Bucket": task.s3_bucket,
        "s3Prefix": task.s3_prefix,
        "exportedFilesPath": exported_files_path,
        "iamRoleArn": task.iam_role_arn,
        "kmsKeyId": task.kms_key_id,
        "status": task.status.value,
        "percentProgress": task.percent_progress,
        "totalExportedDataInGB": task.total_extracted_data_in_gb,
        "warningMessage": task.warning_message,
        "failureCause": task.failure_cause,
    }


def write_export_info(task: ExportTask, destination: Destination) -> None:
    """export_info_<id>.json, written when the task starts and again when it ends."""
    root = export_root(task)
    info = export_info(task, destination.url(root))
    destination.put_bytes(json.dumps(info, indent=2).encode(), f"{root}/export_info_{task.export_task_identifier}.json")
