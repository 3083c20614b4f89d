"""PrepareSource, CheckSource and Cleanup: the copy-on-write clone the export reads, from its making to its end.

Clone mode reads a clone of the source cluster as of the export's start, deleted whatever the outcome; direct
mode reads the cluster itself, and these steps have little to do.
"""

from __future__ import annotations

import hashlib
import json
import logging
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import boto3

from dbexport.aws import contract
from dbexport.aws.clusters import cannot_access, cluster_engine, cluster_name, managed_secret, source_cluster
from dbexport.aws.events import Source
from dbexport.aws.secrets import secret_value
from dbexport.errors import ExportFailed, SourceBusy
from dbexport.models import Status

if TYPE_CHECKING:
    from dbexport.aws.config import CloudConfig
    from dbexport.aws.events import SourceEvent, TaskEvent

log = logging.getLogger(__name__)

# Aurora allows 15 copy-on-write clones of a cluster; past that the export copies it (RestoreType full-copy).
MAX_CLONES = 15
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
# RDS cluster and instance identifiers: at most 63 letters, digits and single hyphens, not ending in a hyphen
# (CreateDBCluster / CreateDBInstance, DBClusterIdentifier constraints).
MAX_RDS_IDENTIFIER = 63
_INSTANCE_SUFFIX = "-1"
_DIGEST_CHARACTERS = 8
# The tag that says which task a clone belongs to.
TASK_TAG = "dbexport:export-task"


def clone_identifier(identifier: str) -> str:
    """The clone's cluster identifier: derived from the task, so Cleanup finds it without state.

    `dbexport-<task id>` where that leaves room for the instance's suffix; a longer task id keeps its start and
    ends in a digest of the whole id, so two task ids never share a clone and no name ends in a hyphen.
    """
    name = f"{contract.CLONE_PREFIX}{identifier}"
    room = MAX_RDS_IDENTIFIER - len(_INSTANCE_SUFFIX)
    if len(name) <= room:
        return name
    digest = hashlib.sha256(identifier.encode()).hexdigest()[:_DIGEST_CHARACTERS]
    return f"{name[: room - _DIGEST_CHARACTERS - 1].rstrip('-')}-{digest}"


def clone_instance_identifier(identifier: str) -> str:
    """The clone's one instance."""
    return f"{clone_identifier(identifier)}{_INSTANCE_SUFFIX}"


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


def prepare_source(event: TaskEvent, config: CloudConfig) -> Source:
    """Direct mode reads the cluster itself; clone mode starts a copy-on-write clone to read instead.

    The clone is the source as of its latest restorable time, with one instance; SourceReady waits for it.
    A cluster that already has MAX_CLONES clones is copied instead (RestoreType full-copy), and the task's
    WarningMessage says so.
    """
    identifier = event.export_task_identifier
    store = config.store()
    task = store.get(identifier)
    if task.status == Status.CANCELING:
        return Source(canceled=True)
    name = cluster_name(task.source_arn)
    rds = boto3.client("rds")
    if config.source_mode == "direct":
        if config.source_secret_arn:
            return Source()
        cluster = source_cluster(rds, task)
        return Source(
            endpoint=cluster["Endpoint"],
            port=cluster.get("Port"),
            secret_arn=managed_secret(cluster, name),
            engine=cluster_engine(cluster),
        )
    cluster = source_cluster(rds, task)
    secret_arn = None if config.source_secret_arn else managed_secret(cluster, name)
    secret_version = secret_value(config.source_secret_arn or secret_arn)["VersionId"]
    clone = clone_identifier(identifier)
    clones = clone_count(rds, cluster, ours=clone)  # ours: when PrepareSource runs again
    restore_type = "copy-on-write" if clones < MAX_CLONES else "full-copy"
    tags = [{"Key": TASK_TAG, "Value": identifier}]
    restore: dict[str, Any] = {
        "SourceDBClusterIdentifier": cluster["DBClusterIdentifier"],
        "DBClusterIdentifier": clone,
        "RestoreType": restore_type,
        "UseLatestRestorableTime": True,
        "DeletionProtection": False,
        "Tags": tags,
    }
    # The clone listens where the source does (its security groups allow that port) and runs the source's
    # cluster parameters (time zone, sql_mode, ...: what the exported text is made of), not the engine's defaults.
    if cluster.get("Port"):
        restore["Port"] = cluster["Port"]
    if cluster.get("DBClusterParameterGroup"):
        restore["DBClusterParameterGroupName"] = cluster["DBClusterParameterGroup"]
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
    except rds.exceptions.DBClusterAlreadyExistsFault as exc:
        # PrepareSource ran again for this task; a cluster of that name made for anything else is not read.
        owner = _task_of(rds, clone)
        if owner != identifier:
            raise ExportFailed(
                f"dbexport can't clone the DB cluster {name}: a DB cluster named {clone} exists already and is not "
                f"this export task's clone (its {TASK_TAG} tag is {owner!r}). Delete or rename it and retry."
            ) from exc
        log.info("the clone %s exists already (PrepareSource ran again)", clone)
    except (rds.exceptions.DBClusterNotFoundFault, rds.exceptions.InvalidDBClusterStateFault) as exc:
        log.warning("cloning %s failed: %s", name, exc)
        raise ExportFailed(cannot_access(name)) from exc
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
            PubliclyAccessible=False,  # whatever the subnet group's default: only the stack's functions read it
            Tags=tags,
        )
    except rds.exceptions.DBInstanceAlreadyExistsFault:
        log.info("the clone's instance exists already (PrepareSource ran again)")
    return Source(ready=False, secret_arn=secret_arn, secret_version=secret_version, engine=cluster_engine(cluster))


