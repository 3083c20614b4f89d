"""RecordFailure: a state failed; the task ends FAILED with a FailureCause a user can act on."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aws_lambda_powertools.utilities.parser import event_parser

from dbexport.aws.config import CloudConfig
from dbexport.aws.events import FailureEvent
from dbexport.aws.requests import record_failure
from lambdas import logger, tracer

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext


@logger.inject_lambda_context(correlation_id_path="export_task_identifier")
@tracer.capture_lambda_handler
@event_parser(model=FailureEvent)
def handler(event: FailureEvent, context: LambdaContext) -> dict[str, Any]:
    return record_failure(event, CloudConfig.from_env()).model_dump(mode="json")
