"""The access preflight: before any data moves, the export's IAM role, bucket and KMS key must work.

The checks run in the anchor's order, each a plain function, and each failure raises AccessCheckFailed
with the anchor's message (saying dbexport where the anchor says RDS), which becomes the task's FailureCause:

1. assume the IAM role (`assume_role`);
2. the bucket exists and is in the export's Region (`check_bucket_region`);
3. the KMS key exists, is enabled, symmetric, for encryption, and the role may use it (`check_kms_key`);
4. the role may do each S3 action the export needs: a small object is written with SSE-KMS under the
   export's folder, read, listed and deleted (`check_s3_actions`).

`run` does all four; the AWS runtime's CheckAccess calls it, and so can the local runtime when its
destination is S3 with a role or a key. Anything unexpected is logged in full and reported as the anchor's
unknown error, never as a stack trace.
"""

from __future__ import annotations

import json
import logging
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import boto3
from botocore.exceptions import ClientError, NoCredentialsError, PartialCredentialsError

from dbexport.destinations import export_root, s3_client
from dbexport.errors import AccessCheckFailed
from dbexport.outcomes import UNKNOWN_ERROR

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from dbexport.models import ExportTask

log = logging.getLogger(__name__)

KMS_CHECK_FAILED = "KMS key check failed. Check the credentials on your KMS key and try again."
S3_CREDENTIALS_FAILED = "S3 credentials check failed. Check the permissions on your S3 bucket and IAM policy."

# Error codes that mean the credentials themselves were refused, not a permission.
CREDENTIAL_ERROR_CODES = frozenset(
    {
        "InvalidAccessKeyId",
        "InvalidToken",
        "ExpiredToken",
        "ExpiredTokenException",
        "TokenRefreshRequired",
        "SignatureDoesNotMatch",
        "InvalidClientTokenId",
        "UnrecognizedClientException",
    }
)
# The anchor's list: writing the metadata failed with one of these -> "failed to write ... Error code: X".
METADATA_ERROR_CODES = frozenset(
    {
        "AccessDenied",
        "AWSSecurityTokenServiceException",
        "NoSuchBucket",
        "KMS.KMSInvalidStateException",
        "403 Forbidden",
        "KMS.DisabledException",
        "AmazonS3Exception",
    }
)
# S3's GetBucketLocation says "EU" for eu-west-1 and nothing for us-east-1.
_LEGACY_LOCATIONS = {None: "us-east-1", "": "us-east-1", "EU": "eu-west-1"}
# Errors S3 gives for a bucket that lives in another Region, with that Region in a header.
_WRONG_REGION_CODES = frozenset(
    {"PermanentRedirect", "AuthorizationHeaderMalformed", "IllegalLocationConstraintException"}
)

S3_ACTIONS = ("s3:PutObject", "s3:GetObject", "s3:ListBucket", "s3:DeleteObject", "s3:GetBucketLocation")


@dataclass(frozen=True)
class Target:
    """Where an export writes, and as whom."""

    bucket: str
    folder: str  # the export's own folder in the bucket: <S3Prefix>/<export id>
    identifier: str  # the export task's identifier
    region: str  # the Region the export runs in: the bucket and the key must be there
    role_arn: str | None = None  # None: the caller's own credentials (the local runtime without a role)
    kms_key_id: str | None = None

    @property
    def probe_key(self) -> str:
        return f"{self.folder}/export_access_check_{self.identifier}.json"


def target_for(task: ExportTask) -> Target:
    """Where the task writes, and as whom; the Region is the source cluster's (its ARN's), else this runtime's."""
    parts = task.source_arn.split(":")
    if task.source_arn.startswith("arn:") and len(parts) > 3 and parts[3]:
        region = parts[3]
    else:
        region = default_session().region_name or "us-east-1"
    return Target(
        bucket=task.s3_bucket,
        folder=export_root(task),
        identifier=task.export_task_identifier,
        region=region,
        role_arn=task.iam_role_arn,
        kms_key_id=task.kms_key_id,
    )


# --- the anchor's messages -------------------------------------------------------------------------------


def cannot_assume(role_arn: str) -> AccessCheckFailed:
    return AccessCheckFailed(
        f"dbexport couldn't write the export task's metadata because it can't assume the IAM role {role_arn}."
    )


def bucket_in_other_region(bucket: str) -> AccessCheckFailed:
    return AccessCheckFailed(
        f"The S3 bucket {bucket} isn't located in the current AWS Region. "
        "Please, review your S3 bucket name and retry the export."
    )


def bucket_invalid(bucket: str) -> AccessCheckFailed:
    return AccessCheckFailed(
        f"The S3 bucket {bucket} is invalid. Either it isn't located in the current AWS Region or it doesn't "
        "exist. Please, review your S3 bucket name and retry the export."
    )


def not_authorized(principal: str, action: str, bucket: str) -> AccessCheckFailed:
    return AccessCheckFailed(
        f"The IAM role {principal} isn't authorized to call {action} on the S3 bucket {bucket}. "
        "Review your permissions and retry the export."
    )


