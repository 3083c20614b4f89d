"""The access preflight (CheckAccess): each of the anchor's failure messages, from a real failing situation.

moto enforces IAM here: every call after set-up is authenticated and authorized against the caller's
policies. dbexport's functions (and moto's Step Functions engine, which signs its calls as `ak`) run as an
IAM user that may do anything; the export's IamRoleArn is a role with exactly the policy each test gives
it, assumed through STS, whose trust policy names that user. The state machine runs for real (moto's
engine, the project's handlers), and each test reads the task's FailureCause.

What moto can't refuse by itself, the test makes happen around it (each says so): a session STS forgets,
a bucket deleted between two calls, S3 answering with error codes moto never gives (SSE-KMS refusals, a
code outside the anchor's list), a bug.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import boto3
import botocore.session
import pytest
from moto import settings
from moto.iam.models import iam_backends
from moto.s3.models import s3_backends
from moto.sts.models import sts_backends

from dbexport import preflight
from dbexport.errors import AccessCheckFailed
from dbexport.tasks.dynamodb import DynamoDbTaskStore
from tests.helpers import database_of, execute
from tests.integration import test_state_machine as machine
from tests.integration.test_state_machine import ACCOUNT, CLUSTER_ARN, REGION, Deployment


@pytest.fixture(scope="module")
def stack(pg_dsn: str) -> Iterator[Deployment]:
    """moto, with Step Functions executing, and the stack as deployed: the state machine tests' own fixtures
    (`aws`, `deployment`), set up once for this module rather than for each test, which keeps it fast."""
    with pytest.MonkeyPatch.context() as mp:
        world = machine.aws.__wrapped__(mp)
        next(world)
        deployed = machine.deployment.__wrapped__(None, mp, pg_dsn)
        yield next(deployed)
        for generator in (deployed, world):  # their teardowns
            next(generator, None)


@pytest.fixture
def deployment(stack: Deployment, monkeypatch) -> Iterator[Deployment]:
    """The module's stack for one test: its own hooks, a default boto3 session of its own."""
    stack.before_invoke.clear()
    fresh_default_session(monkeypatch)
    yield stack
    stack.before_invoke.clear()


RUNTIME_USER = "dbexport-runtime"
RUNTIME_ARN = f"arn:aws:iam::{ACCOUNT}:user/{RUNTIME_USER}"
ALL_S3_ACTIONS = list(preflight.S3_ACTIONS)
KMS_ACTIONS = ["kms:Encrypt", "kms:Decrypt", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:DescribeKey"]


@pytest.fixture(scope="module")
def runtime_user(stack: Deployment) -> str:
    """dbexport's functions run as an IAM user that may do anything. moto's Step Functions engine signs its
    own calls (Lambda, S3, SNS, EventBridge) as ak/sk: that is the user's key, and the handlers use it too."""
    iam = boto3.client("iam")
    iam.create_user(UserName=RUNTIME_USER)
    iam.put_user_policy(
        UserName=RUNTIME_USER,
        PolicyName="everything",
        PolicyDocument=json.dumps(
            {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}
        ),
    )
    iam.create_access_key(UserName=RUNTIME_USER)
    (key,) = iam_backends[ACCOUNT]["aws"].users[RUNTIME_USER].access_keys
    key.access_key_id, key.secret_access_key = "ak", "sk"
    return RUNTIME_ARN


@pytest.fixture
def enforced(deployment: Deployment, runtime_user: str, monkeypatch) -> Deployment:
    """From here on moto authenticates and authorizes every call, the runtime's as the runtime user."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "ak")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "sk")
    fresh_default_session(monkeypatch)  # with those credentials
    monkeypatch.setattr(settings, "INITIAL_NO_AUTH_ACTION_COUNT", 0)  # enforced from the next call on
    return deployment


def fresh_default_session(monkeypatch) -> None:
    """A new default boto3 session for this test: the environment's credentials, no event handlers left
    by other tests; the service models already loaded are shared (loading them again is slow)."""
    models = preflight.default_session()._session.get_component("data_loader")
    fresh = botocore.session.Session()
    fresh.register_component("data_loader", models)
    monkeypatch.setattr(boto3, "DEFAULT_SESSION", boto3.session.Session(botocore_session=fresh))


def make_role(
    *,
    bucket: str,
    s3_actions: list[str] = ALL_S3_ACTIONS,
    kms: bool = True,
    trusted: str = RUNTIME_ARN,
) -> str:
    """The export's IamRoleArn: trusted by `trusted`, allowed `s3_actions` on the bucket, and the key or not."""
    name = f"export-{uuid.uuid4().hex[:8]}"
    trust = {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Principal": {"AWS": trusted}, "Action": "sts:AssumeRole"}],
    }
    iam = boto3.client("iam")
    arn: str = iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(trust))["Role"]["Arn"]
    statements: list[dict[str, Any]] = []
    if s3_actions:
        statements.append(
            {
                "Effect": "Allow",
                "Action": s3_actions,
                "Resource": [f"arn:aws:s3:::{bucket}", f"arn:aws:s3:::{bucket}/*"],
            }
        )
    if kms:
        # moto matches KMS actions against resource * only (a key ARN here would never match).
        statements.append({"Effect": "Allow", "Action": KMS_ACTIONS, "Resource": "*"})
    if statements:
        iam.put_role_policy(
            RoleName=name,
            PolicyName="export",
            PolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": statements}),
        )
    return arn