def _instance_class(rds: Any, cluster: dict[str, Any]) -> str:
    """The clone's instance is sized like the source's writer (any instance of it, failing that)."""
    members = sorted(cluster.get("DBClusterMembers", []), key=lambda m: not m.get("IsClusterWriter"))
    if members:
        (instance,) = rds.describe_db_instances(DBInstanceIdentifier=members[0]["DBInstanceIdentifier"])["DBInstances"]
        return str(instance["DBInstanceClass"])
    return "db.serverless" if cluster.get("ServerlessV2ScalingConfiguration") else _DEFAULT_INSTANCE_CLASS


def source_ready(event: SourceEvent, config: CloudConfig) -> Source:
    """Whether the clone and its instance are available; Step Functions waits between two asks.

    A task canceled meanwhile ends once the clone is available (a clone still being created can't be
    deleted); one that fails, or takes longer than CLONE_TIMEOUT, fails the task.
    """
    identifier, previous = event.export_task_identifier, event.source
    if config.source_mode == "direct":
        return previous.model_copy(update={"ready": True})
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
        raise ExportFailed(cannot_access(name)) from exc
    statuses = (cluster.get("Status"), instance.get("DBInstanceStatus"))
    created = cluster.get("ClusterCreateTime")
    if any(status in _FAILED_CLONE_STATUSES for status in statuses) or (
        created is not None and datetime.now(UTC) - created > CLONE_TIMEOUT
    ):
        log.warning("the clone %s will not become available: cluster %s, instance %s", clone, *statuses)
        raise ExportFailed(cannot_access(name))
    ready = statuses == ("available", "available")
    return previous.model_copy(
        update={
            "ready": ready,
            "endpoint": cluster.get("Endpoint") if ready else None,
            "port": cluster.get("Port") if ready else None,
            "canceled": ready and task.status == Status.CANCELING,
        }
    )


def cleanup(event: TaskEvent, config: CloudConfig) -> None:
    """Delete the clone's instance and then the clone, whatever the outcome; already gone is fine."""
    if config.source_mode == "direct":
        return
    identifier = event.export_task_identifier
    rds = boto3.client("rds")
    clone = clone_identifier(identifier)
    try:
        owner = _task_of(rds, clone)
    except rds.exceptions.DBClusterNotFoundFault:
        log.info("clone of %s already deleted", identifier)
        return
    if owner != identifier:  # a cluster of that name that this task did not make is never deleted
        log.warning("not deleting the DB cluster %s: it is not the clone of %s (tag %r)", clone, identifier, owner)
        return
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


def _task_of(rds: Any, cluster: str) -> str | None:
    """The export task a DB cluster was made for (its TASK_TAG), None for one that has no such tag."""
    (described,) = rds.describe_db_clusters(DBClusterIdentifier=cluster)["DBClusters"]
    return {t.get("Key"): t.get("Value") for t in described.get("TagList", [])}.get(TASK_TAG)


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
