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
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import quote

import boto3
from botocore.exceptions import ClientError
from pydantic import BaseModel, ConfigDict

from dbexport import preflight, steps
from dbexport.aws import contract
from dbexport.aws.contract import manifest_key, plan_key
from dbexport.errors import (
    AccessCheckFailed,
    DBClusterNotFoundFault,
    DbExportError,
    ExportCanceled,
    ExportFailed,
    InvalidExportSourceState,
    SourceBusy,
)
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
from dbexport.sources import for_name, for_url
from dbexport.tasks.dynamodb import DynamoDbTaskStore
from dbexport.tasks.lifecycle import DEFAULT_MAX_UNFINISHED, FINISHED
from dbexport.urls import EngineName, engine_of
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
        mode = env.get(contract.SOURCE_MODE, "clone")
        if mode not in ("clone", "direct"):
            raise ValueError(f"{contract.SOURCE_MODE} must be clone or direct, not {mode!r}")
        return cls(
            table_name=env[contract.TASK_TABLE_NAME],
            work_bucket=env.get(contract.WORK_BUCKET_NAME),
            source_secret_arn=env.get(contract.SOURCE_SECRET_ARN),
            source_mode=mode,  # type: ignore[arg-type]
            max_unfinished=int(env.get(contract.MAX_UNFINISHED_TASKS, DEFAULT_MAX_UNFINISHED)),
            max_concurrency=int(env.get(contract.MAX_CONCURRENCY, 100)),
        )

    def store(self) -> DynamoDbTaskStore:
        return DynamoDbTaskStore(self.table_name, self.max_unfinished)

    @property
    def bucket(self) -> str:
        """The work bucket (plans, manifests, Map results); only some functions are given it."""
        assert self.work_bucket, "WORK_BUCKET_NAME is not set"
        return self.work_bucket


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
    if config.source_mode == "clone":
        # Refused here, with RDS's error codes, rather than failing the task later: nothing is registered.
        cluster = exportable_cluster(boto3.client("rds"), task.source_arn)
        parse_export_only(task.export_only, cluster_engine(cluster))  # MySQL: database or database.table
    config.store().create(task, settings)
    return {"export_task_identifier": task.export_task_identifier, "max_concurrency": config.max_concurrency}


# --- CheckAccess ------------------------------------------------------------------------------------------


def check_access(identifier: str, config: CloudConfig) -> None:
    """The access preflight (dbexport.preflight) as the task's IAM role, then the task's first metadata."""
    task = config.store().get(identifier)
    target = preflight.target_for(task)
    role = preflight.run(target)
    assert task.iam_role_arn is not None
    with preflight.writing_metadata(target, task.iam_role_arn):
        steps.write_export_info(task, S3Destination(task.s3_bucket, task.kms_key_id, role.client("s3")))


def destination(task: ExportTask) -> S3Destination:
    """The user's bucket, written as the IAM role the request names (as the anchor does)."""
    assert task.iam_role_arn is not None
    role = preflight.assume_role(preflight.target_for(task), preflight.Principal())
    return S3Destination(task.s3_bucket, task.kms_key_id, role.client("s3"))


# --- PrepareSource / SourceReady / Cleanup ----------------------------------------------------------------


# Aurora allows 15 copy-on-write clones of a cluster; past that the export copies it (RestoreType full-copy).
MAX_CLONES = 15
# Aurora PostgreSQL, Aurora MySQL (and Aurora MySQL 1, whose engine is "aurora").
AURORA_ENGINES = frozenset({"aurora-postgresql", "aurora-mysql", "aurora"})
# A source cluster in one of these states can't be cloned or copied.
_UNEXPORTABLE_STATUSES = frozenset(
    {
        "stopped",
        "stopping",
        "starting",
        "deleting",
        "failed",
        "inaccessible-encryption-credentials",
        "inaccessible-encryption-credentials-recoverable",
        "incompatible-network",
        "incompatible-parameters",
        "incompatible-restore",
    }
)
# A clone (or its instance) in one of these states will never become available.
_FAILED_CLONE_STATUSES = frozenset(
    {
        "deleting",
        "failed",
        "inaccessible-encryption-credentials",
        "inaccessible-encryption-credentials-recoverable",
        "incompatible-network",
        "incompatible-option-group",
        "incompatible-parameters",
        "incompatible-restore",
        "restore-error",
        "storage-full",
    }
)
# A clone not available after this long is given up on.
CLONE_TIMEOUT = timedelta(hours=3)
_DEFAULT_INSTANCE_CLASS = "db.r6g.large"


