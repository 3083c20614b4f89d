"""statemachine/export.asl.json executed end to end by moto's Step Functions engine.

The Lambdas run in-process as the project's real handlers; the source is the real PostgreSQL;
S3, DynamoDB, SNS, EventBridge, KMS, IAM, STS and Secrets Manager are moto's.
"""

from __future__ import annotations

import importlib
import io
import json
import re
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from unittest import mock

import boto3
import moto.awslambda.models as lambda_models
import pyarrow.parquet as pq
import pytest
from moto import mock_aws
from moto.dynamodb.responses import DynamoHandler
from moto.stepfunctions.parser.asl.component.common.retry import retrier_decl
from moto.stepfunctions.parser.asl.component.state.wait.wait_function.wait_function import WaitFunction

from dbexport import cli, remote
from dbexport.aws.events import StepError
from dbexport.errors import SourceUnavailable
from dbexport.outcomes import Failure
from dbexport.tasks.dynamodb import DynamoDbTaskStore
from dbexport.tasks.lifecycle import make_query
from tests.helpers import database_of, execute
from tests.integration.test_source_faults import LOST, fault_after_first_batch, terminate_postgres_reads

ASL = Path(__file__).parents[2] / "statemachine" / "export.asl.json"
REGION = "us-east-1"
ACCOUNT = "123456789012"
CLUSTER_ARN = f"arn:aws:rds:{REGION}:{ACCOUNT}:cluster:source-cluster"
FUNCTIONS = {
    "Validate": "validate",
    "CheckAccess": "check_access",
    "PrepareSource": "prepare_source",
    "SourceReady": "source_ready",
    "Plan": "plan",
    "ExportPartition": "export_partition",
    "Finalize": "finalize",
    "RecordFailure": "record_failure",
    "Cleanup": "cleanup",
}


# Imported here, not in moto's worker threads: importing in a thread that moto runs was seen to hang.
HANDLERS = {name: importlib.import_module(f"lambdas.{name}").handler for name in FUNCTIONS.values()}


@dataclass
class FakeContext:
    function_name: str
    aws_request_id: str = "test-request"
    memory_limit_in_mb: int = 1024
    invoked_function_arn: str = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:test"


@dataclass
class Deployment:
    """What `cdk deploy` would have created, in moto."""

    machine_arn: str
    table: str
    bucket: str
    role_arn: str
    key_id: str
    queue_url: str
    events_queue_url: str
    # Called before each handler runs, with the function's short name and its event: lets a test
    # break or slow one invocation.
    before_invoke: list


@pytest.fixture
def aws(monkeypatch):
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": REGION,
        "POWERTOOLS_TRACE_DISABLED": "1",
        "POWERTOOLS_METRICS_NAMESPACE": "dbexport-test",
        "POWERTOOLS_SERVICE_NAME": "dbexport",
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    # moto's DynamoDB is not thread-safe, and the Map runs handlers in parallel: one request at a time,
    # as DynamoDB applies each request atomically.
    one_at_a_time = threading.RLock()
    call_action = DynamoHandler.call_action

    def serialized(self):
        with one_at_a_time:
            return call_action(self)

    with (
        mock.patch.object(DynamoHandler, "call_action", serialized),
        mock_aws(config={"stepfunctions": {"execute_state_machine": True}}),
        mock.patch.object(WaitFunction, "_wait_interval", lambda self, env, wait_seconds: None),
        # Retry intervals pass at once. Only the retrier's own `time`: patching time.sleep itself would
        # also turn every poll loop into a busy loop that starves moto's worker threads.
        mock.patch.object(retrier_decl, "time", SimpleNamespace(sleep=lambda seconds: None)),
    ):
        yield


