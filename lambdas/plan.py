"""PlanExport: catalog, skip rules, types and partitions; the manifest goes to the work bucket."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.parser import event_parser

from dbexport.aws.config import CloudConfig
from dbexport.aws.events import SourceEvent
from dbexport.aws.export import plan
from lambdas import logger, metrics, tracer

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext


@logger.inject_lambda_context(correlation_id_path="export_task_identifier")
@tracer.capture_lambda_handler
@metrics.log_metrics
@event_parser(model=SourceEvent)
def handler(event: SourceEvent, context: LambdaContext) -> dict[str, Any]:
    planned = plan(event, CloudConfig.from_env())
    metrics.add_metric(name="PlannedPartitions", unit=MetricUnit.Count, value=planned.partitions)
    return planned.model_dump(mode="json")