def run_export(
    deployment: Deployment, *, role_arn: str, bucket: str | None = None, key_id: str | None = None, **request: Any
) -> tuple[dict[str, Any], Any, list[str]]:
    """Start an export, wait for the execution; (execution, task, functions that ran)."""
    ran: list[str] = []
    deployment.before_invoke.append(lambda function, event: ran.append(function))
    identifier = f"pre-{uuid.uuid4().hex[:8]}"
    body = {
        "ExportTaskIdentifier": identifier,
        "SourceArn": CLUSTER_ARN,
        "S3BucketName": bucket or deployment.bucket,
        "S3Prefix": "exports",
        "IamRoleArn": role_arn,
        "KmsKeyId": key_id or deployment.key_id,
        **request,
    }
    arn = boto3.client("stepfunctions").start_execution(
        stateMachineArn=deployment.machine_arn, name=identifier, input=json.dumps(body)
    )["executionArn"]
    execution = wait_for(arn)
    return execution, DynamoDbTaskStore(deployment.table).get(identifier), ran


def wait_for(execution_arn: str, timeout: float = 60, poll: float = 0.05) -> dict[str, Any]:
    sfn = boto3.client("stepfunctions")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        execution: dict[str, Any] = sfn.describe_execution(executionArn=execution_arn)
        if execution["status"] != "RUNNING":
            return execution
        time.sleep(poll)
    raise AssertionError("the execution did not end in time")


def assert_failed_before_any_data(execution: dict[str, Any], task: Any, ran: list[str], message: str) -> None:
    assert execution["status"] == "FAILED"
    assert task.status.value == "FAILED"
    assert task.failure_cause == message
    assert ran[:2] == ["validate", "check_access"]
    assert "prepare_source" not in ran and "plan" not in ran and "export_partition" not in ran


def objects(bucket: str, prefix: str = "exports/") -> list[str]:
    backend = s3_backends[ACCOUNT]["aws"]
    if bucket not in backend.buckets:
        return []
    return [k for k in backend.buckets[bucket].keys if k.startswith(prefix)]


def on_call(event: str, handler: Any) -> None:
    """A botocore event handler on every client made from now on (runtime's and role's alike)."""
    preflight.default_session().events.register(event, handler)


# --- 1. the role ------------------------------------------------------------------------------------------