@pytest.fixture
def deployment(aws, monkeypatch, pg_dsn) -> Deployment:
    table = "dbexport-tasks"
    boto3.client("dynamodb").create_table(
        TableName=table,
        AttributeDefinitions=[
            {"AttributeName": "pk", "AttributeType": "S"},
            {"AttributeName": "sk", "AttributeType": "S"},
        ],
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
        BillingMode="PAY_PER_REQUEST",
    )
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket="dbexport-work")
    s3.create_bucket(Bucket="export-target")
    from urllib.parse import urlsplit

    server = urlsplit(pg_dsn)
    secret_arn = boto3.client("secretsmanager").create_secret(
        Name="source-cluster-secret",
        SecretString=json.dumps(
            {
                "username": server.username or "postgres",
                "password": "unused",
                "host": server.hostname,
                "port": server.port or 5432,
            }
        ),
    )["ARN"]
    iam = boto3.client("iam")
    trust = {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Principal": {"AWS": "*"}, "Action": "sts:AssumeRole"}],
    }
    role_arn = iam.create_role(RoleName="export-role", AssumeRolePolicyDocument=json.dumps(trust))["Role"]["Arn"]
    lambda_role = iam.create_role(RoleName="lambda-role", AssumeRolePolicyDocument=json.dumps(trust))["Role"]["Arn"]
    key_id = boto3.client("kms").create_key()["KeyMetadata"]["KeyId"]
    topic_arn = boto3.client("sns").create_topic(Name="dbexport-events")["TopicArn"]
    sqs = boto3.client("sqs")
    queue_url = sqs.create_queue(QueueName="topic-subscriber")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    boto3.client("sns").subscribe(
        TopicArn=topic_arn, Protocol="sqs", Endpoint=queue_arn, Attributes={"RawMessageDelivery": "true"}
    )
    events_queue_url = sqs.create_queue(QueueName="event-rule-target")["QueueUrl"]
    events_queue_arn = sqs.get_queue_attributes(QueueUrl=events_queue_url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    events = boto3.client("events")
    events.put_rule(Name="export-finished", EventPattern=json.dumps({"source": ["dbexport"]}))
    events.put_targets(Rule="export-finished", Targets=[{"Id": "queue", "Arn": events_queue_arn}])

    for name, value in {
        "TASK_TABLE_NAME": table,
        "WORK_BUCKET_NAME": "dbexport-work",
        "SOURCE_SECRET_ARN": secret_arn,
        "SOURCE_MODE": "direct",
        "MAX_CONCURRENCY": "4",
    }.items():
        monkeypatch.setenv(name, value)

    lam = boto3.client("lambda")
    substitutions = {"TopicArn": topic_arn, "WorkBucketName": "dbexport-work", "EventBusName": "default"}
    for name in FUNCTIONS:
        arn = lam.create_function(
            FunctionName=name,
            Runtime="python3.12",
            Role=lambda_role,
            Handler=f"lambdas.{FUNCTIONS[name]}.handler",
            Code={"ZipFile": b"unused: the handler runs in-process"},
        )["FunctionArn"]
        substitutions[f"{name}FunctionArn"] = arn
    definition = ASL.read_text()
    for placeholder, value in substitutions.items():
        definition = definition.replace("${" + placeholder + "}", value)
    machine_arn = boto3.client("stepfunctions").create_state_machine(
        name="dbexport", definition=definition, roleArn=lambda_role
    )["stateMachineArn"]

    before_invoke: list = []

    def invoke_in_process(self, event=None):  # replaces LambdaFunction._invoke_lambda: no Docker here
        payload = event if isinstance(event, dict) else json.loads(event or "{}")
        short_name = FUNCTIONS[self.function_name]
        try:
            for hook in before_invoke:
                hook(short_name, payload)
            return json.dumps(HANDLERS[short_name](payload, FakeContext(self.function_name))), False, ""
        except Exception as exc:  # Step Functions sees errorType as the error's name
            return json.dumps({"errorType": type(exc).__name__, "errorMessage": str(exc)}), True, ""

    patcher = mock.patch.object(lambda_models.LambdaFunction, "_invoke_lambda", invoke_in_process)
    patcher.start()
    yield Deployment(machine_arn, table, "export-target", role_arn, key_id, queue_url, events_queue_url, before_invoke)
    patcher.stop()


def start(deployment: Deployment, identifier: str, export_only: list[str], **settings) -> str:
    request = {
        "ExportTaskIdentifier": identifier,
        "SourceArn": CLUSTER_ARN,
        "S3BucketName": deployment.bucket,
        "S3Prefix": "exports",
        "IamRoleArn": deployment.role_arn,
        "KmsKeyId": deployment.key_id,
        "ExportOnly": export_only,
        "Settings": settings,
    }
    return boto3.client("stepfunctions").start_execution(
        stateMachineArn=deployment.machine_arn, name=identifier, input=json.dumps(request)
    )["executionArn"]


def wait_for(execution_arn: str, timeout: float = 120) -> dict:
    sfn = boto3.client("stepfunctions")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        execution = sfn.describe_execution(executionArn=execution_arn)
        if execution["status"] != "RUNNING":
            return execution
        time.sleep(0.2)
    raise AssertionError("the execution did not end in time")


def read_exported(deployment: Deployment, identifier: str, database: str, table: str):
    s3 = boto3.client("s3")
    prefix = f"exports/{identifier}/{database}/public.{table}/"
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=deployment.bucket, Prefix=prefix).get("Contents", [])]
    import pyarrow as pa

    tables = [
        pq.read_table(io.BytesIO(s3.get_object(Bucket=deployment.bucket, Key=k)["Body"].read()))
        for k in keys
        if k.endswith(".parquet")
    ]
    return pa.concat_tables(tables), keys


