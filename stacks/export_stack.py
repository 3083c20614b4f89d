"""dbexport's AWS runtime: the Step Functions state machine, its Lambdas, the task table, topic and bucket."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from aws_cdk import ArnFormat, CfnOutput, CfnResource, Duration, RemovalPolicy, Stack
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_sns as sns
from aws_cdk import aws_stepfunctions as sfn

from dbexport.aws.contract import (
    ASSUMES_USER_ROLE,
    CLONE_NAME_PATTERN,
    CREATES_CLONE,
    KNOWS_SOURCE_MODE,
    MANAGED_SECRETS,
    MANAGES_SOURCE,
    MANIFEST_PREFIX,
    MAX_CONCURRENCY,
    MAX_UNFINISHED_TASKS,
    READS_SOURCE_SECRET,
    RESULTS_PREFIX,
    SOURCE_MODE,
    SOURCE_SECRET_ARN,
    TASK_TABLE_NAME,
    USES_WORK_BUCKET,
    VALIDATE,
    WORK_BUCKET_NAME,
)
from stacks import nag
from stacks.config import ExportStackProps
from stacks.constructs.functions import ROLE_PATH, SPECS, ExportFunctions
from stacks.constructs.layer import DependenciesLayer

if TYPE_CHECKING:
    from constructs import Construct

ASL = Path(__file__).resolve().parents[1] / "statemachine" / "export.asl.json"

# The work bucket's manifests and Map results are scratch, expired after a month.
WORK_OBJECT_EXPIRY = Duration.days(30)

MANIFEST_REASON = (
    "Each export task's plan and partition manifest go under manifests/<task id>/, known only at run time."
)
RESULTS_REASON = "The Distributed Map's ResultWriter names its objects per map run under results/, at run time."


class ExportStack(Stack):
    """Everything `cdk deploy` creates; the outputs are what the CLI's --stack-name mode reads."""

    def __init__(
        self, scope: Construct, construct_id: str, *, props: ExportStackProps | None = None, **kwargs: Any
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)
        self.props = props = props or ExportStackProps()

        # --- storage, topic, keys -------------------------------------------------------------------------
        self.key = kms.Key(
            self,
            "Key",
            description="dbexport: encrypts the task-end topic and the functions' and state machine's logs",
            enable_key_rotation=True,
        )
        self.key.add_to_resource_policy(
            iam.PolicyStatement(
                sid="AllowCloudWatchLogsOfThisAccount",
                principals=[iam.ServicePrincipal(f"logs.{self.region}.amazonaws.com")],
                actions=["kms:Encrypt*", "kms:Decrypt*", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:Describe*"],
                resources=["*"],
                conditions={
                    "ArnLike": {
                        "kms:EncryptionContext:aws:logs:arn": self.format_arn(
                            service="logs",
                            resource="log-group",
                            resource_name="*",
                            arn_format=ArnFormat.COLON_RESOURCE_NAME,
                        )
                    }
                },
            )
        )

        self.table = dynamodb.Table(
            self,
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

        self.topic = sns.Topic(
            self,
            "TaskEndTopic",
            display_name="dbexport task finished",
            master_key=self.key,
            enforce_ssl=True,
        )

        self.bucket = s3.Bucket(
            self,
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

        # --- functions ------------------------------------------------------------------------------------
        layer = DependenciesLayer(self, "Dependencies").layer
        self.functions = ExportFunctions(
            self,
            "Functions",
            layer=layer,
            environment={
                TASK_TABLE_NAME: self.table.table_name,
                "POWERTOOLS_SERVICE_NAME": "dbexport",
                "POWERTOOLS_METRICS_NAMESPACE": "dbexport",
                "LOG_LEVEL": props.log_level,
            },
            extra_environment=self._function_environment(),
            logs_key=self.key,
            vpc=props.vpc,
        )
        self._grant_function_permissions()

        # --- state machine --------------------------------------------------------------------------------
        self.state_machine = self._state_machine()

        if props.schedule:
            events.Rule(
                self,
                "Schedule",
                description="Starts a dbexport export on a schedule (scheduleExpression, scheduleInput)",
                schedule=events.Schedule.expression(props.schedule.expression),
                targets=[
                    targets.SfnStateMachine(
                        self.state_machine, input=events.RuleTargetInput.from_object(props.schedule.input)
                    )
                ],
            )

        CfnOutput(self, "StateMachineArn", value=self.state_machine.state_machine_arn)
        CfnOutput(self, "TaskTableName", value=self.table.table_name)
        CfnOutput(self, "TopicArn", value=self.topic.topic_arn)
        CfnOutput(self, "WorkBucketName", value=self.bucket.bucket_name)
        CfnOutput(
            self,
            "ExportRolesPrincipalArn",
            description="aws:PrincipalArn pattern of the roles that assume your IamRoleArn (for its trust policy)",
            value=self.format_arn(service="iam", region="", resource="role", resource_name=f"{ROLE_PATH.strip('/')}/*"),
        )

        nag.acknowledge(
            self.bucket,
            "AwsSolutions-S1",
            "The work bucket holds only the Map's manifests and results for 30 days, read and written by this "
            "stack's own roles; exported data goes to the user's bucket, whose access logging the user controls.",
        )

    # ------------------------------------------------------------------------------------------------------
    def _function_environment(self) -> dict[str, dict[str, str]]:
        """What each function is told besides the task table, as dbexport.aws.contract says who needs what."""
        props = self.props
        environment: dict[str, dict[str, str]] = {}

        def tell(functions: tuple[str, ...], values: dict[str, str]) -> None:
            for name in functions:
                environment.setdefault(name, {}).update(values)

        if props.source_secret_arn:
            tell(READS_SOURCE_SECRET + MANAGES_SOURCE, {SOURCE_SECRET_ARN: props.source_secret_arn})
        tell(KNOWS_SOURCE_MODE, {SOURCE_MODE: props.source_mode})
        tell(USES_WORK_BUCKET, {WORK_BUCKET_NAME: self.bucket.bucket_name})
        tell(
            (VALIDATE,),
            {MAX_UNFINISHED_TASKS: str(props.max_unfinished_tasks), MAX_CONCURRENCY: str(props.max_concurrency)},
        )
        return environment

    def _grant_function_permissions(self) -> None:
        """Each function gets what its step needs and nothing more (the roles start with logs and X-Ray)."""
        roles = self.functions.roles
        for role in roles.values():
            self.table.grant_read_write_data(role)

        for name in READS_SOURCE_SECRET:
            for statement in self._source_secret_statements():
                roles[name].add_to_policy(statement)
            if not self.props.source_secret_arn:
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

        # The user's IamRoleArn arrives with each request (as with the anchor); roles of this account only.
        assume_statement = iam.PolicyStatement(
            sid="AssumeRequestIamRole",
            actions=["sts:AssumeRole"],
            resources=[self.format_arn(service="iam", region="", resource="role", resource_name="*")],
        )
        for name in ASSUMES_USER_ROLE:
            roles[name].add_to_policy(assume_statement)
            nag.wildcard(
                roles[name],
                "arn:<AWS::Partition>:iam::<AWS::AccountId>:role/*",
                "The IAM role that writes the user's bucket is named in each StartExportTask request (IamRoleArn), "
                "as with Aurora's export, so it cannot be known at deploy time; its own trust policy decides.",
            )

        bucket_arn = nag.arn_of(self._cfn(self.bucket))
        roles["plan"].add_to_policy(
            iam.PolicyStatement(
                sid="WriteManifests",
                actions=["s3:PutObject"],
                resources=[self.bucket.arn_for_objects(f"{MANIFEST_PREFIX}*")],
            )
        )
        nag.wildcard(roles["plan"], f"{bucket_arn}/{MANIFEST_PREFIX}*", MANIFEST_REASON)
        roles["finalize"].add_to_policy(
            iam.PolicyStatement(
                sid="ReadManifestsAndMapResults",
                actions=["s3:GetObject"],
                resources=[
                    self.bucket.arn_for_objects(f"{MANIFEST_PREFIX}*"),
                    self.bucket.arn_for_objects(f"{RESULTS_PREFIX}*"),
                ],
            )
        )
        roles["finalize"].add_to_policy(
            iam.PolicyStatement(
                sid="ListMapResults",
                actions=["s3:ListBucket"],
                resources=[self.bucket.bucket_arn],
                conditions={"StringLike": {"s3:prefix": [f"{MANIFEST_PREFIX}*", f"{RESULTS_PREFIX}*"]}},
            )
        )
        nag.wildcard(roles["finalize"], f"{bucket_arn}/{MANIFEST_PREFIX}*", MANIFEST_REASON)
        nag.wildcard(roles["finalize"], f"{bucket_arn}/{RESULTS_PREFIX}*", RESULTS_REASON)

        describe_resources = {"cluster:*": self._rds_arn("cluster", "*"), "db:*": self._rds_arn("db", "*")}
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
        if self.props.source_mode == "clone":
            # ValidateRequest refuses a source that is missing, not Aurora, or Serverless v1 (RDS's error codes).
            roles["validate"].add_to_policy(
                iam.PolicyStatement(
                    sid="DescribeSourceCluster",
                    actions=["rds:DescribeDBClusters"],
                    resources=[describe_resources["cluster:*"]],
                )
            )
            nag.wildcard(
                roles["validate"],
                nag.regional_arn("rds", "cluster:*"),
                "The source cluster arrives with each request (SourceArn); ValidateRequest only describes it.",
            )
            self._grant_clone_permissions(roles)

        for spec in SPECS:
            covers = ["X-Ray's PutTraceSegments/PutTelemetryRecords, which have no resource-level permissions"]
            if spec.reaches_database and self.props.vpc:
                covers.append("Lambda's network-interface actions in the VPC, which cannot be scoped to resources")
            if self.props.source_mode == "clone" and spec.module in CREATES_CLONE:
                covers.append("kms:CreateGrant/DescribeKey on the source cluster's key, limited to calls via RDS")
            nag.wildcard(roles[spec.module], "*", "Resource * is only for " + "; ".join(covers) + ".")

    def _source_secret_statements(self) -> list[iam.PolicyStatement]:
        """Reading the secret dbexport logs in with: the stack's, or else any cluster's RDS-managed one."""
        if self.props.source_secret_arn:
            return [
                iam.PolicyStatement(
                    sid="ReadSourceSecret",
                    actions=["secretsmanager:GetSecretValue"],
                    resources=[self.props.source_secret_arn],
                )
            ]
        managed = self.format_arn(
            service="secretsmanager",
            resource="secret",
            resource_name=MANAGED_SECRETS,
            arn_format=ArnFormat.COLON_RESOURCE_NAME,
        )
        return [
            iam.PolicyStatement(
                sid="ReadClusterSecret", actions=["secretsmanager:GetSecretValue"], resources=[managed]
            ),
            # A managed secret may be encrypted with a customer managed key (MasterUserSecretKmsKeyId); the
            # default aws/secretsmanager key needs no grant.
            iam.PolicyStatement(
                sid="DecryptClusterSecret",
                actions=["kms:Decrypt"],
                resources=[self.format_arn(service="kms", resource="key", resource_name="*")],
                conditions={
                    "StringEquals": {"kms:ViaService": f"secretsmanager.{self.region}.amazonaws.com"},
                    "ArnLike": {"kms:EncryptionContext:SecretARN": managed},
                },
            ),
        ]

    def _grant_clone_permissions(self, roles: dict[str, iam.Role]) -> None:
        create_resources = {
            # RestoreDBClusterToPointInTime is authorized on the source cluster (any: it arrives with the request)
            # as well as the clone; the clone's instance only on dbexport-* names; the subnet, parameter and
            # option groups are the source's (or the engine's defaults).
            "cluster:*": self._rds_arn("cluster", "*"),
            f"db:{CLONE_NAME_PATTERN}": self._rds_arn("db", CLONE_NAME_PATTERN),
            "subgrp:*": self._rds_arn("subgrp", "*"),
            "cluster-pg:*": self._rds_arn("cluster-pg", "*"),
            "pg:*": self._rds_arn("pg", "*"),
            "og:*": self._rds_arn("og", "*"),
        }
        clone_resources = {
            f"cluster:{CLONE_NAME_PATTERN}": self._rds_arn("cluster", CLONE_NAME_PATTERN),
            f"db:{CLONE_NAME_PATTERN}": self._rds_arn("db", CLONE_NAME_PATTERN),
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
            conditions={"StringEquals": {"kms:ViaService": f"rds.{self.region}.amazonaws.com"}},
        )
        for name in CREATES_CLONE:
            roles[name].add_to_policy(create)
            roles[name].add_to_policy(tag)
            roles[name].add_to_policy(use_cluster_key)
            # cluster:* is acknowledged with the describe statement
            for pattern in {*create_resources, *clone_resources} - {"cluster:*"}:
                nag.wildcard(
                    roles[name],
                    nag.regional_arn("rds", pattern),
                    "A clone of a cluster named in the request is created as dbexport-<task id> with the "
                    "source's subnet, parameter and option groups, whose names are only known at run time.",
                )
        roles["cleanup"].add_to_policy(
            iam.PolicyStatement(
                sid="DeleteClone",
                actions=["rds:DeleteDBInstance", "rds:DeleteDBCluster"],
                resources=list(clone_resources.values()),
            )
        )
        for pattern in clone_resources:
            nag.wildcard(
                roles["cleanup"],
                nag.regional_arn("rds", pattern),
                "Cleanup may delete only clones this stack made, all named dbexport-<task id>.",
            )

    def _rds_arn(self, resource: str, name: str) -> str:
        return self.format_arn(
            service="rds", resource=resource, resource_name=name, arn_format=ArnFormat.COLON_RESOURCE_NAME
        )

    @staticmethod
    def _cfn(construct: Construct) -> CfnResource:
        child = construct.node.default_child
        assert isinstance(child, CfnResource)
        return child

    def _state_machine(self) -> sfn.StateMachine:
        # A fixed name lets the machine's own ARN be built without referring to the machine (no cycle): the
        # Distributed Map starts child executions of this very machine.
        name = f"{self.stack_name}-Export"
        fns = self.functions.functions
        log_group = logs.LogGroup(
            self,
            "StateMachineLogs",
            log_group_name=f"/aws/vendedlogs/states/{name}",
            retention=logs.RetentionDays.ONE_MONTH,
            encryption_key=self.key,
            removal_policy=RemovalPolicy.DESTROY,
        )
        machine = sfn.StateMachine(
            self,
            "ExportMachine",
            state_machine_name=name,
            definition_body=sfn.DefinitionBody.from_file(str(ASL)),
            definition_substitutions={
                "ValidateFunctionArn": fns["validate"].function_arn,
                "CheckAccessFunctionArn": fns["check_access"].function_arn,
                "PrepareSourceFunctionArn": fns["prepare_source"].function_arn,
                "SourceReadyFunctionArn": fns["source_ready"].function_arn,
                "PlanFunctionArn": fns["plan"].function_arn,
                "ExportPartitionFunctionArn": fns["export_partition"].function_arn,
                "FinalizeFunctionArn": fns["finalize"].function_arn,
                "RecordFailureFunctionArn": fns["record_failure"].function_arn,
                "CleanupFunctionArn": fns["cleanup"].function_arn,
                "TopicArn": self.topic.topic_arn,
                "WorkBucketName": self.bucket.bucket_name,
                "EventBusName": "default",
            },
            logs=sfn.LogOptions(destination=log_group, level=sfn.LogLevel.ALL, include_execution_data=False),
            tracing_enabled=True,
        )
        role = machine.role
        # The ASL invokes the functions by unqualified ARN, so no version/alias (ARN:*) grant.
        machine.add_to_role_policy(
            iam.PolicyStatement(
                sid="InvokeStateFunctions",
                actions=["lambda:InvokeFunction"],
                resources=[fn.function_arn for fn in fns.values()],
            )
        )
        # The Distributed Map reads the manifest (ItemReader) and writes its results (ResultWriter).
        machine.add_to_role_policy(
            iam.PolicyStatement(
                sid="ReadManifests",
                actions=["s3:GetObject"],
                resources=[self.bucket.arn_for_objects(f"{MANIFEST_PREFIX}*")],
            )
        )
        machine.add_to_role_policy(
            iam.PolicyStatement(
                sid="WriteMapResults",
                actions=["s3:PutObject", "s3:GetObject", "s3:ListMultipartUploadParts", "s3:AbortMultipartUpload"],
                resources=[self.bucket.arn_for_objects(f"{RESULTS_PREFIX}*")],
            )
        )
        bucket_arn = nag.arn_of(self._cfn(self.bucket))
        nag.wildcard(role, f"{bucket_arn}/{MANIFEST_PREFIX}*", MANIFEST_REASON)
        nag.wildcard(role, f"{bucket_arn}/{RESULTS_PREFIX}*", RESULTS_REASON)
        machine.add_to_role_policy(
            iam.PolicyStatement(sid="PublishTaskEnd", actions=["sns:Publish"], resources=[self.topic.topic_arn])
        )
        machine.add_to_role_policy(
            iam.PolicyStatement(
                sid="UseTopicKey", actions=["kms:GenerateDataKey", "kms:Decrypt"], resources=[self.key.key_arn]
            )
        )
        machine.add_to_role_policy(
            iam.PolicyStatement(
                sid="PutTaskEndEvent",
                actions=["events:PutEvents"],
                resources=[self.format_arn(service="events", resource="event-bus", resource_name="default")],
            )
        )
        machine.add_to_role_policy(
            iam.PolicyStatement(
                sid="StartMapChildExecutions",
                actions=["states:StartExecution"],
                resources=[
                    self.format_arn(
                        service="states",
                        resource="stateMachine",
                        resource_name=name,
                        arn_format=ArnFormat.COLON_RESOURCE_NAME,
                    )
                ],
            )
        )
        machine.add_to_role_policy(
            iam.PolicyStatement(
                sid="ManageMapChildExecutions",
                actions=["states:DescribeExecution", "states:StopExecution"],
                resources=[
                    self.format_arn(
                        service="states",
                        resource="execution",
                        resource_name=f"{name}/*",
                        arn_format=ArnFormat.COLON_RESOURCE_NAME,
                    )
                ],
            )
        )
        nag.wildcard(
            role,
            nag.regional_arn("states", f"execution:{name}/*"),
            "The Distributed Map's child executions get names from Step Functions; the pattern is this machine's.",
        )
        nag.wildcard(
            role,
            "*",
            "Resource * is only for X-Ray's trace actions and CloudWatch Logs' log-delivery actions, which have "
            "no resource-level permissions.",
        )
        return machine
