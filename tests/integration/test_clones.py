"""The clone lifecycle (PrepareSource, the Wait loop, Cleanup) under moto's RDS, with real data.

The state machine runs in clone mode. moto's RDS creates and deletes the clones; what it does not model,
the fixture adds: every cluster endpoint is the local PostgreSQL (moto's resolve nowhere), and a
copy-on-write clone joins its source's clone group (moto records no CloneGroupId), as Aurora's do. The
source secret's host resolves nowhere, so an export that reads anything read it through the clone's endpoint.
The RDS requests dbexport sends are recorded as sent (moto ignores RestoreType).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any
from urllib.parse import urlsplit

import boto3
import pytest
from moto.rds.exceptions import RDSClientError
from moto.rds.models import DBCluster, RDSBackend, rds_backends

from dbexport.aws.clones import clone_identifier
from dbexport.errors import ExportTaskNotFound
from dbexport.tasks.dynamodb import DynamoDbTaskStore
from tests.helpers import database_of, execute
from tests.integration import test_preflight
from tests.integration.test_preflight import on_call, wait_for
from tests.integration.test_state_machine import ACCOUNT, CLUSTER_ARN, REGION, Deployment, read_exported

# moto and the deployed stack, set up once for this module (see test_preflight.stack); `deployment` is one
# test's view of it.
stack = test_preflight.stack
deployment = test_preflight.deployment

SOURCE = "source-cluster"
WRITER_CLASS = "db.r6g.xlarge"


@dataclass
class Clones:
    deployment: Deployment
    store: DynamoDbTaskStore
    sent: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # RDS requests, by operation


def aurora_cluster(name: str, port: int, engine: str = "aurora-postgresql", **extra: Any) -> None:
    rds = boto3.client("rds")
    rds.create_db_cluster(
        DBClusterIdentifier=name,
        Engine=engine,
        MasterUsername="postgres",
        **({"MasterUserPassword": "unused-password"} if "ManageMasterUserPassword" not in extra else {}),
        Port=port,
        **extra,
    )
    rds.create_db_instance(
        DBInstanceIdentifier=f"{name}-1",
        DBClusterIdentifier=name,
        Engine=engine,
        DBInstanceClass=WRITER_CLASS,
    )


@pytest.fixture
def clones(deployment: Deployment, monkeypatch, pg_dsn) -> Iterator[Clones]:
    server = urlsplit(pg_dsn)
    host, port = server.hostname or "127.0.0.1", server.port or 5432
    monkeypatch.setenv("SOURCE_MODE", "clone")
    aurora_cluster(SOURCE, port)
    # The stack's secret names the source's own host, which resolves nowhere here: data comes from the clone.
    secrets = boto3.client("secretsmanager")
    secret = json.loads(secrets.get_secret_value(SecretId="source-cluster-secret")["SecretString"])
    secrets.put_secret_value(
        SecretId="source-cluster-secret", SecretString=json.dumps({**secret, "host": "nowhere.invalid"})
    )

    # moto's endpoints resolve nowhere: here every cluster's is the local PostgreSQL (the port is the cluster's).
    monkeypatch.setattr(DBCluster, "endpoint", property(lambda self: host))
    # moto records no clone group: a copy-on-write clone joins its source's, as on Aurora.
    restore = RDSBackend.restore_db_cluster_to_point_in_time

    def restore_in_clone_group(self: RDSBackend, **params: Any) -> DBCluster:
        # RDS refuses a cluster name in use with DBClusterAlreadyExistsFault; moto has no such error.
        if params["db_cluster_identifier"] in self.clusters:
            raise RDSClientError("DBClusterAlreadyExistsFault", "DB Cluster already exists")
        clone = restore(self, **params)
        if params.get("restore_type") == "copy-on-write":
            source = self.clusters[params["source_db_cluster_identifier"]]
            source.clone_group_id = getattr(source, "clone_group_id", None) or str(uuid.uuid4())
            clone.clone_group_id = source.clone_group_id
        return clone

    monkeypatch.setattr(RDSBackend, "restore_db_cluster_to_point_in_time", restore_in_clone_group)

    world = Clones(deployment, DynamoDbTaskStore(deployment.table))

    def record(params: dict[str, Any], model: Any, **kwargs: Any) -> None:
        world.sent.setdefault(model.name, []).append(dict(params))

    on_call("before-parameter-build.rds", record)
    yield world
    # The next test starts with no cluster (the stack is shared by the module's tests; RDS is the clones').
    rds_backends[ACCOUNT][REGION].reset()


def export(
    clones: Clones,
    *,
    source_arn: str = CLUSTER_ARN,
    export_only: list[str] | None = None,
    identifier: str | None = None,
) -> tuple[dict, str]:
    identifier = identifier or f"clone-{uuid.uuid4().hex[:8]}"
    d = clones.deployment
    request = {
        "ExportTaskIdentifier": identifier,
        "SourceArn": source_arn,
        "S3BucketName": d.bucket,
        "S3Prefix": "exports",
        "IamRoleArn": d.role_arn,
        "KmsKeyId": d.key_id,
        "ExportOnly": export_only or [],
    }
    arn = boto3.client("stepfunctions").start_execution(
        stateMachineArn=d.machine_arn, name=identifier, input=json.dumps(request)
    )["executionArn"]
    return wait_for(arn), identifier


def clusters() -> list[str]:
    return sorted(c["DBClusterIdentifier"] for c in boto3.client("rds").describe_db_clusters()["DBClusters"])


def instances() -> list[str]:
    return sorted(i["DBInstanceIdentifier"] for i in boto3.client("rds").describe_db_instances()["DBInstances"])


@pytest.fixture
def small(source: str) -> str:
    execute(
        source,
        "CREATE TABLE items (id bigint PRIMARY KEY, name text);"
        "INSERT INTO items SELECT i, 'item ' || i FROM generate_series(1, 1000) i; ANALYZE;",
    )
    return database_of(source)


def ran_functions(clones: Clones) -> list[str]:
    ran: list[str] = []
    clones.deployment.before_invoke.append(lambda function, event: ran.append(function))
    return ran


# --- the clone's life -------------------------------------------------------------------------------------


def test_an_export_reads_a_copy_on_write_clone_that_is_deleted_afterwards(clones, small):
    ran = ran_functions(clones)
    while_waiting: list[tuple[str, list[str], list[str]]] = []

    def look_while_waiting(function: str, event: dict) -> None:
        if function == "source_ready":
            task = clones.store.get(event["export_task_identifier"])
            while_waiting.append((task.status.value, clusters(), instances()))

    clones.deployment.before_invoke.append(look_while_waiting)
    execution, identifier = export(clones, export_only=[f"{small}.public.items"])
    assert execution["status"] == "SUCCEEDED", execution
    task = clones.store.get(identifier)
    assert task.status.value == "COMPLETE", task.failure_cause
    assert task.warning_message is None

    clone = clone_identifier(identifier)
    (restore,) = clones.sent["RestoreDBClusterToPointInTime"]
    assert restore["RestoreType"] == "copy-on-write"
    assert restore["UseLatestRestorableTime"] is True
    assert (restore["SourceDBClusterIdentifier"], restore["DBClusterIdentifier"]) == (SOURCE, clone)
    # Like its source: the port its security groups allow, its cluster parameters; never public.
    source = boto3.client("rds").describe_db_clusters(DBClusterIdentifier=SOURCE)["DBClusters"][0]
    assert (restore["Port"], restore["DBClusterParameterGroupName"]) == (
        source["Port"],
        source["DBClusterParameterGroup"],
    )
    (instance,) = clones.sent["CreateDBInstance"]
    assert (instance["DBClusterIdentifier"], instance["DBInstanceClass"]) == (clone, WRITER_CLASS)
    assert instance["PubliclyAccessible"] is False

    # The Wait loop ran with the task STARTING and the clone there; then the export read the clone.
    assert ran.index("prepare_source") < ran.index("source_ready") < ran.index("plan")
    assert while_waiting == [("STARTING", sorted([SOURCE, clone]), sorted([f"{SOURCE}-1", f"{clone}-1"]))]
    exported, _ = read_exported(clones.deployment, identifier, small, "items")
    assert sorted(exported.column("id").to_pylist()) == list(range(1, 1001))

    assert (clusters(), instances()) == ([SOURCE], [f"{SOURCE}-1"])
    assert clones.sent["DeleteDBInstance"][0]["DBInstanceIdentifier"] == f"{clone}-1"


def test_a_cluster_that_has_the_clones_name_but_is_not_the_tasks_is_neither_read_nor_deleted(clones, small):
    identifier = f"clone-{uuid.uuid4().hex[:8]}"
    foreign = clone_identifier(identifier)
    boto3.client("rds").create_db_cluster(
        DBClusterIdentifier=foreign, Engine="aurora-postgresql", MasterUsername="u", MasterUserPassword="password1"
    )
    execution, _ = export(clones, export_only=[f"{small}.public.items"], identifier=identifier)
    assert execution["status"] == "FAILED"
    task = clones.store.get(identifier)
    assert task.status.value == "FAILED"
    assert f"a DB cluster named {foreign} exists already and is not this export task's clone" in (
        task.failure_cause or ""
    )
    assert foreign in clusters()
    assert "DeleteDBCluster" not in clones.sent


def test_a_failed_export_deletes_its_clone(clones, small):
    execution, identifier = export(clones, export_only=[f"{small}.public.no_such_table"])
    assert execution["status"] == "FAILED"
    task = clones.store.get(identifier)
    assert task.status.value == "FAILED" and "no_such_table" in (task.failure_cause or "")
    assert len(clones.sent["RestoreDBClusterToPointInTime"]) == 1
    assert (clusters(), instances()) == ([SOURCE], [f"{SOURCE}-1"])


def test_an_export_canceled_while_the_clone_is_made_deletes_it(clones, small):
    ran = ran_functions(clones)

    def cancel_while_waiting(function: str, event: dict) -> None:
        if function == "source_ready":
            clones.store.cancel(event["export_task_identifier"])

    clones.deployment.before_invoke.append(cancel_while_waiting)
    execution, identifier = export(clones, export_only=[f"{small}.public.items"])
    assert execution["status"] == "SUCCEEDED", execution
    assert clones.store.get(identifier).status.value == "CANCELED"
    assert "plan" not in ran and "export_partition" not in ran
    assert len(clones.sent["RestoreDBClusterToPointInTime"]) == 1
    assert (clusters(), instances()) == ([SOURCE], [f"{SOURCE}-1"])


def test_an_export_canceled_before_the_clone_is_made_makes_none(clones, small):
    def cancel_first(function: str, event: dict) -> None:
        if function == "prepare_source":
            clones.store.cancel(event["export_task_identifier"])

    clones.deployment.before_invoke.append(cancel_first)
    execution, identifier = export(clones, export_only=[f"{small}.public.items"])
    assert execution["status"] == "SUCCEEDED", execution
    assert clones.store.get(identifier).status.value == "CANCELED"
    assert "RestoreDBClusterToPointInTime" not in clones.sent
    assert clusters() == [SOURCE]


def test_a_clone_that_never_becomes_available_fails_the_task_and_is_deleted(clones, small):
    def break_the_clone(function: str, event: dict) -> None:
        if function == "source_ready":
            clone = clone_identifier(event["export_task_identifier"])
            rds_backends[ACCOUNT][REGION].clusters[clone].status = "inaccessible-encryption-credentials"

    clones.deployment.before_invoke.append(break_the_clone)
    execution, identifier = export(clones, export_only=[f"{small}.public.items"])
    assert execution["status"] == "FAILED"
    task = clones.store.get(identifier)
    assert task.failure_cause == f"Failed to find or access the source DB cluster: {SOURCE}"
    assert (clusters(), instances()) == ([SOURCE], [f"{SOURCE}-1"])


def test_a_clone_that_cannot_be_deleted_yet_is_deleted_on_a_later_attempt(clones, small):
    refused: list[str] = []

    def busy_once(params: dict, **kwargs: Any) -> Any:
        if not refused:
            refused.append("DeleteDBCluster")
            error = {"Error": {"Code": "InvalidDBClusterStateFault", "Message": "Cluster is busy"}}
            return SimpleNamespace(status_code=400, headers={}), {**error, "ResponseMetadata": {"HTTPStatusCode": 400}}
        return None

    on_call("before-call.rds.DeleteDBCluster", busy_once)
    execution, _ = export(clones, export_only=[f"{small}.public.items"])
    assert execution["status"] == "SUCCEEDED", execution
    assert refused and len(clones.sent["DeleteDBCluster"]) == 2
    assert clusters() == [SOURCE]


# --- at most 15 clones ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("existing", "restore_type"), [(14, "copy-on-write"), (15, "full-copy")])
def test_a_cluster_with_15_clones_is_copied_instead_and_the_task_says_so(clones, small, existing, restore_type):
    backend = rds_backends[ACCOUNT][REGION]
    backend.clusters[SOURCE].clone_group_id = "clone-group-1"
    others = [f"someone-elses-clone-{n}" for n in range(existing)]
    for name in others:
        boto3.client("rds").create_db_cluster(
            DBClusterIdentifier=name, Engine="aurora-postgresql", MasterUsername="u", MasterUserPassword="password1"
        )
        backend.clusters[name].clone_group_id = "clone-group-1"
    boto3.client("rds").create_db_cluster(  # another group's clone does not count
        DBClusterIdentifier="unrelated", Engine="aurora-postgresql", MasterUsername="u", MasterUserPassword="password1"
    )
    backend.clusters["unrelated"].clone_group_id = "clone-group-2"

    execution, identifier = export(clones, export_only=[f"{small}.public.items"])
    assert execution["status"] == "SUCCEEDED", execution
    (restore,) = clones.sent["RestoreDBClusterToPointInTime"]
    assert restore["RestoreType"] == restore_type
    task = clones.store.get(identifier)
    assert task.status.value == "COMPLETE", task.failure_cause
    exported, _ = read_exported(clones.deployment, identifier, small, "items")
    assert exported.num_rows == 1000
    if restore_type == "full-copy":
        note = (
            f"The source DB cluster {SOURCE} already has 15 clones, the most Aurora allows, so dbexport copied it "
            "(RestoreType full-copy) instead of cloning it, which takes longer."
        )
        assert json.loads(task.warning_message or "{}")["general"] == [{"reason": note}]
        info_key = f"exports/{identifier}/export_info_{identifier}.json"
        info = json.loads(boto3.client("s3").get_object(Bucket=clones.deployment.bucket, Key=info_key)["Body"].read())
        assert json.loads(info["warningMessage"])["general"] == [{"reason": note}]
    else:
        assert task.warning_message is None
    assert clusters() == sorted([SOURCE, "unrelated", *others])


# --- what can't be exported -------------------------------------------------------------------------------


def missing(port: int) -> tuple[str, str]:
    return "missing-cluster", "DBClusterNotFoundFault"


def plain_postgres(port: int) -> tuple[str, str]:
    boto3.client("rds").create_db_cluster(
        DBClusterIdentifier="multi-az-postgres",
        Engine="postgres",
        MasterUsername="u",
        MasterUserPassword="password1",
        DBClusterInstanceClass="db.m5d.large",
        AllocatedStorage=100,
        Iops=1000,
        StorageType="io1",
    )
    return "multi-az-postgres", "InvalidExportSourceState"


def serverless_v1(port: int) -> tuple[str, str]:
    boto3.client("rds").create_db_cluster(
        DBClusterIdentifier="serverless-v1",
        Engine="aurora-postgresql",
        EngineMode="serverless",
        MasterUsername="u",
        MasterUserPassword="password1",
    )
    return "serverless-v1", "InvalidExportSourceState"


def stopped(port: int) -> tuple[str, str]:
    aurora_cluster("stopped-cluster", port)
    boto3.client("rds").describe_db_clusters(DBClusterIdentifier="stopped-cluster")  # moto: creating -> available
    boto3.client("rds").stop_db_cluster(DBClusterIdentifier="stopped-cluster")
    return "stopped-cluster", "InvalidExportSourceState"


MESSAGES = {
    "missing-cluster": "DBCluster missing-cluster not found: SourceArn must name an Aurora PostgreSQL or Aurora "
    "MySQL DB cluster of this account and Region.",
    "multi-az-postgres": "The DB cluster multi-az-postgres runs the postgres engine: only Aurora PostgreSQL and "
    "Aurora MySQL DB clusters can be exported.",
    "serverless-v1": "The DB cluster serverless-v1 is an Aurora Serverless v1 cluster (EngineMode serverless), "
    "which can't be exported: only provisioned Aurora clusters (Aurora Serverless v2 included) can.",
    "stopped-cluster": "The DB cluster stopped-cluster is stopped: it must be available to be exported. "
    "Start it or wait, then retry.",
}


@pytest.mark.parametrize("make_source", [missing, plain_postgres, serverless_v1, stopped])
def test_a_source_that_is_not_an_exportable_aurora_cluster_is_refused(clones, pg_dsn, make_source):
    name, code = make_source(urlsplit(pg_dsn).port or 5432)
    ran = ran_functions(clones)
    execution, identifier = export(clones, source_arn=f"arn:aws:rds:{REGION}:{ACCOUNT}:cluster:{name}")
    assert execution["status"] == "FAILED"
    assert execution["error"] == code
    assert MESSAGES[name] in execution["cause"]
    assert ran == ["validate"]
    with pytest.raises(ExportTaskNotFound):
        clones.store.get(identifier)  # refused: nothing registered
    assert "RestoreDBClusterToPointInTime" not in clones.sent


# --- credentials ------------------------------------------------------------------------------------------


def test_without_a_stack_secret_the_clusters_managed_secret_is_used(clones, small, pg_dsn, monkeypatch):
    port = urlsplit(pg_dsn).port or 5432
    aurora_cluster("managed", port, ManageMasterUserPassword=True)
    (cluster,) = boto3.client("rds").describe_db_clusters(DBClusterIdentifier="managed")["DBClusters"]
    managed_secret = cluster["MasterUserSecret"]["SecretArn"]
    # RDS keeps the master password there; here it is the local server's user.
    user = urlsplit(pg_dsn).username or "postgres"
    boto3.client("secretsmanager").put_secret_value(
        SecretId=managed_secret, SecretString=json.dumps({"username": user, "password": "unused"})
    )
    monkeypatch.delenv("SOURCE_SECRET_ARN")
    execution, identifier = export(
        clones, source_arn=f"arn:aws:rds:{REGION}:{ACCOUNT}:cluster:managed", export_only=[f"{small}.public.items"]
    )
    assert execution["status"] == "SUCCEEDED", execution
    assert clones.store.get(identifier).status.value == "COMPLETE"
    exported, _ = read_exported(clones.deployment, identifier, small, "items")
    assert exported.num_rows == 1000
    assert clusters() == sorted(["managed", SOURCE])


def test_the_secret_as_it_was_when_the_clone_was_made_logs_in_to_the_clone(clones, small):
    """A rotation during the export changes the source's password, not the clone's: the workers keep the old one."""
    secrets = boto3.client("secretsmanager")

    def rotate_while_waiting(function: str, event: dict) -> None:
        if function == "source_ready":
            secret = json.loads(secrets.get_secret_value(SecretId="source-cluster-secret")["SecretString"])
            secrets.put_secret_value(
                SecretId="source-cluster-secret",
                SecretString=json.dumps({**secret, "username": "rotated_user_the_clone_does_not_have"}),
            )

    clones.deployment.before_invoke.append(rotate_while_waiting)
    execution, identifier = export(clones, export_only=[f"{small}.public.items"])
    assert execution["status"] == "SUCCEEDED", execution
    assert clones.store.get(identifier).status.value == "COMPLETE"
    current = json.loads(secrets.get_secret_value(SecretId="source-cluster-secret")["SecretString"])
    assert current["username"] == "rotated_user_the_clone_does_not_have"  # the rotation did happen
    exported, _ = read_exported(clones.deployment, identifier, small, "items")
    assert exported.num_rows == 1000


def test_a_source_secret_that_cannot_be_read_fails_the_task_naming_it_before_any_clone(clones, small, monkeypatch):
    missing = f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:no-such-secret-AbCdEf"
    monkeypatch.setenv("SOURCE_SECRET_ARN", missing)
    execution, identifier = export(clones, export_only=[f"{small}.public.items"])
    assert execution["status"] == "FAILED"
    task = clones.store.get(identifier)
    assert task.status.value == "FAILED"
    assert task.failure_cause == (
        f"dbexport can't read the source secret {missing} (Error code: ResourceNotFoundException). Check that it "
        "exists and that the stack's functions may read it and decrypt it with its KMS key."
    )
    assert "RestoreDBClusterToPointInTime" not in clones.sent
    assert (clusters(), instances()) == ([SOURCE], [f"{SOURCE}-1"])
