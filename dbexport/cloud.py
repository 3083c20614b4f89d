"""The AWS runtime's steps: each takes and returns JSON-able values; one Lambda handler calls each.

Step Functions runs them in the order of ../statemachine/export.asl.json. The task record in DynamoDB
is the truth; the state carries only the task's identifier, where the source is, and where the plan is.
"""

from __future__ import annotations

import json
import logging
import os
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import quote

import boto3
from pydantic import BaseModel, ConfigDict

from dbexport import steps
from dbexport.errors import DbExportError, ExportCanceled
from dbexport.events import task_event
from dbexport.local import UNKNOWN_ERROR
from dbexport.models import (
    ExportPlan,
    ExportSettings,
    ExportTask,
    Partition,
    PartitionWork,
    StartExportTaskRequest,
    Status,
    TablePlan,
)
from dbexport.sources import postgres
from dbexport.tasks.dynamodb import DynamoDbTaskStore
from dbexport.tasks.lifecycle import DEFAULT_MAX_UNFINISHED, FINISHED
from dbexport.validation import parse_export_only
from dbexport.writer import S3Destination

if TYPE_CHECKING:
    from dbexport.models import PartitionResult

log = logging.getLogger(__name__)

SourceMode = Literal["clone", "direct"]
# A worker asks the task table whether the task was canceled at most this often.
_CANCEL_POLL_SECONDS = 5.0


@dataclass(frozen=True)
class CloudConfig:
    """What the stack tells each function through its environment."""

    table_name: str
    work_bucket: str | None = None
    source_secret_arn: str | None = None
    source_mode: SourceMode = "clone"
    max_unfinished: int = DEFAULT_MAX_UNFINISHED
    max_concurrency: int = 100

    @classmethod
    def from_env(cls) -> CloudConfig:
        env = os.environ
        mode = env.get("SOURCE_MODE", "clone")
        if mode not in ("clone", "direct"):
            raise ValueError(f"SOURCE_MODE must be clone or direct, not {mode!r}")
        return cls(
            table_name=env["TASK_TABLE_NAME"],
            work_bucket=env.get("WORK_BUCKET_NAME"),
            source_secret_arn=env.get("SOURCE_SECRET_ARN"),
            source_mode=mode,  # type: ignore[arg-type]
            max_unfinished=int(env.get("MAX_UNFINISHED_TASKS", DEFAULT_MAX_UNFINISHED)),
            max_concurrency=int(env.get("MAX_CONCURRENCY", 100)),
        )

    def store(self) -> DynamoDbTaskStore:
        return DynamoDbTaskStore(self.table_name, self.max_unfinished)

    @property
    def bucket(self) -> str:
        """The work bucket (plans, manifests, Map results); only some functions are given it."""
        assert self.work_bucket, "WORK_BUCKET_NAME is not set"
        return self.work_bucket


class Source(BaseModel):
    """Where the workers read: the clone's endpoint, or None for the secret's own host (direct mode)."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    ready: bool = True
    endpoint: str | None = None


class PartitionItem(BaseModel):
    """One entry of the partition manifest the Distributed Map reads."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    table: TablePlan
    partition: Partition


