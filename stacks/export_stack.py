"""dbexport's AWS runtime: the Step Functions state machine, its Lambdas, the task table, topic and bucket."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aws_cdk import Stack

from stacks.config import ExportStackProps
from stacks.constructs.functions import ExportFunctions, function_environment
from stacks.constructs.layer import DependenciesLayer
from stacks.constructs.outputs import add_outputs
from stacks.constructs.permissions import grant_function_permissions
from stacks.constructs.schedule import add_schedule
from stacks.constructs.state_machine import add_state_machine
from stacks.constructs.storage import add_storage

if TYPE_CHECKING:
    from constructs import Construct


class ExportStack(Stack):
    """Everything `cdk deploy` creates; the outputs are what the CLI's --stack-name mode reads."""

    def __init__(
        self, scope: Construct, construct_id: str, *, props: ExportStackProps | None = None, **kwargs: Any
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)
        self.props = props = props or ExportStackProps()
        # Made in the stack itself, not nested: a nested scope would rename the logical IDs, and CloudFormation
        # replaces a renamed resource (the retained task table and work bucket would be orphaned).
        storage = add_storage(self)
        self.key, self.table, self.topic, self.bucket = storage.key, storage.table, storage.topic, storage.bucket
        self.functions = ExportFunctions(
            self,
            "Functions",
            layer=DependenciesLayer(self, "Dependencies").layer,
            environment=function_environment(
                props, table_name=self.table.table_name, bucket_name=self.bucket.bucket_name
            ),
            logs_key=self.key,
            vpc=props.vpc,
        )
        grant_function_permissions(self, self.functions.roles, storage, props)
        self.state_machine = add_state_machine(self, self.functions.functions, storage)
        if props.schedule:
            add_schedule(self, self.state_machine, props.schedule)
        add_outputs(self, self.state_machine, storage)
