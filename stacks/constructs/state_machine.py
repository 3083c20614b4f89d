"""The state machine of statemachine/export.asl.json: its substitutions, logs and role."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from aws_cdk import ArnFormat, RemovalPolicy, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_logs as logs
from aws_cdk import aws_stepfunctions as sfn

from dbexport.aws.contract import MANIFEST_PREFIX, RESULTS_PREFIX
from stacks import nag
from stacks.constructs.functions import SPECS
from stacks.constructs.storage import acknowledge_work_objects

if TYPE_CHECKING:
    from aws_cdk import aws_lambda as lambda_

    from stacks.constructs.storage import Storage

ASL = Path(__file__).resolve().parents[2] / "statemachine" / "export.asl.json"

# Where the machine puts the task-end event (the ASL's ${EventBusName}).
EVENT_BUS = "default"


def add_state_machine(stack: Stack, functions: dict[str, lambda_.Function], storage: Storage) -> sfn.StateMachine:
    """Create the machine directly in the stack, where deployed stacks have it (same logical IDs)."""
    # A fixed name lets the machine's own ARN be built without referring to the machine (no cycle): the
    # Distributed Map starts child executions of this very machine.
    name = f"{stack.stack_name}-Export"
    log_group = logs.LogGroup(
        stack,
        "StateMachineLogs",
        log_group_name=f"/aws/vendedlogs/states/{name}",
        retention=logs.RetentionDays.ONE_MONTH,
        encryption_key=storage.key,
        removal_policy=RemovalPolicy.DESTROY,
    )
    machine = sfn.StateMachine(
        stack,
        "ExportMachine",
        state_machine_name=name,
        definition_body=sfn.DefinitionBody.from_file(str(ASL)),
        definition_substitutions={
            # The ASL invokes each function as ${<its construct id>FunctionArn}, e.g. ${PlanFunctionArn}.
            **{f"{spec.construct_id}FunctionArn": functions[spec.module].function_arn for spec in SPECS},
            "TopicArn": storage.topic.topic_arn,
            "WorkBucketName": storage.bucket.bucket_name,
            "EventBusName": EVENT_BUS,
        },
        logs=sfn.LogOptions(destination=log_group, level=sfn.LogLevel.ALL, include_execution_data=False),
        tracing_enabled=True,
    )
    _grant_machine(stack, machine, name, functions, storage)
    return machine


def _grant_machine(
    stack: Stack, machine: sfn.StateMachine, name: str, functions: dict[str, lambda_.Function], storage: Storage
) -> None:
    """What the definition does: invoke the functions, run the Distributed Map, announce the task's end."""
    # The ASL invokes the functions by unqualified ARN, so no version/alias (ARN:*) grant.
    machine.add_to_role_policy(
        iam.PolicyStatement(
            sid="InvokeStateFunctions",
            actions=["lambda:InvokeFunction"],
            resources=[fn.function_arn for fn in functions.values()],
        )
    )
    # The Distributed Map reads the manifest (ItemReader) and writes its results (ResultWriter).
    bucket = storage.bucket
    machine.add_to_role_policy(
        iam.PolicyStatement(
            sid="ReadManifests", actions=["s3:GetObject"], resources=[bucket.arn_for_objects(f"{MANIFEST_PREFIX}*")]
        )
    )
    machine.add_to_role_policy(
        iam.PolicyStatement(
            sid="WriteMapResults",
            actions=["s3:PutObject", "s3:GetObject", "s3:ListMultipartUploadParts", "s3:AbortMultipartUpload"],
            resources=[bucket.arn_for_objects(f"{RESULTS_PREFIX}*")],
        )
    )
    acknowledge_work_objects(machine.role, bucket, MANIFEST_PREFIX, RESULTS_PREFIX)
    machine.add_to_role_policy(
        iam.PolicyStatement(sid="PublishTaskEnd", actions=["sns:Publish"], resources=[storage.topic.topic_arn])
    )
    machine.add_to_role_policy(
        iam.PolicyStatement(
            sid="UseTopicKey", actions=["kms:GenerateDataKey", "kms:Decrypt"], resources=[storage.key.key_arn]
        )
    )
    machine.add_to_role_policy(
        iam.PolicyStatement(
            sid="PutTaskEndEvent",
            actions=["events:PutEvents"],
            resources=[stack.format_arn(service="events", resource="event-bus", resource_name=EVENT_BUS)],
        )
    )
    machine.add_to_role_policy(
        iam.PolicyStatement(
            sid="StartMapChildExecutions",
            actions=["states:StartExecution"],
            resources=[_states_arn(stack, "stateMachine", name)],
        )
    )
    machine.add_to_role_policy(
        iam.PolicyStatement(
            sid="ManageMapChildExecutions",
            actions=["states:DescribeExecution", "states:StopExecution"],
            resources=[_states_arn(stack, "execution", f"{name}/*")],
        )
    )
    nag.wildcard(
        machine.role,
        nag.regional_arn("states", f"execution:{name}/*"),
        "The Distributed Map's child executions get names from Step Functions; the pattern is this machine's.",
    )
    nag.wildcard(
        machine.role,
        "*",
        "Resource * is only for X-Ray's trace actions and CloudWatch Logs' log-delivery actions, which have "
        "no resource-level permissions.",
    )


def _states_arn(stack: Stack, resource: str, name: str) -> str:
    return stack.format_arn(
        service="states", resource=resource, resource_name=name, arn_format=ArnFormat.COLON_RESOURCE_NAME
    )
