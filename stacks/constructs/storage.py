"""The stack's storage: the KMS key, the task table, the task-end topic and the work bucket."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from aws_cdk import ArnFormat, Duration, RemovalPolicy, Stack
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_sns as sns

from dbexport.aws.contract import MANIFEST_PREFIX, RESULTS_PREFIX
from stacks import nag

if TYPE_CHECKING:
    from constructs import IConstruct

# The work bucket's manifests and Map results are scratch, expired after a month.
WORK_OBJECT_EXPIRY = Duration.days(30)


@dataclass(frozen=True)
class Storage:
    """What the functions and the state machine keep their state in, and the key of the topic and the logs."""

    key: kms.Key
    table: dynamodb.Table
    topic: sns.Topic
    bucket: s3.Bucket


def add_storage(stack: Stack) -> Storage:
    """Create the storage directly in the stack, where deployed stacks have it (same logical IDs)."""
    key = _key(stack)
    table = dynamodb.Table(
        stack,
        "TaskTable",
        partition_key=dynamodb.Attribute(name="pk", type=dynamodb.AttributeType.STRING),
        sort_key=dynamodb.Attribute(name="sk", type=dynamodb.AttributeType.STRING),
        billing_mode=dynamodb.BillingMode.PAY_PER_REQUEST,
        point_in_time_recovery_specification=dynamodb.PointInTimeRecoverySpecification(
            point_in_time_recovery_enabled=True
        ),
        encryption=dynamodb.TableEncryption.AWS_MANAGED,
        # Task records are the export history (identifiers stay unique for ever): keep them.
        removal_policy=RemovalPolicy.RETAIN,
    )
    topic = sns.Topic(
        stack,
        "TaskEndTopic",
        display_name="dbexport task finished",
        master_key=key,
        enforce_ssl=True,
    )
    bucket = s3.Bucket(
        stack,
        "WorkBucket",
        encryption=s3.BucketEncryption.S3_MANAGED,
        block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
        enforce_ssl=True,
        object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
        auto_delete_objects=False,
        removal_policy=RemovalPolicy.RETAIN,
        lifecycle_rules=[
            s3.LifecycleRule(id="ExpireManifests", prefix=MANIFEST_PREFIX, expiration=WORK_OBJECT_EXPIRY),
            s3.LifecycleRule(id="ExpireMapResults", prefix=RESULTS_PREFIX, expiration=WORK_OBJECT_EXPIRY),
            s3.LifecycleRule(id="AbortIncompleteUploads", abort_incomplete_multipart_upload_after=Duration.days(1)),
        ],
    )
    nag.acknowledge(
        bucket,
        "AwsSolutions-S1",
        "The work bucket holds only the Map's manifests and results for 30 days, read and written by this "
        "stack's own roles; exported data goes to the user's bucket, whose access logging the user controls.",
    )
    return Storage(key, table, topic, bucket)


def _key(stack: Stack) -> kms.Key:
    key = kms.Key(
        stack,
        "Key",
        description="dbexport: encrypts the task-end topic and the functions' and state machine's logs",
        enable_key_rotation=True,
    )
    key.add_to_resource_policy(
        iam.PolicyStatement(
            sid="AllowCloudWatchLogsOfThisAccount",
            principals=[iam.ServicePrincipal(f"logs.{stack.region}.amazonaws.com")],
            actions=["kms:Encrypt*", "kms:Decrypt*", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:Describe*"],
            resources=["*"],
            conditions={
                "ArnLike": {
                    "kms:EncryptionContext:aws:logs:arn": stack.format_arn(
                        service="logs",
                        resource="log-group",
                        resource_name="*",
                        arn_format=ArnFormat.COLON_RESOURCE_NAME,
                    )
                }
            },
        )
    )
    return key


# Why a role's grant on the work bucket's objects ends in a wildcard (cdk-nag IAM5), by prefix.
WORK_OBJECT_REASONS = {
    MANIFEST_PREFIX: (
        "Each export task's plan and partition manifest go under manifests/<task id>/, known only at run time."
    ),
    RESULTS_PREFIX: "The Distributed Map's ResultWriter names its objects per map run under results/, at run time.",
}


def acknowledge_work_objects(role: IConstruct, bucket: s3.Bucket, *prefixes: str) -> None:
    """Acknowledge role's grants on the work bucket's objects under these prefixes."""
    for prefix in prefixes:
        nag.wildcard(role, f"{nag.arn_of(bucket)}/{prefix}*", WORK_OBJECT_REASONS[prefix])
