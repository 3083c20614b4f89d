"""The nine Lambda functions, one per state: code, layer, sizing, logs, tracing, network, own role."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from aws_cdk import Annotations, Duration, IgnoreMode, RemovalPolicy, Size
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from constructs import Construct

from dbexport.aws.contract import (
    CHECK_ACCESS,
    CLEANUP,
    EXPORT_PARTITION,
    FINALIZE,
    FUNCTIONS,
    KNOWS_SOURCE_MODE,
    MANAGES_SOURCE,
    MAX_CONCURRENCY,
    MAX_UNFINISHED_TASKS,
    PLAN,
    PREPARE_SOURCE,
    READS_SOURCE_SECRET,
    RECORD_FAILURE,
    SERVICE_NAME,
    SOURCE_MODE,
    SOURCE_READY,
    SOURCE_SECRET_ARN,
    TASK_TABLE_NAME,
    USES_WORK_BUCKET,
    VALIDATE,
    WORK_BUCKET_NAME,
)
from stacks import nag

if TYPE_CHECKING:
    from aws_cdk import aws_kms as kms

    from stacks.config import ExportStackProps, VpcSettings

ROOT = Path(__file__).resolve().parents[2]

# The code asset is the project root reduced to the core and the handlers. Everything at the top level is
# excluded first (.venv, tests, cdk.out, node_modules, build, ...: whatever appears there later too), then
# the two packages are let back in, without bytecode or tool caches.
CODE_EXCLUDE = [
    "/*",
    "!/dbexport/",
    "!/lambdas/",
    "__pycache__/",
    "*.py[cod]",
    "*.egg-info/",
    ".mypy_cache/",
    ".pytest_cache/",
    ".ruff_cache/",
    ".DS_Store",
]

# Roles live under this path so that a user's IamRoleArn trust policy can name them all at once
# (aws:PrincipalArn like arn:aws:iam::ACCOUNT:role/dbexport/*), whatever names CloudFormation gives them.
ROLE_PATH = "/dbexport/"

# Network interfaces for functions in a VPC; EC2 has no resource-level permissions for Describe*, and Lambda
# creates the interfaces itself in the given subnets.
VPC_ACCESS_ACTIONS = [
    "ec2:CreateNetworkInterface",
    "ec2:DescribeNetworkInterfaces",
    "ec2:DescribeSubnets",
    "ec2:DeleteNetworkInterface",
    "ec2:AssignPrivateIpAddresses",
    "ec2:UnassignPrivateIpAddresses",
]


@dataclass(frozen=True)
class FunctionSpec:
    """One state's function: `lambdas.<module>.handler`."""

    module: str
    construct_id: str
    description: str
    memory_mb: int = 256
    timeout_seconds: int = 60
    # Functions that connect to the database run in its VPC when one is given.
    reaches_database: bool = False
    ephemeral_storage_mb: int = 512


FIFTEEN_MINUTES = 15 * 60


@dataclass(frozen=True)
class _Network:
    vpc: ec2.IVpc
    subnets: ec2.SubnetSelection
    security_group: ec2.ISecurityGroup


SPECS: tuple[FunctionSpec, ...] = (
    FunctionSpec(VALIDATE, "Validate", "ValidateRequest: check the request and register the task"),
    FunctionSpec(CHECK_ACCESS, "CheckAccess", "CheckAccess: assume IamRoleArn, check bucket and key", 256, 120),
    FunctionSpec(PREPARE_SOURCE, "PrepareSource", "PrepareSource: clone the source cluster", 256, 120),
    FunctionSpec(SOURCE_READY, "SourceReady", "CheckSource: is the clone available yet", 256, 60),
    FunctionSpec(PLAN, "Plan", "PlanExport: catalog, skip rules, partition manifest", 1024, FIFTEEN_MINUTES, True),
    FunctionSpec(
        EXPORT_PARTITION,
        "ExportPartition",
        "ExportPartition: one partition to Parquet in the user's bucket",
        # A value just under the anchor's 500 MB limit peaks at 2.5 GB RSS (README, Partitions): it fits.
        # Two such values in consecutive rows of one partition (about 4.9 GB) would not.
        3008,
        FIFTEEN_MINUTES,
        True,
        # Parquet parts are spooled to /tmp before the SSE-KMS upload.
        ephemeral_storage_mb=10240,
    ),
    FunctionSpec(
        FINALIZE, "Finalize", "Finalize: verify counts, write metadata, COMPLETE", 1024, FIFTEEN_MINUTES, True
    ),
    FunctionSpec(RECORD_FAILURE, "RecordFailure", "RecordFailure: the task ends FAILED or CANCELED", 256, 60),
    FunctionSpec(CLEANUP, "Cleanup", "Cleanup: delete the clone on every path", 256, 120),
)