def cluster_name(source_arn: str) -> str:
    return source_arn.rsplit(":", 1)[-1]


def exportable_cluster(rds: Any, source_arn: str) -> dict[str, Any]:
    """The source cluster's description; refused unless it is a provisioned Aurora PostgreSQL or MySQL cluster."""
    name = cluster_name(source_arn)
    try:
        (cluster,) = rds.describe_db_clusters(DBClusterIdentifier=source_arn)["DBClusters"]
    except ClientError as exc:
        # RDS answers InvalidParameterValue for an ARN of another Region or account.
        if exc.response.get("Error", {}).get("Code") not in ("DBClusterNotFoundFault", "InvalidParameterValue"):
            raise
        raise DBClusterNotFoundFault(
            f"DBCluster {name} not found: SourceArn must name an Aurora PostgreSQL or Aurora MySQL DB cluster "
            "of this account and Region."
        ) from exc
    engine, mode, status = cluster.get("Engine"), cluster.get("EngineMode", "provisioned"), cluster.get("Status")
    if engine not in AURORA_ENGINES:
        raise InvalidExportSourceState(
            f"The DB cluster {name} runs the {engine} engine: only Aurora PostgreSQL and Aurora MySQL DB "
            "clusters can be exported."
        )
    if mode == "serverless":
        raise InvalidExportSourceState(
            f"The DB cluster {name} is an Aurora Serverless v1 cluster (EngineMode serverless), which can't be "
            "exported: only provisioned Aurora clusters (Aurora Serverless v2 included) can."
        )
    if status in _UNEXPORTABLE_STATUSES:
        raise InvalidExportSourceState(
            f"The DB cluster {name} is {status}: it must be available to be exported. Start it or wait, then retry."
        )
    return cluster  # type: ignore[no-any-return]


def cluster_engine(cluster: dict[str, Any]) -> EngineName:
    """The engine dbexport reads an Aurora cluster with: aurora-postgresql, or aurora-mysql (and aurora, MySQL 5.6)."""
    return "postgresql" if cluster.get("Engine") == "aurora-postgresql" else "mysql"


def clone_identifier(identifier: str) -> str:
    """The clone's cluster identifier: derived from the task, so Cleanup finds it without state."""
    return f"{contract.CLONE_PREFIX}{identifier}"[:63].rstrip("-")


def clone_instance_identifier(identifier: str) -> str:
    return f"{clone_identifier(identifier)}-1"[:63]


def clone_count(rds: Any, cluster: dict[str, Any], ours: str) -> int:
    """How many clones the cluster has: the other clusters of its clone group, besides our own `ours`."""
    group = cluster.get("CloneGroupId")
    if not group:
        return 0
    return sum(
        1
        for page in rds.get_paginator("describe_db_clusters").paginate()
        for other in page["DBClusters"]
        if other.get("CloneGroupId") == group
        and other["DBClusterIdentifier"] not in (cluster["DBClusterIdentifier"], ours)
    )


