"""CheckSource: is the clone available yet? Step Functions waits between two asks."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aws_lambda_powertools.utilities.parser import event_parser

from dbexport.aws.clones import source_ready
from dbexport.aws.config import CloudConfig
from dbexport.aws.events import SourceEvent
from lambdas import logger, tracer

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext


@logger.inject_lambda_context(correlation_id_path="export_task_identifier")
@tracer.capture_lambda_handler
@event_parser(model=SourceEvent)
def handler(event: SourceEvent, context: LambdaContext) -> dict[str, Any]:
    return source_ready(event, CloudConfig.from_env()).model_dump(mode="json")