def test_a_role_that_cannot_be_assumed(enforced):
    role = make_role(bucket=enforced.bucket, trusted=f"arn:aws:iam::{ACCOUNT}:user/someone-else")
    execution, task, ran = run_export(enforced, role_arn=role)
    assert_failed_before_any_data(
        execution,
        task,
        ran,
        f"dbexport couldn't write the export task's metadata because it can't assume the IAM role {role}.",
    )
    assert objects(enforced.bucket, f"exports/{task.export_task_identifier}/") == []


# --- 2. the bucket ----------------------------------------------------------------------------------------


def test_a_bucket_in_another_region(enforced):
    bucket = f"export-eu-{uuid.uuid4().hex[:8]}"
    boto3.client("s3", region_name="eu-west-1").create_bucket(
        Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"}
    )
    role = make_role(bucket=bucket)
    execution, task, ran = run_export(enforced, role_arn=role, bucket=bucket)
    assert_failed_before_any_data(
        execution,
        task,
        ran,
        f"The S3 bucket {bucket} isn't located in the current AWS Region. "
        "Please, review your S3 bucket name and retry the export.",
    )
    assert objects(bucket) == [], "moto would have taken the write: the preflight refused it first"


def test_a_missing_bucket(enforced):
    bucket = f"no-such-bucket-{uuid.uuid4().hex[:8]}"
    role = make_role(bucket=bucket)  # the policy names it, as a user who mistyped both would
    execution, task, ran = run_export(enforced, role_arn=role, bucket=bucket)
    assert_failed_before_any_data(
        execution,
        task,
        ran,
        f"The S3 bucket {bucket} is invalid. Either it isn't located in the current AWS Region or it doesn't "
        "exist. Please, review your S3 bucket name and retry the export.",
    )


# --- 3. the KMS key ---------------------------------------------------------------------------------------

KMS_MESSAGE = "KMS key check failed. Check the credentials on your KMS key and try again."


def disabled_key() -> str:
    kms = boto3.client("kms")
    key_id: str = kms.create_key()["KeyMetadata"]["KeyId"]
    kms.disable_key(KeyId=key_id)
    return key_id


def missing_key() -> str:
    return f"arn:aws:kms:{REGION}:{ACCOUNT}:key/{uuid.uuid4()}"


def asymmetric_key() -> str:
    return str(boto3.client("kms").create_key(KeySpec="RSA_2048", KeyUsage="ENCRYPT_DECRYPT")["KeyMetadata"]["KeyId"])


@pytest.mark.parametrize("make_key", [disabled_key, missing_key, asymmetric_key])
def test_a_key_that_is_disabled_missing_or_asymmetric(enforced, make_key):
    role = make_role(bucket=enforced.bucket)
    execution, task, ran = run_export(enforced, role_arn=role, key_id=make_key())
    assert_failed_before_any_data(execution, task, ran, KMS_MESSAGE)
    assert objects(enforced.bucket, f"exports/{task.export_task_identifier}/") == []


def test_a_key_the_role_may_not_use(enforced):
    role = make_role(bucket=enforced.bucket, kms=False)
    execution, task, ran = run_export(enforced, role_arn=role)
    assert_failed_before_any_data(execution, task, ran, KMS_MESSAGE)


def test_the_key_is_checked_before_the_s3_actions(enforced):
    role = make_role(bucket=enforced.bucket, s3_actions=["s3:GetBucketLocation"])
    execution, task, ran = run_export(enforced, role_arn=role, key_id=disabled_key())
    assert_failed_before_any_data(execution, task, ran, KMS_MESSAGE)


# --- 4. the S3 actions ------------------------------------------------------------------------------------


