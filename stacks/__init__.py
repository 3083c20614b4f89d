"""The CDK app's stacks: `ExportStack` is what `cdk deploy` puts into an account."""

from stacks.config import ExportStackProps
from stacks.export_stack import ExportStack

__all__ = ["ExportStack", "ExportStackProps"]
