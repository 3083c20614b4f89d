"""The stack's outputs: what the CLI's --stack-name mode reads, and what a user needs to call the stack."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aws_cdk import CfnOutput

from dbexport.aws.contract import STATE_MACHINE_ARN_OUTPUT, TASK_TABLE_NAME_OUTPUT
from stacks.constructs.functions import ROLE_PATH

if TYPE_CHECKING:
    from aws_cdk import Stack
    from aws_cdk import aws_stepfunctions as sfn

    from stacks.constructs.storage import Storage


def add_outputs(stack: Stack, machine: sfn.StateMachine, storage: Storage) -> None:
    """The outputs, named as dbexport.aws.contract says where the runtime reads them."""
    CfnOutput(stack, STATE_MACHINE_ARN_OUTPUT, value=machine.state_machine_arn)
    CfnOutput(stack, TASK_TABLE_NAME_OUTPUT, value=storage.table.table_name)
    CfnOutput(stack, "TopicArn", value=storage.topic.topic_arn)
    CfnOutput(stack, "WorkBucketName", value=storage.bucket.bucket_name)
    CfnOutput(
        stack,
        "ExportRolesPrincipalArn",
        description="aws:PrincipalArn pattern of the roles that assume your IamRoleArn (for its trust policy)",
        value=stack.format_arn(service="iam", region="", resource="role", resource_name=f"{ROLE_PATH.strip('/')}/*"),
    )
