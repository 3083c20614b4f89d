"""ExportPartition: one partition of the manifest to Parquet in the user's bucket."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.parser import event_parser

from dbexport.aws.config import CloudConfig
from dbexport.aws.events import PartitionEvent
from dbexport.aws.export import export_partition
from lambdas import logger, metrics, tracer

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext


@logger.inject_lambda_context(correlation_id_path="export_task_identifier")
@tracer.capture_lambda_handler
@metrics.log_metrics
@event_parser(model=PartitionEvent)
def handler(event: PartitionEvent, context: LambdaContext) -> dict[str, Any]:
    started = time.monotonic()
    done = export_partition(event, CloudConfig.from_env())
    metrics.add_metric(name="ExportedRows", unit=MetricUnit.Count, value=done.rows)
    metrics.add_metric(name="ExportedBytes", unit=MetricUnit.Bytes, value=done.bytes_written)
    metrics.add_metric(name="PartitionSeconds", unit=MetricUnit.Seconds, value=time.monotonic() - started)
    return done.model_dump(mode="json")
