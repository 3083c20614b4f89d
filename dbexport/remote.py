"""The export API through a deployed dbexport stack: its state machine starts tasks, its table records them."""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import boto3
from botocore.exceptions import ClientError

from dbexport import errors
from dbexport.api import describe
from dbexport.aws.contract import STATE_MACHINE_ARN_OUTPUT, TASK_TABLE_NAME_OUTPUT
from dbexport.tasks.dynamodb import DynamoDbTaskStore
from dbexport.tasks.lifecycle import FINISHED, already_exists

if TYPE_CHECKING:
    from dbexport.api import DescribeRequest, Display, TaskPage
    from dbexport.models import ExportSettings, ExportTask, StartExportTaskRequest

_AWS_CLI_PREFIX = re.compile(r"^An error occurred \(\w+\) when calling the \w+ operation: ")
# How long a start waits for ValidateRequest to accept or refuse the request.
DECISION_TIMEOUT_SECONDS = 60.0
# How often start_export_task(wait=True) asks how its task is doing.
POLL_SECONDS = 10.0


@dataclass(frozen=True)
class DeployedStack:
    """A deployed stack, known by the outputs of `cdk deploy`: the export API in AWS."""

    state_machine_arn: str
    table_name: str

    @classmethod
    def named(cls, stack_name: str) -> DeployedStack:
        try:
            (stack,) = boto3.client("cloudformation").describe_stacks(StackName=stack_name)["Stacks"]
        except ClientError as exc:
            raise errors.InvalidParameterValue(f"Cannot read the stack {stack_name}: {exc}") from exc
        outputs = {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}
        try:
            return cls(outputs[STATE_MACHINE_ARN_OUTPUT], outputs[TASK_TABLE_NAME_OUTPUT])
        except KeyError as exc:
            raise errors.InvalidParameterValue(
                f"The stack {stack_name} has no output {exc.args[0]}: is it a dbexport stack?"
            ) from exc

    def store(self) -> DynamoDbTaskStore:
        return DynamoDbTaskStore(self.table_name)

    def start_export_task(
        self,
        request: StartExportTaskRequest,
        settings: ExportSettings,
        *,
        wait: bool = False,
        display: Display | None = None,
    ) -> ExportTask:
        """Start the state machine; with `wait`, look at the task every POLL_SECONDS until it ends."""
        task = _start_execution(self, request, settings)
        store = self.store()
        while wait and task.status not in FINISHED:
            time.sleep(POLL_SECONDS)
            task = store.get(task.export_task_identifier)
            if display:
                display.polled(task)
        return task

    def describe_export_tasks(self, request: DescribeRequest) -> TaskPage:
        return describe(self.store(), request)

    def cancel_export_task(self, identifier: str) -> ExportTask:
        return self.store().cancel(identifier)


def _start_execution(stack: DeployedStack, request: StartExportTaskRequest, settings: ExportSettings) -> ExportTask:
    """Start an execution named after the task; return the task once ValidateRequest registered it.

    A refusal comes back as the RDS error ValidateRequest raised (ExportTaskAlreadyExists, ...).
    """
    sfn = boto3.client("stepfunctions")
    payload = request.model_dump(mode="json", by_alias=True, exclude_none=True)
    payload["Settings"] = settings.model_dump(mode="json")
    try:
        execution_arn = sfn.start_execution(
            stateMachineArn=stack.state_machine_arn,
            name=request.export_task_identifier,
            input=json.dumps(payload),
        )["executionArn"]
    except sfn.exceptions.ExecutionAlreadyExists as exc:
        raise errors.ExportTaskAlreadyExists(already_exists(request.export_task_identifier)) from exc
    store = stack.store()
    deadline = time.monotonic() + DECISION_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        execution = sfn.describe_execution(executionArn=execution_arn)
        if execution["status"] == "FAILED" and not _registered(store, request.export_task_identifier):
            raise _refusal(execution)
        if _registered(store, request.export_task_identifier):
            return store.get(request.export_task_identifier)
        time.sleep(0.5)
    raise errors.RetryableError(
        f"The export task {request.export_task_identifier} was started ({execution_arn}) but not yet "
        "registered; check it with describe-export-tasks."
    )


def _registered(store: DynamoDbTaskStore, identifier: str) -> bool:
    try:
        store.get(identifier)
    except errors.ExportTaskNotFound:
        return False
    return True


def _refusal(execution: dict[str, Any]) -> errors.DbExportError:
    """ValidateRequest's error, as the RDS error it names."""
    name = execution.get("error", "")
    try:
        message = json.loads(execution.get("cause") or "{}").get("errorMessage", "")
    except json.JSONDecodeError:
        message = execution.get("cause", "")
    error_class = getattr(errors, name, None)
    if isinstance(error_class, type) and issubclass(error_class, errors.RdsError):
        # The Lambda reported str(error): the AWS CLI's whole sentence; keep only the message.
        return error_class(_AWS_CLI_PREFIX.sub("", message))
    return errors.ExportFailed(f"The export could not start: {name}: {message}")