def metadata_write_failed(target: Target, principal: str, code: str) -> AccessCheckFailed:
    key = f"with KMS key {target.kms_key_id}" if target.kms_key_id else "without a KMS key"
    return AccessCheckFailed(
        f"dbexport failed to write the export task's metadata to the S3 bucket {target.bucket} using IAM role "
        f"{principal} {key}. Error code: {code}"
    )


def unknown_while_writing(bucket: str) -> AccessCheckFailed:
    return AccessCheckFailed(
        f"An unknown internal error occurred while writing the export task's metadata to the S3 bucket {bucket}."
    )


# --- the checks ------------------------------------------------------------------------------------------


class Principal:
    """Makes AWS clients as someone: a session's own credentials, or an assumed role's on top of it.

    Clients come from the one session (its loaded service models are shared), so making them is cheap.
    """

    def __init__(
        self,
        session: boto3.session.Session | None = None,
        credentials: dict[str, str] | None = None,
        endpoint_url: str | None = None,
    ):
        self.session = session or default_session()
        self.credentials = credentials or {}
        self.endpoint_url = endpoint_url  # an S3-compatible store's single endpoint, as the CLI's --endpoint-url

    def client(self, service: str, **kwargs: Any) -> Any:
        if self.endpoint_url:
            kwargs.setdefault("endpoint_url", self.endpoint_url)
        if service == "s3":  # the export writes through it: one S3 client configuration for every writer
            return s3_client(self.session, **self.credentials, **kwargs)
        return self.session.client(service, **self.credentials, **kwargs)  # type: ignore[call-overload]


def default_session() -> boto3.session.Session:
    """boto3's default session (the one `boto3.client` uses), made if need be."""
    if boto3.DEFAULT_SESSION is None:
        boto3.setup_default_session()
    assert boto3.DEFAULT_SESSION is not None
    return boto3.DEFAULT_SESSION


def run(target: Target, session: boto3.session.Session | None = None, *, endpoint_url: str | None = None) -> Principal:
    """Every check, in order; returns who the export writes as (the role, or `session`'s own credentials)."""
    caller = Principal(session, endpoint_url=endpoint_url)
    with _unexpected_errors_reported(target):
        role = assume_role(target, caller)
        principal = principal_arn(target, role)
        s3 = role.client("s3", region_name=target.region)
        check_bucket_region(target, principal, s3)
        if target.kms_key_id:
            check_kms_key(target, role.client("kms", region_name=target.region))
        check_s3_actions(target, principal, s3)
    return role


def assume_role(target: Target, caller: Principal) -> Principal:
    """1. The IAM role's credentials (the caller itself when there is no role)."""
    if target.role_arn is None:
        return caller
    sts = caller.client("sts", region_name=target.region)
    try:
        credentials = sts.assume_role(RoleArn=target.role_arn, RoleSessionName=f"dbexport-{target.identifier}"[:64])[
            "Credentials"
        ]
    except ClientError as exc:
        log.warning("AssumeRole %s failed: %s", target.role_arn, exc)
        raise cannot_assume(target.role_arn) from exc
    return Principal(
        caller.session,
        {
            "aws_access_key_id": credentials["AccessKeyId"],
            "aws_secret_access_key": credentials["SecretAccessKey"],
            "aws_session_token": credentials["SessionToken"],
        },
        caller.endpoint_url,
    )


def principal_arn(target: Target, principal: Principal) -> str:
    """The ARN the messages name: the role, or whoever the caller is when there is no role."""
    if target.role_arn is not None:
        return target.role_arn
    return str(principal.client("sts", region_name=target.region).get_caller_identity()["Arn"])


def check_bucket_region(target: Target, principal: str, s3: Any) -> None:
    """2. The bucket exists and is in the export's Region (S3 would accept writes from any Region)."""
    try:
        location = s3.get_bucket_location(Bucket=target.bucket).get("LocationConstraint")
    except ClientError as exc:
        code = _code(exc)
        if code in ("NoSuchBucket", "InvalidBucketName"):
            raise bucket_invalid(target.bucket) from exc
        if code in _WRONG_REGION_CODES:
            raise bucket_in_other_region(target.bucket) from exc
        raise _s3_failure(target, principal, "s3:GetBucketLocation", exc) from exc
    region = _LEGACY_LOCATIONS.get(location, location)
    if region != target.region:
        log.warning("bucket %s is in %s, the export runs in %s", target.bucket, region, target.region)
        raise bucket_in_other_region(target.bucket)