def function_environment(props: ExportStackProps, *, table_name: str, bucket_name: str) -> dict[str, dict[str, str]]:
    """Each function's environment: the task table and logging for all, the rest as dbexport.aws.contract says."""
    common = {
        TASK_TABLE_NAME: table_name,
        "POWERTOOLS_SERVICE_NAME": SERVICE_NAME,
        "POWERTOOLS_METRICS_NAMESPACE": SERVICE_NAME,
        "LOG_LEVEL": props.log_level,
    }
    environment = {name: dict(common) for name in FUNCTIONS}

    def tell(functions: tuple[str, ...], values: dict[str, str]) -> None:
        for name in functions:
            environment[name].update(values)

    if props.source_secret_arn:
        tell(READS_SOURCE_SECRET + MANAGES_SOURCE, {SOURCE_SECRET_ARN: props.source_secret_arn})
    tell(KNOWS_SOURCE_MODE, {SOURCE_MODE: props.source_mode})
    tell(USES_WORK_BUCKET, {WORK_BUCKET_NAME: bucket_name})
    tell(
        (VALIDATE,),
        {MAX_UNFINISHED_TASKS: str(props.max_unfinished_tasks), MAX_CONCURRENCY: str(props.max_concurrency)},
    )
    return environment


class ExportFunctions(Construct):
    """Creates one function per spec, each with its own role (logs, X-Ray, ENIs only; the stack grants the rest)."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        layer: lambda_.ILayerVersion,
        environment: dict[str, dict[str, str]],
        logs_key: kms.IKey,
        vpc: VpcSettings | None,
    ) -> None:
        super().__init__(scope, construct_id)
        code = lambda_.Code.from_asset(str(ROOT), exclude=CODE_EXCLUDE, ignore_mode=IgnoreMode.GIT)
        network = self._network(vpc) if vpc else None
        self.functions: dict[str, lambda_.Function] = {}
        self.roles: dict[str, iam.Role] = {}
        for spec in SPECS:
            role = iam.Role(
                self,
                f"{spec.construct_id}Role",
                assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
                path=ROLE_PATH,
                description=f"dbexport {spec.module}: {spec.description}"[:1000],
            )
            log_group = logs.LogGroup(
                self,
                f"{spec.construct_id}Logs",
                retention=logs.RetentionDays.ONE_MONTH,
                encryption_key=logs_key,
                removal_policy=RemovalPolicy.DESTROY,
            )
            log_group.grant_write(role)
            in_vpc = network is not None and spec.reaches_database
            if in_vpc:
                role.add_to_policy(iam.PolicyStatement(actions=VPC_ACCESS_ACTIONS, resources=["*"]))
            fn = lambda_.Function(
                self,
                spec.construct_id,
                description=spec.description,
                runtime=lambda_.Runtime.PYTHON_3_12,
                architecture=lambda_.Architecture.X86_64,
                handler=f"lambdas.{spec.module}.handler",
                code=code,
                layers=[layer],
                memory_size=spec.memory_mb,
                timeout=Duration.seconds(spec.timeout_seconds),
                ephemeral_storage_size=Size.mebibytes(spec.ephemeral_storage_mb),
                environment=environment[spec.module],
                tracing=lambda_.Tracing.ACTIVE,
                log_group=log_group,
                role=role,
                vpc=network.vpc if in_vpc and network else None,
                vpc_subnets=network.subnets if in_vpc and network else None,
                security_groups=[network.security_group] if in_vpc and network else None,
            )
            nag.acknowledge(fn, "AwsSolutions-L1", nag.PYTHON_RUNTIME_REASON)
            self.functions[spec.module] = fn
            self.roles[spec.module] = role

    def _network(self, vpc: VpcSettings) -> _Network:
        # Imported without lookups, so synth needs no AWS credentials.
        imported = ec2.Vpc.from_vpc_attributes(self, "Vpc", vpc_id=vpc.vpc_id, availability_zones=["unused"])
        subnets = [ec2.Subnet.from_subnet_id(self, f"Subnet{i}", subnet) for i, subnet in enumerate(vpc.subnet_ids)]
        for subnet in subnets:
            Annotations.of(subnet).acknowledge_warning(
                "@aws-cdk/aws-ec2:noSubnetRouteTableId", "Lambda needs only the subnet ids, never their route tables."
            )
        security_group = ec2.SecurityGroup.from_security_group_id(
            self, "SecurityGroup", vpc.security_group_id, mutable=False
        )
        return _Network(imported, ec2.SubnetSelection(subnets=subnets), security_group)
