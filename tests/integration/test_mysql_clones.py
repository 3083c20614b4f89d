"""An Aurora MySQL cluster exported through the state machine: a clone under moto's RDS, read over mysql://.

As in test_clones, every cluster endpoint is the local server (here the MariaDB), and the source secret's
host resolves nowhere, so the data can only come through the clone's endpoint, and only over MySQL's protocol.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from urllib.parse import urlsplit

import boto3
import pyarrow.parquet as pq
import pytest
from moto.rds.models import DBCluster, rds_backends

from dbexport.aws.clones import clone_identifier
from dbexport.tasks.dynamodb import DynamoDbTaskStore
from tests.helpers import database_of, mysql_execute
from tests.integration import test_preflight
from tests.integration.test_clones import SOURCE, Clones, aurora_cluster, clusters, export
from tests.integration.test_state_machine import ACCOUNT, REGION, Deployment

stack = test_preflight.stack
deployment = test_preflight.deployment


@pytest.fixture
def mysql_clones(deployment: Deployment, monkeypatch, mysql_url) -> Iterator[Clones]:
    server = urlsplit(mysql_url)
    monkeypatch.setenv("SOURCE_MODE", "clone")
    aurora_cluster(SOURCE, server.port or 3306, engine="aurora-mysql")
    # The stack's secret holds the MySQL user, at a host that resolves nowhere: data comes from the clone.
    boto3.client("secretsmanager").put_secret_value(
        SecretId="source-cluster-secret",
        SecretString=json.dumps(
            {"username": server.username or "root", "password": server.password or "", "host": "nowhere.invalid"}
        ),
    )
    monkeypatch.setattr(DBCluster, "endpoint", property(lambda self: server.hostname or "127.0.0.1"))
    yield Clones(deployment, DynamoDbTaskStore(deployment.table))
    rds_backends[ACCOUNT][REGION].reset()


def test_an_aurora_mysql_cluster_exports_through_its_clone(mysql_clones, mysql_source):
    mysql_execute(
        mysql_source,
        "CREATE TABLE items (id bigint PRIMARY KEY, name varchar(20), at datetime(6))",
        "INSERT INTO items VALUES (1, 'één', '2024-01-02 03:04:05.000006'), (2, NULL, NULL)",
        "CREATE TABLE other (id int)",
    )
    db = database_of(mysql_source)
    execution, identifier = export(mysql_clones, export_only=[f"{db}.items"])
    assert execution["status"] == "SUCCEEDED", execution
    task = mysql_clones.store.get(identifier)
    assert task.status.value == "COMPLETE", task.failure_cause

    s3 = boto3.client("s3")
    bucket = mysql_clones.deployment.bucket
    root = f"exports/{identifier}"
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix=root)["Contents"]]
    data = [k for k in keys if k.startswith(f"{root}/{db}/{db}.items/") and k.endswith(".parquet")]
    assert data and f"{root}/{db}/{db}.items/1/_SUCCESS" in keys
    assert not [k for k in keys if "other" in k]
    rows = [
        r
        for k in data
        for r in pq.read_table(io.BytesIO(s3.get_object(Bucket=bucket, Key=k)["Body"].read())).to_pylist()
    ]
    assert sorted(rows, key=lambda r: r["id"]) == [
        {"id": 1, "name": "één", "at": __import__("datetime").datetime(2024, 1, 2, 3, 4, 5, 6)},
        {"id": 2, "name": None, "at": None},
    ]
    (info_key,) = [k for k in keys if "/export_tables_info_" in k]
    (entry,) = json.loads(s3.get_object(Bucket=bucket, Key=info_key)["Body"].read())["perTableStatus"]
    assert entry["target"] == f"{db}.items"
    assert entry["tableStatistics"]["sourceRowCount"] == 2
    # The clone is gone; the source stays.
    assert clusters() == [SOURCE]
    assert clone_identifier(identifier) not in clusters()


def test_a_schema_form_in_export_only_is_refused_for_an_aurora_mysql_cluster(mysql_clones, mysql_source):
    db = database_of(mysql_source)
    execution, _ = export(mysql_clones, export_only=[f"{db}.{db}.items"])
    assert execution["status"] == "FAILED"
    assert execution.get("error") == "InvalidExportOnly", execution
    assert clusters() == [SOURCE]  # refused before any clone
