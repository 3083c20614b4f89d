"""Finalize: verify row counts, write the metadata files, end the task."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aws_lambda_powertools.utilities.parser import event_parser

from dbexport import cloud
from lambdas import logger, tracer

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext


@logger.inject_lambda_context(correlation_id_path="export_task_identifier")
@tracer.capture_lambda_handler
@event_parser(model=cloud.SourceEvent)
def handler(event: cloud.SourceEvent, context: LambdaContext) -> dict[str, Any]:
    return cloud.finalize(event.export_task_identifier, event.source.model_dump(), cloud.CloudConfig.from_env())
