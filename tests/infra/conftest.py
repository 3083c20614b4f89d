"""Fixtures for the CDK app's tests: the layer built once, the stack synthesized once per variant."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import pytest

# jsii starts Node when aws_cdk is imported: quiet its Node-version banners first.
os.environ.setdefault("JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION", "1")
os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "18,20")

import aws_cdk as cdk  # noqa: E402
from aws_cdk.assertions import Template  # noqa: E402

from layers import build as layer_build  # noqa: E402
from stacks import ExportStack, ExportStackProps  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
CDK_CONTEXT: dict[str, Any] = json.loads((ROOT / "cdk.json").read_text())["context"]
# The stack's own source secret (cdk.json names none: each cluster's managed master user secret is used).
SECRET_ARN = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:prod/aurora/exporter-a1B2c3"
VPC_CONTEXT = {
    "vpcId": "vpc-0123456789abcdef0",
    "subnetIds": "subnet-0123456789abcdef0,subnet-0fedcba9876543210",
    "securityGroupId": "sg-0123456789abcdef0",
}
SCHEDULE_INPUT = {
    "ExportTaskIdentifierPrefix": "nightly",
    "SourceArn": "arn:aws:rds:eu-west-1:123456789012:cluster:prod",
    "S3BucketName": "analytics-exports",
    "S3Prefix": "aurora",
    "IamRoleArn": "arn:aws:iam::123456789012:role/dbexport-writer",
    "KmsKeyId": "arn:aws:kms:eu-west-1:123456789012:key/11111111-2222-3333-4444-555555555555",
}


@dataclass
class Synthesized:
    """One synthesized variant of the stack."""

    app: cdk.App
    stack: ExportStack
    template: Template

    @cached_property
    def json(self) -> dict[str, Any]:
        return self.template.to_json()  # type: ignore[no-any-return]

    def resources(self, type_: str) -> dict[str, dict[str, Any]]:
        return {k: v for k, v in self.json["Resources"].items() if v["Type"] == type_}

    def logical_id(self, construct: Any) -> str:
        return str(self.stack.resolve(self.stack.get_logical_id(construct.node.default_child)))


def make_app(context: dict[str, Any] | None = None, *, staging: bool = False) -> tuple[cdk.App, ExportStack]:
    """The app as app.py builds it, with cdk.json's context plus overrides (no nag: tests add it)."""
    full = {**CDK_CONTEXT, "sourceSecretArn": SECRET_ARN, **(context or {})}
    if not staging:
        # Assets are referenced where they are instead of copied into the assembly (the layer is 170 MB).
        full["aws:cdk:disable-asset-staging"] = True
    app = cdk.App(context=full)
    stack = ExportStack(app, "DbExport", props=ExportStackProps.from_context(app.node))
    return app, stack


def synthesize(context: dict[str, Any] | None = None) -> Synthesized:
    app, stack = make_app(context)
    return Synthesized(app, stack, Template.from_stack(stack))


@pytest.fixture(scope="session")
def layer_dir() -> Path:
    """build/layer, built once (cached across sessions by its stamp)."""
    return layer_build.build()


@pytest.fixture(scope="session")
def default_stack(layer_dir: Path) -> Synthesized:
    return synthesize()


@pytest.fixture(scope="session")
def vpc_stack(layer_dir: Path) -> Synthesized:
    return synthesize(
        {
            **VPC_CONTEXT,
            "scheduleExpression": "cron(0 3 * * ? *)",
            "scheduleInput": json.dumps(SCHEDULE_INPUT),
            "maxConcurrency": "250",
            "maxUnfinishedTasks": "8",
        }
    )


@pytest.fixture(scope="session")
def managed_secret_stack(layer_dir: Path) -> Synthesized:
    return synthesize({"sourceSecretArn": ""})


@pytest.fixture(scope="session")
def direct_stack(layer_dir: Path) -> Synthesized:
    return synthesize({"sourceMode": "direct"})