class _Event(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ValidateEvent(_Event):
    """ValidateRequest's input: the execution's input, as the user gave it."""

    request: dict[str, Any]


class TaskEvent(_Event):
    export_task_identifier: str


class SourceEvent(TaskEvent):
    source: Source


class PartitionEvent(SourceEvent):
    partition: dict[str, Any]  # a PartitionItem


class FailureEvent(TaskEvent):
    error: dict[str, Any]  # Step Functions' Catch output: {"Error": ..., "Cause": ...}


def manifest_key(identifier: str) -> str:
    return f"manifests/{identifier}/partitions.json"


def plan_key(identifier: str) -> str:
    return f"manifests/{identifier}/plan.json"


# --- ValidateRequest --------------------------------------------------------------------------------------


def validate(request: dict[str, Any], config: CloudConfig, now: datetime | None = None) -> dict[str, Any]:
    """Check the request and register the task atomically; refusals raise with RDS's error codes.

    The input is StartExportTask's, in RDS's names, plus dbexport's optional `Settings`. A schedule
    gives `ExportTaskIdentifierPrefix` instead of an identifier, and each run gets its own.
    """
    now = now or datetime.now(UTC)
    fields = dict(request)
    settings = ExportSettings.model_validate(fields.pop("Settings", {}))
    if prefix := fields.pop("ExportTaskIdentifierPrefix", None):
        fields.setdefault("ExportTaskIdentifier", f"{prefix}-{now:%Y%m%d-%H%M%S}")
    task = steps.validate_request(StartExportTaskRequest.model_validate(fields), now, runtime="aws")
    config.store().create(task, settings)
    return {"export_task_identifier": task.export_task_identifier, "max_concurrency": config.max_concurrency}


# --- CheckAccess ------------------------------------------------------------------------------------------


def check_access(identifier: str, config: CloudConfig) -> None:
    """Write the task's metadata to the bucket as the task's IAM role, with SSE-KMS: access works."""
    task = config.store().get(identifier)
    steps.write_export_info(task, destination(task))


def destination(task: ExportTask) -> S3Destination:
    """The user's bucket, written as the IAM role the request names (as the anchor does)."""
    assert task.iam_role_arn is not None
    credentials = boto3.client("sts").assume_role(
        RoleArn=task.iam_role_arn, RoleSessionName=f"dbexport-{task.export_task_identifier}"[:64]
    )["Credentials"]
    session = boto3.session.Session(
        aws_access_key_id=credentials["AccessKeyId"],
        aws_secret_access_key=credentials["SecretAccessKey"],
        aws_session_token=credentials["SessionToken"],
    )
    return S3Destination(task.s3_bucket, task.kms_key_id, session.client("s3"))


# --- PrepareSource / SourceReady / Cleanup ----------------------------------------------------------------


def clone_identifier(identifier: str) -> str:
    """The clone's cluster identifier: derived from the task, so Cleanup finds it without state."""
    return f"dbexport-{identifier}"[:63].rstrip("-")


def prepare_source(identifier: str, config: CloudConfig) -> dict[str, Any]:
    """Direct mode reads the cluster itself; clone mode starts a copy-on-write clone to read instead."""
    if config.source_mode == "direct":
        return Source().model_dump()
    task = config.store().get(identifier)
    rds = boto3.client("rds")
    source_cluster = task.source_arn.rsplit(":", 1)[1]
    (cluster,) = rds.describe_db_clusters(DBClusterIdentifier=source_cluster)["DBClusters"]
    clone = clone_identifier(identifier)
    tags = [{"Key": "dbexport:export-task", "Value": identifier}]
    rds.restore_db_cluster_to_point_in_time(
        SourceDBClusterIdentifier=source_cluster,
        DBClusterIdentifier=clone,
        RestoreType="copy-on-write",
        UseLatestRestorableTime=True,
        DBSubnetGroupName=cluster["DBSubnetGroup"],
        VpcSecurityGroupIds=[g["VpcSecurityGroupId"] for g in cluster.get("VpcSecurityGroups", [])],
        Tags=tags,
    )
    rds.create_db_instance(
        DBInstanceIdentifier=f"{clone}-1"[:63],
        DBClusterIdentifier=clone,
        Engine=cluster["Engine"],
        DBInstanceClass=_writer_instance_class(rds, cluster),
        Tags=tags,
    )
    return Source(ready=False).model_dump()


def _writer_instance_class(rds: Any, cluster: dict[str, Any]) -> str:
    writer = next(m for m in cluster["DBClusterMembers"] if m["IsClusterWriter"])
    (instance,) = rds.describe_db_instances(DBInstanceIdentifier=writer["DBInstanceIdentifier"])["DBInstances"]
    return str(instance["DBInstanceClass"])


def source_ready(identifier: str, source: dict[str, Any], config: CloudConfig) -> dict[str, Any]:
    """Whether the clone and its instance are available; Step Functions waits between two asks."""
    if config.source_mode == "direct":
        return Source().model_dump()
    rds = boto3.client("rds")
    clone = clone_identifier(identifier)
    (cluster,) = rds.describe_db_clusters(DBClusterIdentifier=clone)["DBClusters"]
    (instance,) = rds.describe_db_instances(DBInstanceIdentifier=f"{clone}-1"[:63])["DBInstances"]
    ready = cluster["Status"] == "available" and instance["DBInstanceStatus"] == "available"
    return Source(ready=ready, endpoint=cluster.get("Endpoint") if ready else None).model_dump()


def cleanup(identifier: str, config: CloudConfig) -> None:
    """Delete the clone, whatever the outcome; already gone is fine."""
    if config.source_mode == "direct":
        return
    rds = boto3.client("rds")
    clone = clone_identifier(identifier)
    for call, kwargs in (
        (rds.delete_db_instance, {"DBInstanceIdentifier": f"{clone}-1"[:63], "SkipFinalSnapshot": True}),
        (rds.delete_db_cluster, {"DBClusterIdentifier": clone, "SkipFinalSnapshot": True}),
    ):
        try:
            call(**kwargs)
        except (rds.exceptions.DBInstanceNotFoundFault, rds.exceptions.DBClusterNotFoundFault):
            log.info("clone of %s already deleted", identifier)


# --- PlanExport -------------------------------------------------------------------------------------------


def source_url(config: CloudConfig, source: Source) -> str:
    """The source's URL from its Secrets Manager secret (RDS's shape), at the clone's endpoint if any."""
    assert config.source_secret_arn is not None, "SOURCE_SECRET_ARN is not set"
    secret = json.loads(
        boto3.client("secretsmanager").get_secret_value(SecretId=config.source_secret_arn)["SecretString"]
    )
    user, password = quote(secret["username"], safe=""), quote(secret["password"], safe="")
    host = source.endpoint or secret["host"]
    return f"postgresql://{user}:{password}@{host}:{secret.get('port', 5432)}/"


def plan(identifier: str, source: dict[str, Any], config: CloudConfig) -> dict[str, Any]:
    """Catalog, skip rules, types and partitions; the manifest goes to the work bucket for the Map."""
    store = config.store()
    task, settings = store.get(identifier), store.settings(identifier)
    url = source_url(config, Source.model_validate(source))
    selection = parse_export_only(task.export_only)
    with ExitStack() as stack:
        snapshots = steps.open_snapshots(url, selection, stack)
        plans = [steps.plan_database(snap, db, selection, settings) for db, snap in snapshots.items()]
    items = [
        PartitionItem(table=table, partition=partition).model_dump(mode="json", by_alias=True)
        for p in plans
        for table in p.tables
        for partition in table.partitions
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
    return {"manifest_key": manifest_key(identifier), "partitions": len(items)}


def _plans_json(plans: list[ExportPlan]) -> bytes:
    return json.dumps([p.model_dump(mode="json", by_alias=True) for p in plans]).encode()


# --- ExportPartition --------------------------------------------------------------------------------------


def export_partition(
    identifier: str, source: dict[str, Any], item: dict[str, Any], config: CloudConfig
) -> dict[str, Any]:
    """Export one partition of the manifest; a canceled or ended task exports nothing more."""
    store = config.store()
    task = store.get(identifier)
    if task.status != Status.IN_PROGRESS:
        return {"rows": 0, "skipped": task.status.value}
    entry = PartitionItem.model_validate(item)
    work = PartitionWork(
        task=task, settings=store.settings(identifier), table=entry.table, partition=entry.partition, snapshot_id=None
    )
    dsn = postgres.database_dsn(source_url(config, Source.model_validate(source)), entry.table.database)
    try:
        result = steps.export_partition(work, dsn, destination(task), should_stop=_cancel_poller(store, identifier))
    except ExportCanceled:
        return {"rows": 0, "skipped": Status.CANCELING.value}
    store.record_partition(identifier, result, entry.partition.estimated_bytes)
    return {"rows": result.rows, "bytes_written": result.bytes_written}


def _cancel_poller(store: DynamoDbTaskStore, identifier: str) -> Any:
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


# --- Finalize / RecordFailure -----------------------------------------------------------------------------


def finalize(identifier: str, source: dict[str, Any], config: CloudConfig) -> dict[str, Any]:
    """Verify row counts, write the metadata files, end the task; returns its status and end event."""
    store = config.store()
    task = store.get(identifier)
    results = store.partition_results(identifier)
    if task.status == Status.CANCELING:
        task = store.update(identifier, status=Status.CANCELED, task_end_time=datetime.now(UTC))
        _write_info_quietly(task)
        return _outcome(task, results)
    body = boto3.client("s3").get_object(Bucket=config.bucket, Key=plan_key(identifier))["Body"].read()
    plans = [ExportPlan.model_validate(p) for p in json.loads(body)]
    by_table: dict[str, list[PartitionResult]] = {}
    for result in results:
        by_table.setdefault(result.target, []).append(result)
    url = source_url(config, Source.model_validate(source))
    outcomes = []
    for p in plans:
        with postgres.connect(postgres.database_dsn(url, p.database)) as conn:
            outcomes += [steps.verify_table(p, t, by_table.get(t.target, []), conn) for t in p.tables]
    final = steps.finalize(task, plans, outcomes, destination(task))
    task = store.update(
        identifier,
        status=final.status,
        failure_cause=final.failure_cause,
        warning_message=final.warning_message,
        task_end_time=final.task_end_time,
    )
    return _outcome(task, results)


def record_failure(identifier: str, error: dict[str, Any], config: CloudConfig) -> dict[str, Any]:
    """A state failed: the task ends FAILED (CANCELED if a cancel was asked for) with a FailureCause."""
    store = config.store()
    task = store.get(identifier)
    if task.status not in FINISHED:
        task = store.update(
            identifier,
            status=Status.FAILED,
            failure_cause=failure_cause_from(error),
            task_end_time=datetime.now(UTC),
        )
        _write_info_quietly(task)
    return _outcome(task, store.partition_results(identifier))


def failure_cause_from(error: dict[str, Any]) -> str:
    """Step Functions' Catch output ({"Error", "Cause"}) as a sentence: ours, or the unknown-error one."""
    name = str(error.get("Error", ""))
    try:
        cause = json.loads(error.get("Cause") or "{}")
    except json.JSONDecodeError:
        cause = {}
    message = cause.get("errorMessage") if isinstance(cause, dict) else None
    if message and name in _our_error_names():
        return str(message)
    log.error("export failed with %s: %s", name, error.get("Cause"))
    return UNKNOWN_ERROR


def _our_error_names() -> set[str]:
    names, todo = set(), [DbExportError]
    while todo:
        cls = todo.pop()
        names.add(cls.__name__)
        todo += cls.__subclasses__()
    return names


def _write_info_quietly(task: ExportTask) -> None:
    try:
        steps.write_export_info(task, destination(task))
    except Exception:  # the failure may be access to the bucket itself; the task record says why
        log.exception("could not write export_info of export %s", task.export_task_identifier)


def _outcome(task: ExportTask, results: list[PartitionResult]) -> dict[str, Any]:
    event = task_event(task, sum(r.rows for r in results), sum(r.bytes_written for r in results))
    return {"status": task.status.value, "event": event}
