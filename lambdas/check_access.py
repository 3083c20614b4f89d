"""CheckAccess: the task's IAM role can write its metadata to the bucket with the KMS key."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aws_lambda_powertools.utilities.parser import event_parser

from dbexport.aws.config import CloudConfig
from dbexport.aws.events import TaskEvent
from dbexport.aws.requests import check_access
from lambdas import logger, tracer

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext


@logger.inject_lambda_context(correlation_id_path="export_task_identifier")
@tracer.capture_lambda_handler
@event_parser(model=TaskEvent)
def handler(event: TaskEvent, context: LambdaContext) -> dict[str, Any]:
    check_access(event, CloudConfig.from_env())
    return {}
