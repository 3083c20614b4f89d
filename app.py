#!/usr/bin/env python3
"""The CDK app: `npx cdk synth` / `npx cdk deploy` (settings: cdk.json's context, or -c key=value)."""

from __future__ import annotations

import aws_cdk as cdk
from cdk_nag import AwsSolutionsChecks

from stacks import ExportStack, ExportStackProps

app = cdk.App()
ExportStack(app, app.node.try_get_context("stackName") or "DbExport", props=ExportStackProps.from_context(app.node))
if app.node.try_get_context("nag") not in (False, "false"):
    # cdk-nag 3 is a policy-validation plugin: unacknowledged findings fail the synth.
    cdk.Validations.of(app).add_plugins(AwsSolutionsChecks(app, verbose=True))
app.synth()
