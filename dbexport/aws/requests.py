"""ValidateRequest, CheckAccess and RecordFailure: the task's record and its metadata, never its data.

Light (no pyarrow, no drivers): these functions start quickly, and run where no database is reachable.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from functools import partial
from typing import TYPE_CHECKING

import boto3

from dbexport import preflight
from dbexport.aws.clusters import cluster_engine, exportable_cluster
from dbexport.aws.events import Outcome, Registered
from dbexport.destinations import S3Destination
from dbexport.outcomes import Failure, end_task, write_export_info
from dbexport.tasks.lifecycle import FINISHED
from dbexport.validation import parse_export_only, validate_request

if TYPE_CHECKING:
    from dbexport.aws.config import CloudConfig
    from dbexport.aws.events import FailureEvent, TaskEvent, ValidateEvent
    from dbexport.models import ExportTask

log = logging.getLogger(__name__)


def validate(event: ValidateEvent, config: CloudConfig, now: datetime | None = None) -> Registered:
    """Check the request and register the task atomically; refusals raise with RDS's error codes."""
    now = now or datetime.now(UTC)
    task = validate_request(event.request.start_request(now), now, runtime="aws")
    if config.source_mode == "clone":
        # Refused here, with RDS's error codes, rather than failing the task later: nothing is registered.
        cluster = exportable_cluster(boto3.client("rds"), task.source_arn)
        parse_export_only(task.export_only, cluster_engine(cluster))  # MySQL: database or database.table
    config.store().create(task, event.request.settings)
    return Registered(export_task_identifier=task.export_task_identifier, max_concurrency=config.max_concurrency)


def check_access(event: TaskEvent, config: CloudConfig) -> None:
    """The access preflight (dbexport.preflight) as the task's IAM role, then the task's first metadata."""
    task = config.store().get(event.export_task_identifier)
    target = preflight.target_for(task)
    role = preflight.run(target)
    assert task.iam_role_arn is not None
    with preflight.writing_metadata(target, task.iam_role_arn):
        write_export_info(task, S3Destination(task.s3_bucket, task.kms_key_id, role.client("s3")))


def destination(task: ExportTask) -> S3Destination:
    """The user's bucket, written as the IAM role the request names (as the anchor does)."""
    assert task.iam_role_arn is not None
    role = preflight.assume_role(preflight.target_for(task), preflight.Principal())
    return S3Destination(task.s3_bucket, task.kms_key_id, role.client("s3"))


def record_failure(event: FailureEvent, config: CloudConfig) -> Outcome:
    """A state failed: the task ends FAILED (CANCELED if a cancel was asked for) with a FailureCause."""
    identifier = event.export_task_identifier
    store = config.store()
    task = store.get(identifier)
    if task.status not in FINISHED:
        failure = Failure.reported(event.error.error, event.error.message, event.error.cause)
        task = end_task(partial(store.update, identifier), destination, failure)
    return Outcome.of(task, store.partition_results(identifier))
