"""ValidateRequest: check the request and register the task; refusals fail the execution with RDS's code."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aws_lambda_powertools.utilities.parser import event_parser

from dbexport.aws.config import CloudConfig
from dbexport.aws.events import ValidateEvent
from dbexport.aws.requests import validate
from lambdas import logger, tracer

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext


@logger.inject_lambda_context(correlation_id_path="request.ExportTaskIdentifier")
@tracer.capture_lambda_handler
@event_parser(model=ValidateEvent)
def handler(event: ValidateEvent, context: LambdaContext) -> dict[str, Any]:
    return validate(event, CloudConfig.from_env()).model_dump(mode="json")