@pytest.mark.parametrize("missing", ALL_S3_ACTIONS)
def test_a_role_without_one_s3_action(enforced, missing):
    statuses: list[str] = []
    store = DynamoDbTaskStore(enforced.table)
    enforced.before_invoke.append(
        lambda function, event: (
            function == "check_access" and statuses.append(store.get(event["export_task_identifier"]).status.value)
        )
    )
    role = make_role(bucket=enforced.bucket, s3_actions=[a for a in ALL_S3_ACTIONS if a != missing])
    execution, task, ran = run_export(enforced, role_arn=role)
    assert statuses == ["STARTING"]
    assert_failed_before_any_data(
        execution,
        task,
        ran,
        f"The IAM role {role} isn't authorized to call {missing} on the S3 bucket {enforced.bucket}. "
        "Review your permissions and retry the export.",
    )
    left = objects(enforced.bucket, f"exports/{task.export_task_identifier}/")
    # The check object is deleted whenever the role may delete it.
    assert left == (
        [f"exports/{task.export_task_identifier}/export_access_check_{task.export_task_identifier}.json"]
        if missing == "s3:DeleteObject"
        else []
    )


def test_credentials_s3_refuses(enforced):
    """STS forgets the role's session as soon as it is issued (as when a session is revoked)."""

    def forget_session(parsed, **kwargs):
        if "Credentials" in parsed:
            backend = sts_backends[ACCOUNT]["aws"]
            backend.assumed_roles = [
                r for r in backend.assumed_roles if r.access_key_id != parsed["Credentials"]["AccessKeyId"]
            ]

    role = make_role(bucket=enforced.bucket)
    on_call("after-call.sts.AssumeRole", forget_session)
    execution, task, ran = run_export(enforced, role_arn=role)
    assert_failed_before_any_data(
        execution, task, ran, "S3 credentials check failed. Check the permissions on your S3 bucket and IAM policy."
    )


def test_a_bucket_deleted_while_the_metadata_is_written(enforced):
    """The bucket exists when its Region is checked and is gone when the check object is written."""
    bucket = f"short-lived-{uuid.uuid4().hex[:8]}"
    boto3.client("s3").create_bucket(Bucket=bucket)
    role = make_role(bucket=bucket)

    def delete_bucket(params, **kwargs):
        if params.get("Bucket") == bucket and bucket in s3_backends[ACCOUNT]["aws"].buckets:
            s3_backends[ACCOUNT]["aws"].delete_bucket(bucket)

    on_call("before-parameter-build.s3.PutObject", delete_bucket)
    execution, task, ran = run_export(enforced, role_arn=role, bucket=bucket)
    assert_failed_before_any_data(
        execution,
        task,
        ran,
        f"dbexport failed to write the export task's metadata to the S3 bucket {bucket} using IAM role {role} "
        f"with KMS key {enforced.key_id}. Error code: NoSuchBucket",
    )


def s3_answers(code: str, status: int = 400) -> Any:
    """A before-call handler: S3 answers the check object's PutObject with this error."""

    def answer(params, **kwargs):  # params: the request about to be sent
        if "access_check" in params["url_path"]:
            error = {
                "Error": {"Code": code, "Message": "from the test"},
                "ResponseMetadata": {"HTTPStatusCode": status},
            }
            return SimpleNamespace(status_code=status, headers={}), error
        return None

    return answer


@pytest.mark.parametrize("code", ["KMS.DisabledException", "AWSSecurityTokenServiceException"])
def test_the_anchors_metadata_error_codes(enforced, code):
    """S3 refusing the SSE-KMS write itself (moto never does: the key's state isn't looked at by its S3)."""
    role = make_role(bucket=enforced.bucket)
    on_call("before-call.s3.PutObject", s3_answers(code))
    execution, task, ran = run_export(enforced, role_arn=role)
    assert_failed_before_any_data(
        execution,
        task,
        ran,
        f"dbexport failed to write the export task's metadata to the S3 bucket {enforced.bucket} using IAM role "
        f"{role} with KMS key {enforced.key_id}. Error code: {code}",
    )


def test_an_s3_error_outside_the_anchors_list(enforced):
    role = make_role(bucket=enforced.bucket)
    on_call("before-call.s3.PutObject", s3_answers("InvalidRequest"))
    execution, task, ran = run_export(enforced, role_arn=role)
    assert_failed_before_any_data(
        execution,
        task,
        ran,
        "An unknown internal error occurred while writing the export task's metadata to the S3 bucket "
        f"{enforced.bucket}.",
    )


