"""cdk-nag (AwsSolutions) acknowledgments: each finding is acknowledged where it arises, with its reason.

cdk-nag 3 runs as a CDK policy-validation plugin; its findings are acknowledged one by one with
`Validations.of(construct).acknowledge(...)`, whose id names the exact finding (`AwsSolutions-IAM5[Resource::...]`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from aws_cdk import Acknowledgment, CfnResource, Stack, Validations

if TYPE_CHECKING:
    from constructs import IConstruct

# Said once, used for every runtime finding.
PYTHON_RUNTIME_REASON = (
    "The layer's wheels are built for CPython 3.12 (layers/build.py), so the runtime moves only together "
    "with a rebuilt, re-tested layer."
)


def acknowledge(scope: IConstruct, finding: str, reason: str) -> None:
    """Acknowledge one cdk-nag finding (`AwsSolutions-XX` or `AwsSolutions-IAM5[Resource::...]`) on scope."""
    Validations.of(scope).acknowledge(Acknowledgment(id=finding, reason=reason))


def wildcard(scope: IConstruct, pattern: str, reason: str) -> None:
    """Acknowledge an IAM5 finding for a wildcard resource, written as cdk-nag prints it."""
    acknowledge(scope, f"AwsSolutions-IAM5[Resource::{pattern}]", reason)


def arn_of(construct: IConstruct) -> str:
    """How cdk-nag prints the Fn::GetAtt Arn of a construct's own resource: `<LogicalId.Arn>`."""
    resource = construct.node.default_child
    assert isinstance(resource, CfnResource)
    logical_id = Stack.of(resource).resolve(Stack.of(resource).get_logical_id(resource))
    return f"<{logical_id}.Arn>"


def regional_arn(service: str, resource: str) -> str:
    """How cdk-nag prints `Stack.format_arn` output for this account and region."""
    return f"arn:<AWS::Partition>:{service}:<AWS::Region>:<AWS::AccountId>:{resource}"
