"""The source cluster: which Aurora clusters can be exported, and what the export reads from their description."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from dbexport.errors import DBClusterNotFoundFault, ExportFailed, InvalidExportSourceState

if TYPE_CHECKING:
    from dbexport.models import ExportTask
    from dbexport.urls import EngineName

log = logging.getLogger(__name__)

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


def source_cluster(rds: Any, task: ExportTask) -> dict[str, Any]:
    """The source, checked again: it may have gone or changed since the request was accepted."""
    try:
        return exportable_cluster(rds, task.source_arn)
    except (DBClusterNotFoundFault, InvalidExportSourceState) as exc:
        log.warning("source cluster of %s: %s", task.export_task_identifier, exc.message)
        raise ExportFailed(cannot_access(cluster_name(task.source_arn))) from exc


def cannot_access(name: str) -> str:
    """The anchor's FailureCause for a source cluster that went away or can't be read."""
    return f"Failed to find or access the source DB cluster: {name}"


def managed_secret(cluster: dict[str, Any], name: str) -> str:
    """The cluster's own master user secret (ManageMasterUserPassword), for a stack that names no secret."""
    arn = (cluster.get("MasterUserSecret") or {}).get("SecretArn")
    if not arn:
        raise ExportFailed(
            f"dbexport has no credentials for the DB cluster {name}: the stack names no source secret "
            "(sourceSecretArn) and the cluster has no master user secret managed in Secrets Manager."
        )
    return str(arn)