def check_kms_key(target: Target, kms: Any) -> None:
    """3. The key exists, is enabled, symmetric and for encryption, and the role may use it.

    S3 would not say so before the first upload (and some S3-compatible stores never do), so the role
    itself describes the key and makes, decrypts and encrypts a data key with it.
    """
    assert target.kms_key_id is not None
    context = {"dbexport:export-task": target.identifier}
    try:
        key = kms.describe_key(KeyId=target.kms_key_id)["KeyMetadata"]
        problems = [
            f"{name} is {key.get(name)}, not {wanted}"
            for name, wanted in (
                ("KeyState", "Enabled"),
                ("KeyUsage", "ENCRYPT_DECRYPT"),
                ("KeySpec", "SYMMETRIC_DEFAULT"),
            )
            if key.get(name, wanted) != wanted
        ]
        if problems:
            log.warning("KMS key %s can't encrypt the export: %s", target.kms_key_id, "; ".join(problems))
            raise AccessCheckFailed(KMS_CHECK_FAILED)
        data_key = kms.generate_data_key(KeyId=target.kms_key_id, KeySpec="AES_256", EncryptionContext=context)
        kms.decrypt(CiphertextBlob=data_key["CiphertextBlob"], KeyId=key["Arn"], EncryptionContext=context)
        kms.encrypt(KeyId=target.kms_key_id, Plaintext=b"dbexport access check", EncryptionContext=context)
    except ClientError as exc:
        log.warning("KMS key %s check failed: %s", target.kms_key_id, exc)
        raise AccessCheckFailed(KMS_CHECK_FAILED) from exc


def check_s3_actions(target: Target, principal: str, s3: Any) -> None:
    """4. Write (SSE-KMS), read, list and delete a small object in the export's folder, as the role."""
    body = json.dumps({"exportTaskIdentifier": target.identifier, "purpose": "dbexport access check"}).encode()
    key = target.probe_key
    steps: list[tuple[str, Callable[[], Any]]] = [
        (
            "s3:PutObject",
            lambda: s3.put_object(Bucket=target.bucket, Key=key, Body=body, **sse_kms(target.kms_key_id)),
        ),
        ("s3:GetObject", lambda: s3.get_object(Bucket=target.bucket, Key=key)["Body"].read()),
        ("s3:ListBucket", lambda: s3.list_objects_v2(Bucket=target.bucket, Prefix=key, MaxKeys=1)),
        ("s3:DeleteObject", lambda: s3.delete_object(Bucket=target.bucket, Key=key)),
    ]
    written = False
    for action, call in steps:
        try:
            call()
        except ClientError as exc:
            if written and action != "s3:DeleteObject":
                _delete_quietly(s3, target.bucket, key)
            raise _s3_failure(target, principal, action, exc) from exc
        written = written or action == "s3:PutObject"


def sse_kms(kms_key_id: str | None) -> dict[str, str]:
    """PutObject's arguments for SSE-KMS with the key (none without a key)."""
    return {"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": kms_key_id} if kms_key_id else {}


@contextmanager
def writing_metadata(target: Target, principal: str) -> Iterator[None]:
    """Around the export's own metadata writes: S3's refusals become the anchor's metadata messages."""
    with _unexpected_errors_reported(target):
        try:
            yield
        except ClientError as exc:
            code = _code(exc)
            if code in CREDENTIAL_ERROR_CODES:
                raise AccessCheckFailed(S3_CREDENTIALS_FAILED) from exc
            if code in METADATA_ERROR_CODES:
                raise metadata_write_failed(target, principal, code) from exc
            log.error("writing the metadata of %s to %s failed: %s", target.identifier, target.bucket, exc)
            raise unknown_while_writing(target.bucket) from exc


# --- helpers ---------------------------------------------------------------------------------------------


def _code(exc: ClientError) -> str:
    code = str(exc.response.get("Error", {}).get("Code", ""))
    # S3 answers some requests (HEAD) with a bare status: botocore makes the status the code.
    return "403 Forbidden" if code in ("403", "Forbidden") else code


def _s3_failure(target: Target, principal: str, action: str, exc: ClientError) -> AccessCheckFailed:
    code = _code(exc)
    log.warning("%s on %s as %s failed: %s", action, target.bucket, principal, exc)
    if code in CREDENTIAL_ERROR_CODES:
        return AccessCheckFailed(S3_CREDENTIALS_FAILED)
    if code == "AccessDenied":
        return not_authorized(principal, action, target.bucket)
    if code in METADATA_ERROR_CODES:
        return metadata_write_failed(target, principal, code)
    log.error("unexpected S3 error during the access check of %s: %s", target.identifier, exc)
    return unknown_while_writing(target.bucket)


def _delete_quietly(s3: Any, bucket: str, key: str) -> None:
    try:
        s3.delete_object(Bucket=bucket, Key=key)
    except ClientError:
        log.warning("could not delete the access check object s3://%s/%s", bucket, key)


@contextmanager
def _unexpected_errors_reported(target: Target) -> Iterator[None]:
    try:
        yield
    except AccessCheckFailed:
        raise
    except (NoCredentialsError, PartialCredentialsError) as exc:
        log.warning("no usable credentials for the export %s: %s", target.identifier, exc)
        raise AccessCheckFailed(S3_CREDENTIALS_FAILED) from exc
    except Exception as exc:
        log.exception("the access check of the export %s failed unexpectedly", target.identifier)
        raise AccessCheckFailed(UNKNOWN_ERROR) from exc