def prepare_source(identifier: str, config: CloudConfig) -> dict[str, Any]:
    """Direct mode reads the cluster itself; clone mode starts a copy-on-write clone to read instead.

    The clone is the source as of its latest restorable time, with one instance; SourceReady waits for it.
    A cluster that already has MAX_CLONES clones is copied instead (RestoreType full-copy), and the task's
    WarningMessage says so.
    """
    store = config.store()
    task = store.get(identifier)
    if task.status == Status.CANCELING:
        return Source(canceled=True).model_dump()
    name = cluster_name(task.source_arn)
    rds = boto3.client("rds")
    if config.source_mode == "direct":
        if config.source_secret_arn:
            return Source().model_dump()
        cluster = _source_cluster(rds, task)
        return Source(
            endpoint=cluster["Endpoint"],
            port=cluster.get("Port"),
            secret_arn=_managed_secret(cluster, name),
            engine=cluster_engine(cluster),
        ).model_dump()
    cluster = _source_cluster(rds, task)
    secret_arn = None if config.source_secret_arn else _managed_secret(cluster, name)
    secret_version = _secret(config.source_secret_arn or secret_arn)["VersionId"]
    clone = clone_identifier(identifier)
    clones = clone_count(rds, cluster, ours=clone)  # ours: when PrepareSource runs again
    restore_type = "copy-on-write" if clones < MAX_CLONES else "full-copy"
    tags = [{"Key": "dbexport:export-task", "Value": identifier}]
    restore: dict[str, Any] = {
        "SourceDBClusterIdentifier": cluster["DBClusterIdentifier"],
        "DBClusterIdentifier": clone,
        "RestoreType": restore_type,
        "UseLatestRestorableTime": True,
        "DeletionProtection": False,
        "Tags": tags,
    }
    if cluster.get("DBSubnetGroup"):
        restore["DBSubnetGroupName"] = cluster["DBSubnetGroup"]
    if groups := [g["VpcSecurityGroupId"] for g in cluster.get("VpcSecurityGroups", [])]:
        restore["VpcSecurityGroupIds"] = groups
    if scaling := cluster.get("ServerlessV2ScalingConfiguration"):
        restore["ServerlessV2ScalingConfiguration"] = {
            k: scaling[k] for k in ("MinCapacity", "MaxCapacity") if k in scaling
        }
    try:
        rds.restore_db_cluster_to_point_in_time(**restore)
    except rds.exceptions.DBClusterAlreadyExistsFault:
        log.info("the clone %s exists already (PrepareSource ran again)", clone)
    except (rds.exceptions.DBClusterNotFoundFault, rds.exceptions.InvalidDBClusterStateFault) as exc:
        log.warning("cloning %s failed: %s", name, exc)
        raise ExportFailed(_cannot_access(name)) from exc
    if restore_type == "full-copy":
        note = (
            f"The source DB cluster {name} already has {clones} clones, the most Aurora allows, so dbexport "
            "copied it (RestoreType full-copy) instead of cloning it, which takes longer."
        )
        store.update(identifier, warning_message=merge_warnings(task.warning_message, _general_warning(note)))
    try:
        rds.create_db_instance(
            DBInstanceIdentifier=clone_instance_identifier(identifier),
            DBClusterIdentifier=clone,
            Engine=cluster["Engine"],
            DBInstanceClass=_instance_class(rds, cluster),
            Tags=tags,
        )
    except rds.exceptions.DBInstanceAlreadyExistsFault:
        log.info("the clone's instance exists already (PrepareSource ran again)")
    return Source(
        ready=False, secret_arn=secret_arn, secret_version=secret_version, engine=cluster_engine(cluster)
    ).model_dump()


def _source_cluster(rds: Any, task: ExportTask) -> dict[str, Any]:
    """The source, checked again: it may have gone or changed since the request was accepted."""
    try:
        return exportable_cluster(rds, task.source_arn)
    except (DBClusterNotFoundFault, InvalidExportSourceState) as exc:
        log.warning("source cluster of %s: %s", task.export_task_identifier, exc.message)
        raise ExportFailed(_cannot_access(cluster_name(task.source_arn))) from exc


def _cannot_access(name: str) -> str:
    return f"Failed to find or access the source DB cluster: {name}"