def test_anything_unexpected_is_an_unknown_error_with_details_in_the_logs(enforced, caplog):
    role = make_role(bucket=enforced.bucket)

    def bug(**kwargs):
        raise RuntimeError("a bug in the key check")

    on_call("before-call.kms.GenerateDataKey", bug)
    execution, task, ran = run_export(enforced, role_arn=role)
    assert_failed_before_any_data(execution, task, ran, "An unknown internal error occurred.")
    # the logs say what happened, and where; FailureCause doesn't
    assert "RuntimeError: a bug in the key check" in caplog.text
    assert "Traceback" not in (task.failure_cause or "")


# --- a role with the documented permissions passes ---------------------------------------------------------


def test_a_role_with_the_documented_policy_exports(enforced, source):
    execute(
        source,
        "CREATE TABLE t (id bigint PRIMARY KEY, v text); INSERT INTO t SELECT i, 'v' FROM generate_series(1, 500) i;",
    )
    role = make_role(
        bucket=enforced.bucket,
        s3_actions=["s3:PutObject*", "s3:ListBucket", "s3:GetObject*", "s3:DeleteObject*", "s3:GetBucketLocation"],
    )
    execution, task, ran = run_export(enforced, role_arn=role, ExportOnly=[f"{database_of(source)}.public.t"])
    assert execution["status"] == "SUCCEEDED", execution
    assert task.status.value == "COMPLETE", task.failure_cause
    keys = objects(enforced.bucket, f"exports/{task.export_task_identifier}/")
    assert f"exports/{task.export_task_identifier}/export_info_{task.export_task_identifier}.json" in keys
    assert any(k.endswith(".parquet") for k in keys)
    assert not [k for k in keys if "access_check" in k], "the check object is deleted"


# --- the same checks, called directly (as the local runtime will) ------------------------------------------


def test_the_preflight_without_a_role_names_the_caller(enforced):
    """No IamRoleArn: the caller's own credentials are checked, and the messages name the caller."""
    iam = boto3.client("iam")
    iam.create_user(UserName="local-user")
    iam.put_user_policy(
        UserName="local-user",
        PolicyName="no-put",
        PolicyDocument=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [
                    {"Effect": "Allow", "Action": ["s3:GetBucketLocation"], "Resource": "*"},
                    {"Effect": "Allow", "Action": KMS_ACTIONS, "Resource": "*"},
                ],
            }
        ),
    )
    key = iam.create_access_key(UserName="local-user")["AccessKey"]
    session = boto3.session.Session(
        aws_access_key_id=key["AccessKeyId"], aws_secret_access_key=key["SecretAccessKey"], region_name=REGION
    )
    target = preflight.Target(
        bucket=enforced.bucket, folder="local/run-1", identifier="run-1", region=REGION, kms_key_id=enforced.key_id
    )
    with pytest.raises(AccessCheckFailed) as raised:
        preflight.run(target, session)
    user_arn = f"arn:aws:iam::{ACCOUNT}:user/local-user"
    assert str(raised.value) == (
        f"The IAM role {user_arn} isn't authorized to call s3:PutObject on the S3 bucket {enforced.bucket}. "
        "Review your permissions and retry the export."
    )


def test_the_preflight_passes_and_leaves_nothing_behind(enforced):
    role = make_role(bucket=enforced.bucket)
    target = preflight.Target(
        bucket=enforced.bucket,
        folder="exports/direct",
        identifier="direct",
        region=REGION,
        role_arn=role,
        kms_key_id=enforced.key_id,
    )
    written: list[dict[str, Any]] = []
    on_call("before-parameter-build.s3.PutObject", lambda params, **kwargs: written.append(dict(params)))
    principal = preflight.run(target)
    assert principal.credentials["aws_access_key_id"] != "ak", "the role's credentials, not the runtime's"
    assert written[0]["ServerSideEncryption"] == "aws:kms" and written[0]["SSEKMSKeyId"] == enforced.key_id
    assert objects(enforced.bucket, "exports/direct") == []