@pytest.fixture
def orders(source):
    execute(
        source,
        """
        CREATE TABLE orders (id bigint PRIMARY KEY, customer text, amount numeric(12,2), placed timestamptz);
        INSERT INTO orders SELECT i, 'customer ' || (i % 97), i * 0.5, '2024-01-01'::timestamptz + i * interval '1 hour'
        FROM generate_series(1, 20000) i;
        CREATE TABLE notes (body text);
        INSERT INTO notes SELECT md5(i::text) FROM generate_series(1, 3000) i;
        ANALYZE;
        """,
    )
    return source


def test_the_state_machine_exports_the_cluster_to_s3(deployment, orders):
    db = database_of(orders)
    identifier = f"sfn-{uuid.uuid4().hex[:8]}"
    execution = wait_for(start(deployment, identifier, [db], partition_target_bytes=256 * 1024))
    assert execution["status"] == "SUCCEEDED", execution

    task = DynamoDbTaskStore(deployment.table).get(identifier)
    assert task.status.value == "COMPLETE", task.failure_cause
    assert task.percent_progress == 100

    exported, keys = read_exported(deployment, identifier, db, "orders")
    assert sorted(exported.column("id").to_pylist()) == list(range(1, 20001))
    assert exported.schema.field("amount").type == "string"
    assert len({k.split("/")[-2] for k in keys}) > 1, "the table was split into several partitions"
    assert all(
        boto3.client("s3").head_object(Bucket=deployment.bucket, Key=k)["ServerSideEncryption"] == "aws:kms"
        for k in keys
    )
    notes, _ = read_exported(deployment, identifier, db, "notes")
    assert notes.num_rows == 3000

    message = json.loads(boto3.client("sqs").receive_message(QueueUrl=deployment.queue_url)["Messages"][0]["Body"])
    assert message["detail"]["EventID"] == "RDS-EVENT-0236"
    assert message["detail"]["SourceIdentifier"] == identifier
    event = json.loads(boto3.client("sqs").receive_message(QueueUrl=deployment.events_queue_url)["Messages"][0]["Body"])
    assert event["source"] == "dbexport"
    assert event["detail"]["EventID"] == "RDS-EVENT-0236"


def test_a_partition_that_fails_once_succeeds_on_retry(deployment, orders):
    failed: list[str] = []

    def fail_first_partition_once(function: str, event: dict) -> None:
        if function == "export_partition" and not failed:
            failed.append(event["partition"]["partition"]["index"])
            raise SourceUnavailable("connection reset by peer")

    deployment.before_invoke.append(fail_first_partition_once)
    db = database_of(orders)
    identifier = f"retry-{uuid.uuid4().hex[:8]}"
    execution = wait_for(start(deployment, identifier, [f"{db}.public.orders"], partition_target_bytes=256 * 1024))
    assert execution["status"] == "SUCCEEDED", execution
    assert failed
    exported, _ = read_exported(deployment, identifier, db, "orders")
    assert sorted(exported.column("id").to_pylist()) == list(range(1, 20001))


