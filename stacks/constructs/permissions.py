"""What each function may do, as dbexport.aws.contract says, with cdk-nag's acknowledgment of each wildcard."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aws_cdk import ArnFormat
from aws_cdk import aws_iam as iam

from dbexport.aws.contract import (
    ASSUMES_USER_ROLE,
    CLONE_NAME_PATTERN,
    CREATES_CLONE,
    DELETES_CLONE,
    DESCRIBES_SOURCE_CLUSTER,
    MANAGED_SECRETS,
    MANAGES_SOURCE,
    MANIFEST_PREFIX,
    READS_MAP_RESULTS,
    READS_SOURCE_SECRET,
    RESULTS_PREFIX,
    WRITES_MANIFESTS,
)
from stacks import nag
from stacks.constructs.functions import SPECS
from stacks.constructs.storage import acknowledge_work_objects

if TYPE_CHECKING:
    from aws_cdk import Stack

    from stacks.config import ExportStackProps
    from stacks.constructs.storage import Storage

Roles = dict[str, iam.Role]


def grant_function_permissions(stack: Stack, roles: Roles, storage: Storage, props: ExportStackProps) -> None:
    """Each function gets what its step needs and nothing more (the roles start with logs and X-Ray)."""
    for role in roles.values():
        storage.table.grant_read_write_data(role)
    _grant_source_secret(stack, roles, props.source_secret_arn)
    _grant_assume_user_role(stack, roles)
    _grant_work_bucket(roles, storage)
    _grant_describe_source(stack, roles)
    if props.source_mode == "clone":
        _grant_describe_source_cluster(stack, roles)
        _grant_clones(stack, roles)
    _acknowledge_resource_star(roles, props)


def _grant_source_secret(stack: Stack, roles: Roles, source_secret_arn: str | None) -> None:
    for name in READS_SOURCE_SECRET:
        for statement in _source_secret_statements(stack, source_secret_arn):
            roles[name].add_to_policy(statement)
        if not source_secret_arn:
            nag.wildcard(
                roles[name],
                f"arn:<AWS::Partition>:secretsmanager:<AWS::Region>:<AWS::AccountId>:secret:{MANAGED_SECRETS}",
                "With no sourceSecretArn, dbexport logs in with the source cluster's own master user secret, "
                "which RDS names rds!cluster-<id>-<suffix>; the cluster arrives with each request.",
            )
            nag.wildcard(
                roles[name],
                "arn:<AWS::Partition>:kms:<AWS::Region>:<AWS::AccountId>:key/*",
                "Decrypting is allowed only through Secrets Manager and only for RDS-managed cluster secrets "
                "(kms:ViaService and kms:EncryptionContext:SecretARN), whose key the cluster's owner chose.",
            )


def _source_secret_statements(stack: Stack, source_secret_arn: str | None) -> list[iam.PolicyStatement]:
    """Reading the secret dbexport logs in with: the stack's, or else any cluster's RDS-managed one."""
    if source_secret_arn:
        return [
            iam.PolicyStatement(
                sid="ReadSourceSecret", actions=["secretsmanager:GetSecretValue"], resources=[source_secret_arn]
            )
        ]
    managed = stack.format_arn(
        service="secretsmanager",
        resource="secret",
        resource_name=MANAGED_SECRETS,
        arn_format=ArnFormat.COLON_RESOURCE_NAME,
    )
    return [
        iam.PolicyStatement(sid="ReadClusterSecret", actions=["secretsmanager:GetSecretValue"], resources=[managed]),
        # A managed secret may be encrypted with a customer managed key (MasterUserSecretKmsKeyId); the
        # default aws/secretsmanager key needs no grant.
        iam.PolicyStatement(
            sid="DecryptClusterSecret",
            actions=["kms:Decrypt"],
            resources=[stack.format_arn(service="kms", resource="key", resource_name="*")],
            conditions={
                "StringEquals": {"kms:ViaService": f"secretsmanager.{stack.region}.amazonaws.com"},
                "ArnLike": {"kms:EncryptionContext:SecretARN": managed},
            },
        ),
    ]


def _grant_assume_user_role(stack: Stack, roles: Roles) -> None:
    # The user's IamRoleArn arrives with each request (as with the anchor); roles of this account only.
    statement = iam.PolicyStatement(
        sid="AssumeRequestIamRole",
        actions=["sts:AssumeRole"],
        resources=[stack.format_arn(service="iam", region="", resource="role", resource_name="*")],
    )
    for name in ASSUMES_USER_ROLE:
        roles[name].add_to_policy(statement)
        nag.wildcard(
            roles[name],
            "arn:<AWS::Partition>:iam::<AWS::AccountId>:role/*",
            "The IAM role that writes the user's bucket is named in each StartExportTask request (IamRoleArn), "
            "as with Aurora's export, so it cannot be known at deploy time; its own trust policy decides.",
        )


def _grant_work_bucket(roles: Roles, storage: Storage) -> None:
    bucket = storage.bucket
    for name in WRITES_MANIFESTS:
        roles[name].add_to_policy(
            iam.PolicyStatement(
                sid="WriteManifests",
                actions=["s3:PutObject"],
                resources=[bucket.arn_for_objects(f"{MANIFEST_PREFIX}*")],
            )
        )
        acknowledge_work_objects(roles[name], bucket, MANIFEST_PREFIX)
    for name in READS_MAP_RESULTS:
        roles[name].add_to_policy(
            iam.PolicyStatement(
                sid="ReadManifestsAndMapResults",
                actions=["s3:GetObject"],
                resources=[bucket.arn_for_objects(f"{MANIFEST_PREFIX}*"), bucket.arn_for_objects(f"{RESULTS_PREFIX}*")],
            )
        )
        roles[name].add_to_policy(
            iam.PolicyStatement(
                sid="ListMapResults",
                actions=["s3:ListBucket"],
                resources=[bucket.bucket_arn],
                conditions={"StringLike": {"s3:prefix": [f"{MANIFEST_PREFIX}*", f"{RESULTS_PREFIX}*"]}},
            )
        )
        acknowledge_work_objects(roles[name], bucket, MANIFEST_PREFIX, RESULTS_PREFIX)


def _grant_describe_source(stack: Stack, roles: Roles) -> None:
    describe_resources = {"cluster:*": _rds_arn(stack, "cluster", "*"), "db:*": _rds_arn(stack, "db", "*")}
    for name in MANAGES_SOURCE:
        roles[name].add_to_policy(
            iam.PolicyStatement(
                sid="DescribeClusters",
                actions=["rds:DescribeDBClusters", "rds:DescribeDBInstances", "rds:ListTagsForResource"],
                resources=list(describe_resources.values()),
            )
        )
        for pattern in describe_resources:
            nag.wildcard(
                roles[name],
                nag.regional_arn("rds", pattern),
                "The source cluster arrives with each request (SourceArn), and the clone count per clone group "
                "is read from every cluster of the account; describing changes nothing.",
            )


def _grant_describe_source_cluster(stack: Stack, roles: Roles) -> None:
    # ValidateRequest refuses a source that is missing, not Aurora, or Serverless v1 (RDS's error codes).
    for name in DESCRIBES_SOURCE_CLUSTER:
        roles[name].add_to_policy(
            iam.PolicyStatement(
                sid="DescribeSourceCluster",
                actions=["rds:DescribeDBClusters"],
                resources=[_rds_arn(stack, "cluster", "*")],
            )
        )
        nag.wildcard(
            roles[name],
            nag.regional_arn("rds", "cluster:*"),
            "The source cluster arrives with each request (SourceArn); ValidateRequest only describes it.",
        )


def _grant_clones(stack: Stack, roles: Roles) -> None:
    create_resources = {
        # RestoreDBClusterToPointInTime is authorized on the source cluster (any: it arrives with the request)
        # as well as the clone; the clone's instance only on dbexport-* names; the subnet, parameter and
        # option groups are the source's (or the engine's defaults).
        "cluster:*": _rds_arn(stack, "cluster", "*"),
        f"db:{CLONE_NAME_PATTERN}": _rds_arn(stack, "db", CLONE_NAME_PATTERN),
        "subgrp:*": _rds_arn(stack, "subgrp", "*"),
        "cluster-pg:*": _rds_arn(stack, "cluster-pg", "*"),
        "pg:*": _rds_arn(stack, "pg", "*"),
        "og:*": _rds_arn(stack, "og", "*"),
    }
    clone_resources = {
        f"cluster:{CLONE_NAME_PATTERN}": _rds_arn(stack, "cluster", CLONE_NAME_PATTERN),
        f"db:{CLONE_NAME_PATTERN}": _rds_arn(stack, "db", CLONE_NAME_PATTERN),
    }
    create = iam.PolicyStatement(
        sid="CreateClone",
        actions=["rds:RestoreDBClusterToPointInTime", "rds:CreateDBInstance"],
        resources=list(create_resources.values()),
    )
    # The clone is tagged with its task as it is created; nothing else may be tagged.
    tag = iam.PolicyStatement(
        sid="TagClone", actions=["rds:AddTagsToResource"], resources=list(clone_resources.values())
    )
    # Restoring an encrypted cluster makes RDS create a grant on its key for the clone.
    use_cluster_key = iam.PolicyStatement(
        sid="CloneEncryptedCluster",
        actions=["kms:CreateGrant", "kms:DescribeKey"],
        resources=["*"],
        conditions={"StringEquals": {"kms:ViaService": f"rds.{stack.region}.amazonaws.com"}},
    )
    # cluster:* is acknowledged with the describe statement; listed in order, each once, so synth is repeatable.
    create_patterns = [p for p in dict.fromkeys([*create_resources, *clone_resources]) if p != "cluster:*"]
    for name in CREATES_CLONE:
        roles[name].add_to_policy(create)
        roles[name].add_to_policy(tag)
        roles[name].add_to_policy(use_cluster_key)
        for pattern in create_patterns:
            nag.wildcard(
                roles[name],
                nag.regional_arn("rds", pattern),
                "A clone of a cluster named in the request is created as dbexport-<task id> with the "
                "source's subnet, parameter and option groups, whose names are only known at run time.",
            )
    for name in DELETES_CLONE:
        roles[name].add_to_policy(
            iam.PolicyStatement(
                sid="DeleteClone",
                actions=["rds:DeleteDBInstance", "rds:DeleteDBCluster"],
                resources=list(clone_resources.values()),
            )
        )
        for pattern in clone_resources:
            nag.wildcard(
                roles[name],
                nag.regional_arn("rds", pattern),
                "Cleanup may delete only clones this stack made, all named dbexport-<task id>.",
            )


def _acknowledge_resource_star(roles: Roles, props: ExportStackProps) -> None:
    for spec in SPECS:
        covers = ["X-Ray's PutTraceSegments/PutTelemetryRecords, which have no resource-level permissions"]
        if spec.reaches_database and props.vpc:
            covers.append("Lambda's network-interface actions in the VPC, which cannot be scoped to resources")
        if props.source_mode == "clone" and spec.module in CREATES_CLONE:
            covers.append("kms:CreateGrant/DescribeKey on the source cluster's key, limited to calls via RDS")
        nag.wildcard(roles[spec.module], "*", "Resource * is only for " + "; ".join(covers) + ".")


def _rds_arn(stack: Stack, resource: str, name: str) -> str:
    return stack.format_arn(
        service="rds", resource=resource, resource_name=name, arn_format=ArnFormat.COLON_RESOURCE_NAME
    )
