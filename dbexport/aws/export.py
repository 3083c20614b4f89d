"""PlanExport, ExportPartition and Finalize: the states that read the source and write its data.

The task record in DynamoDB is the truth; the state carries only the task's identifier, where the source is,
and where the plan is (the work bucket's manifest).
"""

from __future__ import annotations

import json
import logging
from contextlib import ExitStack
from datetime import UTC, datetime
from functools import partial
from typing import TYPE_CHECKING

import boto3

from dbexport import outcomes, steps
from dbexport.aws.clones import merge_warnings
from dbexport.aws.contract import manifest_key, plan_key
from dbexport.aws.events import Outcome, PartitionDone, PartitionItem, Planned
from dbexport.aws.requests import destination
from dbexport.aws.secrets import source_url
from dbexport.errors import ExportCanceled
from dbexport.layout import settle_folders
from dbexport.models import ExportPlan, Status
from dbexport.outcomes import end_task
from dbexport.sources import for_url, with_application_name
from dbexport.tasks.lifecycle import FINISHED
from dbexport.urls import engine_of
from dbexport.validation import parse_export_only

if TYPE_CHECKING:
    from collections.abc import Callable

    from dbexport.aws.config import CloudConfig
    from dbexport.aws.events import PartitionEvent, SourceEvent
    from dbexport.models import PartitionResult
    from dbexport.tasks.dynamodb import DynamoDbTaskStore

log = logging.getLogger(__name__)

# A worker asks the task table whether the task was canceled at most this often.
_CANCEL_POLL_SECONDS = 5.0


def plan(event: SourceEvent, config: CloudConfig) -> Planned:
    """Catalog, skip rules, types and partitions; the manifest goes to the work bucket for the Map."""
    identifier = event.export_task_identifier
    store = config.store()
    task, settings = store.get(identifier), store.settings(identifier)
    url = with_application_name(source_url(config, event.source), identifier)
    selection = parse_export_only(task.export_only, engine_of(url))
    with ExitStack() as stack:
        snapshots = steps.open_snapshots(url, selection, stack)
        plans = settle_folders([steps.plan_database(snap, db, selection, settings) for db, snap in snapshots.items()])
    items = [
        PartitionItem(table=work.table, partition=work.partition).model_dump(mode="json", by_alias=True)
        for work in steps.partition_works(task, settings, plans)
    ]
    s3 = boto3.client("s3")
    s3.put_object(Bucket=config.bucket, Key=plan_key(identifier), Body=_plans_json(plans))
    s3.put_object(Bucket=config.bucket, Key=manifest_key(identifier), Body=json.dumps(items).encode())
    store.set_plan(identifier, sum(t.estimated_bytes for p in plans for t in p.tables), len(items))
    store.update(
        identifier,
        status=Status.IN_PROGRESS,
        snapshot_time=min((p.snapshot_time for p in plans), default=None),
    )
    return Planned(manifest_key=manifest_key(identifier), partitions=len(items))


def _plans_json(plans: list[ExportPlan]) -> bytes:
    return json.dumps([p.model_dump(mode="json", by_alias=True) for p in plans]).encode()


def export_partition(event: PartitionEvent, config: CloudConfig) -> PartitionDone:
    """Export one partition of the manifest; a canceled or ended task exports nothing more."""
    identifier = event.export_task_identifier
    store = config.store()
    task = store.get(identifier)
    if task.status != Status.IN_PROGRESS:
        return PartitionDone(rows=0, skipped=task.status)
    entry = event.partition
    work = entry.work(task, store.settings(identifier))
    url = with_application_name(source_url(config, event.source), identifier)
    dsn = for_url(url).database_dsn(url, entry.table.database)
    try:
        result = steps.export_partition(work, dsn, destination(task), should_stop=_cancel_poller(store, identifier))
    except ExportCanceled:
        return PartitionDone(rows=0, skipped=Status.CANCELING)
    store.record_partition(identifier, result, entry.partition.estimated_bytes)
    return PartitionDone(rows=result.rows, bytes_written=result.bytes_written)


def _cancel_poller(store: DynamoDbTaskStore, identifier: str) -> Callable[[], bool]:
    last_asked = 0.0
    canceled = False

    def should_stop() -> bool:
        nonlocal last_asked, canceled
        now = datetime.now(UTC).timestamp()
        if not canceled and now - last_asked >= _CANCEL_POLL_SECONDS:
            last_asked = now
            canceled = store.get(identifier).status == Status.CANCELING
        return canceled

    return should_stop


def finalize(event: SourceEvent, config: CloudConfig) -> Outcome:
    """Verify row counts, write the metadata files, end the task; returns its status and end event."""
    identifier = event.export_task_identifier
    store = config.store()
    task = store.get(identifier)
    results = store.partition_results(identifier)
    if task.status == Status.CANCELING:
        return Outcome.of(end_task(partial(store.update, identifier), destination), results)
    if task.status in FINISHED:  # a partition's failure ended it already (the Map's RecordPartitionFailure)
        return Outcome.of(task, results)
    body = boto3.client("s3").get_object(Bucket=config.bucket, Key=plan_key(identifier))["Body"].read()
    plans = [ExportPlan.model_validate(p) for p in json.loads(body)]
    by_table: dict[str, list[PartitionResult]] = {}
    for result in results:
        by_table.setdefault(result.target, []).append(result)
    url = with_application_name(source_url(config, event.source), identifier)
    verified = []
    engine = for_url(url)
    for p in plans:
        with engine.connect(engine.database_dsn(url, p.database)) as conn:
            verified += [steps.verify_table(p, t, by_table.get(t.target, []), conn) for t in p.tables]
    target = destination(task)
    final = steps.finalize(task, plans, verified, target)
    # Notes made before the plan (the clone fallback) stay in the final WarningMessage.
    warning = merge_warnings(task.warning_message, final.warning_message)
    if warning != final.warning_message:
        final = final.model_copy(update={"warning_message": warning})
        outcomes.write_export_info(final, target)
    task = store.update(
        identifier,
        status=final.status,
        failure_cause=final.failure_cause,
        warning_message=final.warning_message,
        task_end_time=final.task_end_time,
    )
    return Outcome.of(task, results)