def test_a_permanent_failure_ends_failed_after_cleanup(deployment, orders):
    ran: list[str] = []
    deployment.before_invoke.append(lambda function, event: ran.append(function))
    db = database_of(orders)
    identifier = f"fail-{uuid.uuid4().hex[:8]}"
    execution = wait_for(start(deployment, identifier, [f"{db}.public.no_such_table"]))
    assert execution["status"] == "FAILED"
    task = DynamoDbTaskStore(deployment.table).get(identifier)
    assert task.status.value == "FAILED"
    assert "no_such_table" in (task.failure_cause or "")
    assert ran[-2:] == ["record_failure", "cleanup"]
    message = json.loads(boto3.client("sqs").receive_message(QueueUrl=deployment.queue_url)["Messages"][0]["Body"])
    assert message["detail"]["EventID"] == "RDS-EVENT-0234"


def test_a_refused_request_fails_the_execution_with_the_rds_code(deployment, orders):
    db = database_of(orders)
    first = f"dup-{uuid.uuid4().hex[:8]}"
    assert wait_for(start(deployment, first, [f"{db}.public.notes"]))["status"] == "SUCCEEDED"
    sfn = boto3.client("stepfunctions")
    again = sfn.start_execution(
        stateMachineArn=deployment.machine_arn,
        name=f"{first}-again",
        input=json.dumps(
            {
                "ExportTaskIdentifier": first,
                "SourceArn": CLUSTER_ARN,
                "S3BucketName": deployment.bucket,
                "IamRoleArn": deployment.role_arn,
                "KmsKeyId": deployment.key_id,
            }
        ),
    )["executionArn"]
    execution = wait_for(again)
    assert execution["status"] == "FAILED"
    assert execution["error"] == "ExportTaskAlreadyExists"
    assert f"The export task with the ID {first} already exists." in execution["cause"]


def test_cancel_mid_map_ends_canceled(deployment, orders):
    db = database_of(orders)
    identifier = f"cancel-{uuid.uuid4().hex[:8]}"
    store = DynamoDbTaskStore(deployment.table)
    exported: list[str] = []

    def cancel_once_a_partition_is_done(function: str, event: dict) -> None:
        if function == "export_partition":
            exported.append(event["partition"]["partition"]["index"])
            if len(exported) == 3:
                deadline = time.monotonic() + 30
                while not store.partition_results(identifier) and time.monotonic() < deadline:
                    time.sleep(0.05)
                store.cancel(identifier)

    deployment.before_invoke.append(cancel_once_a_partition_is_done)
    execution = wait_for(start(deployment, identifier, [f"{db}.public.orders"], partition_target_bytes=128 * 1024))
    assert execution["status"] == "SUCCEEDED", execution
    task = store.get(identifier)
    assert task.status.value == "CANCELED"
    results = store.partition_results(identifier)
    assert 0 < len(results) < len(exported)
    message = json.loads(boto3.client("sqs").receive_message(QueueUrl=deployment.queue_url)["Messages"][0]["Body"])
    assert message["detail"]["EventID"] == "RDS-EVENT-0235"


@pytest.fixture
def stack(deployment, monkeypatch):
    """The deployed stack's outputs, as `dbexport --stack-name` reads them from CloudFormation."""
    template = {
        "Resources": {"Topic": {"Type": "AWS::SNS::Topic"}},
        "Outputs": {
            "StateMachineArn": {"Value": deployment.machine_arn},
            "TaskTableName": {"Value": deployment.table},
        },
    }
    boto3.client("cloudformation").create_stack(StackName="dbexport", TemplateBody=json.dumps(template))
    monkeypatch.setattr(remote, "POLL_SECONDS", 0.2)
    return "dbexport"


def run_cli(capsys, *args: str) -> tuple[int, str, str]:
    """Run the CLI in-process (moto is in-process); its JSON starts at a line "{", after the handlers' log lines."""
    code = cli.main(list(args))
    out, err = capsys.readouterr()
    lines = out.splitlines()
    return code, "\n".join(lines[lines.index("{") :]) if "{" in lines else "", err