def _managed_secret(cluster: dict[str, Any], name: str) -> str:
    """The cluster's own master user secret (ManageMasterUserPassword), for a stack that names no secret."""
    arn = (cluster.get("MasterUserSecret") or {}).get("SecretArn")
    if not arn:
        raise ExportFailed(
            f"dbexport has no credentials for the DB cluster {name}: the stack names no source secret "
            "(sourceSecretArn) and the cluster has no master user secret managed in Secrets Manager."
        )
    return str(arn)


def _instance_class(rds: Any, cluster: dict[str, Any]) -> str:
    """The clone's instance is sized like the source's writer (any instance of it, failing that)."""
    members = sorted(cluster.get("DBClusterMembers", []), key=lambda m: not m.get("IsClusterWriter"))
    if members:
        (instance,) = rds.describe_db_instances(DBInstanceIdentifier=members[0]["DBInstanceIdentifier"])["DBInstances"]
        return str(instance["DBInstanceClass"])
    return "db.serverless" if cluster.get("ServerlessV2ScalingConfiguration") else _DEFAULT_INSTANCE_CLASS


def source_ready(identifier: str, source: dict[str, Any], config: CloudConfig) -> dict[str, Any]:
    """Whether the clone and its instance are available; Step Functions waits between two asks.

    A task canceled meanwhile ends once the clone is available (a clone still being created can't be
    deleted); one that fails, or takes longer than CLONE_TIMEOUT, fails the task.
    """
    previous = Source.model_validate(source)
    if config.source_mode == "direct":
        return previous.model_copy(update={"ready": True}).model_dump()
    task = config.store().get(identifier)
    name = cluster_name(task.source_arn)
    rds = boto3.client("rds")
    clone = clone_identifier(identifier)
    try:
        (cluster,) = rds.describe_db_clusters(DBClusterIdentifier=clone)["DBClusters"]
        (instance,) = rds.describe_db_instances(DBInstanceIdentifier=clone_instance_identifier(identifier))[
            "DBInstances"
        ]
    except (rds.exceptions.DBClusterNotFoundFault, rds.exceptions.DBInstanceNotFoundFault) as exc:
        log.warning("the clone %s is gone: %s", clone, exc)
        raise ExportFailed(_cannot_access(name)) from exc
    statuses = (cluster.get("Status"), instance.get("DBInstanceStatus"))
    created = cluster.get("ClusterCreateTime")
    if any(status in _FAILED_CLONE_STATUSES for status in statuses) or (
        created is not None and datetime.now(UTC) - created > CLONE_TIMEOUT
    ):
        log.warning("the clone %s will not become available: cluster %s, instance %s", clone, *statuses)
        raise ExportFailed(_cannot_access(name))
    ready = statuses == ("available", "available")
    return previous.model_copy(
        update={
            "ready": ready,
            "endpoint": cluster.get("Endpoint") if ready else None,
            "port": cluster.get("Port") if ready else None,
            "canceled": ready and task.status == Status.CANCELING,
        }
    ).model_dump()


def cleanup(identifier: str, config: CloudConfig) -> None:
    """Delete the clone's instance and then the clone, whatever the outcome; already gone is fine."""
    if config.source_mode == "direct":
        return
    rds = boto3.client("rds")
    clone = clone_identifier(identifier)
    for call, kwargs in (
        (
            rds.delete_db_instance,
            {"DBInstanceIdentifier": clone_instance_identifier(identifier), "SkipFinalSnapshot": True},
        ),
        (rds.delete_db_cluster, {"DBClusterIdentifier": clone, "SkipFinalSnapshot": True}),
    ):
        try:
            call(**kwargs)
        except (rds.exceptions.DBInstanceNotFoundFault, rds.exceptions.DBClusterNotFoundFault):
            log.info("clone of %s already deleted", identifier)
        except (rds.exceptions.InvalidDBInstanceStateFault, rds.exceptions.InvalidDBClusterStateFault) as exc:
            # Still being created or changed: Step Functions retries Cleanup a while later.
            raise SourceBusy(f"The clone {clone} can't be deleted yet: {exc}") from exc