def test_the_cli_starts_describes_and_refuses_through_the_stack(stack, deployment, orders, capsys):
    db = database_of(orders)
    common = [
        "--source-arn",
        CLUSTER_ARN,
        "--s3-bucket-name",
        deployment.bucket,
        "--iam-role-arn",
        deployment.role_arn,
        "--kms-key-id",
        deployment.key_id,
        "--export-only",
        f"{db}.public.notes",
    ]
    code, out, err = run_cli(
        capsys, "--stack-name", stack, "start-export-task", "--export-task-identifier", "from-cli", *common, "--wait"
    )
    assert code == 0, err
    task = json.loads(out)
    assert task["Status"] == "COMPLETE"
    assert task["SourceArn"] == CLUSTER_ARN

    code, out, _ = run_cli(
        capsys, "--stack-name", stack, "describe-export-tasks", "--filters", "Name=status,Values=complete"
    )
    assert [t["ExportTaskIdentifier"] for t in json.loads(out)["ExportTasks"]] == ["from-cli"]

    code, out, err = run_cli(
        capsys, "--stack-name", stack, "start-export-task", "--export-task-identifier", "from-cli", *common
    )
    assert code == cli.SERVICE_ERROR_EXIT
    assert (
        "An error occurred (ExportTaskAlreadyExists) when calling the StartExportTask operation: "
        "The export task with the ID from-cli already exists."
    ) in err

    code, out, err = run_cli(
        capsys, "--stack-name", stack, "cancel-export-task", "--export-task-identifier", "from-cli"
    )
    assert code == cli.SERVICE_ERROR_EXIT
    assert "(InvalidExportTaskStateFault)" in err


def test_a_scheduled_run_gets_an_identifier_of_its_own(deployment, orders):
    """EventBridge starts the machine with the same input every time: a prefix instead of an identifier."""
    db = database_of(orders)
    request = {
        "ExportTaskIdentifierPrefix": "nightly",
        "SourceArn": CLUSTER_ARN,
        "S3BucketName": deployment.bucket,
        "IamRoleArn": deployment.role_arn,
        "KmsKeyId": deployment.key_id,
        "ExportOnly": [f"{db}.public.notes"],
    }
    sfn = boto3.client("stepfunctions")
    arn = sfn.start_execution(stateMachineArn=deployment.machine_arn, input=json.dumps(request))["executionArn"]
    assert wait_for(arn)["status"] == "SUCCEEDED"
    (task,) = DynamoDbTaskStore(deployment.table).describe(make_query())[0]
    assert re.fullmatch(r"nightly-\d{8}-\d{6}", task.export_task_identifier)
    assert task.status.value == "COMPLETE"


def test_a_connection_lost_mid_read_is_retried_as_source_unavailable(deployment, source, monkeypatch):
    """The export's backend is terminated mid-read on every attempt: each attempt fails SourceUnavailable naming
    the partition, ExportPartition's Retry takes it until its attempts run out, and the task ends FAILED."""
    execute(
        source,
        "CREATE TABLE big (id bigint, body text);"
        " INSERT INTO big SELECT i, repeat(md5(i::text), 3) FROM generate_series(1, 300000) i; ANALYZE big;",
    )
    raised = fault_after_first_batch(monkeypatch, lambda: terminate_postgres_reads(source))
    db = database_of(source)
    identifier = f"lost-{uuid.uuid4().hex[:8]}"
    execution = wait_for(start(deployment, identifier, [f"{db}.public.big"]), timeout=300)
    assert execution["status"] == "FAILED"
    task = DynamoDbTaskStore(deployment.table).get(identifier)
    assert task.status.value == "FAILED"
    # The partition's own cause, as the local runtime gives it; not the Map's "unknown internal error".
    assert task.failure_cause is not None
    assert task.failure_cause.startswith(f"Exporting {db}.public.big (partition 1) {LOST}"), task.failure_cause

    state = json.loads(ASL.read_text())["States"]["ExportPartitions"]["ItemProcessor"]["States"]["ExportPartition"]
    (retry,) = [r for r in state["Retry"] if "SourceUnavailable" in r["ErrorEquals"]]
    assert len(raised) == 1 + retry["MaxAttempts"]
    for error in raised:
        assert isinstance(error, SourceUnavailable)
        assert str(error).startswith(f"Exporting {db}.public.big (partition 1) {LOST}")
        # What RecordFailure makes of it once the retries are spent: the local runtime's FailureCause.
        caught = {"Error": type(error).__name__, "Cause": json.dumps({"errorMessage": str(error)})}
        reported = StepError.model_validate(caught)
        assert Failure.reported(reported.error, reported.message).cause == str(error)