def _general_warning(reason: str) -> str:
    return json.dumps({"skippedTables": [], "skippedObjectives": [], "general": [{"reason": reason}]})


def merge_warnings(*messages: str | None) -> str | None:
    """WarningMessage JSON texts as one: each list concatenated, duplicates dropped; None when all are empty."""
    merged: dict[str, list[Any]] = {"skippedTables": [], "skippedObjectives": [], "general": []}
    for message in messages:
        for name, entries in (json.loads(message) if message else {}).items():
            merged.setdefault(name, [])
            merged[name] += [e for e in entries if e not in merged[name]]
    return json.dumps(merged) if any(merged.values()) else None


# --- PlanExport -------------------------------------------------------------------------------------------


def source_url(config: CloudConfig, source: Source) -> str:
    """The source's URL from its Secrets Manager secret, at the clone's endpoint and port if any.

    The secret is the stack's (SOURCE_SECRET_ARN, RDS's shape: username, password, host, port) or else
    the cluster's managed master user secret (username and password; the cluster gives host and port).
    The URL is mysql:// for an Aurora MySQL cluster (or a secret whose `engine` is MySQL's), else postgresql://.
    """
    secret = json.loads(_secret(config.source_secret_arn or source.secret_arn, source.secret_version)["SecretString"])
    user, password = quote(secret["username"], safe=""), quote(secret["password"], safe="")
    engine = source.engine or ("mysql" if "mysql" in str(secret.get("engine", "")) else "postgresql")
    default_port = for_name(engine).DEFAULT_PORT
    if source.endpoint:
        host, port = source.endpoint, source.port or secret.get("port", default_port)
    else:
        host, port = secret["host"], secret.get("port", default_port)
    return f"{engine}://{user}:{password}@{host}:{port}/"


def _secret(arn: str | None, version: str | None = None) -> dict[str, Any]:
    """GetSecretValue of the source secret: the given version, or the current one."""
    assert arn is not None, "neither SOURCE_SECRET_ARN nor the cluster's managed secret is known"
    which = {"VersionId": version} if version else {}
    try:
        return boto3.client("secretsmanager").get_secret_value(SecretId=arn, **which)  # type: ignore[no-any-return]
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "unknown")
        log.warning("GetSecretValue %s (version %s): %s", arn, version, exc)
        raise ExportFailed(
            f"dbexport can't read the source secret {arn} (Error code: {code}). Check that it exists and that "
            "the stack's functions may read it and decrypt it with its KMS key."
        ) from exc


def plan(identifier: str, source: dict[str, Any], config: CloudConfig) -> dict[str, Any]:
    """Catalog, skip rules, types and partitions; the manifest goes to the work bucket for the Map."""
    store = config.store()
    task, settings = store.get(identifier), store.settings(identifier)
    url = source_url(config, Source.model_validate(source))
    selection = parse_export_only(task.export_only, engine_of(url) or "postgresql")
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
    url = source_url(config, Source.model_validate(source))
    dsn = for_url(url).database_dsn(url, entry.table.database)
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
    engine = for_url(url)
    for p in plans:
        with engine.connect(engine.database_dsn(url, p.database)) as conn:
            outcomes += [steps.verify_table(p, t, by_table.get(t.target, []), conn) for t in p.tables]
    target = destination(task)
    final = steps.finalize(task, plans, outcomes, target)
    # Notes made before the plan (the clone fallback) stay in the final WarningMessage.
    warning = merge_warnings(task.warning_message, final.warning_message)
    if warning != final.warning_message:
        final = final.model_copy(update={"warning_message": warning})
        steps.write_export_info(final, target)
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
        # A bucket, role or key the access check refused gets nothing (a bucket in another Region, say).
        if error.get("Error") != AccessCheckFailed.__name__:
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
