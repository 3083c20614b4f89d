"""Thin Lambda handlers, one per state of statemachine/export.asl.json; the work is in dbexport.aws."""

from __future__ import annotations

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.logging.utils import copy_config_to_registered_loggers

from dbexport.aws.contract import SERVICE_NAME

# The stack sets POWERTOOLS_SERVICE_NAME and POWERTOOLS_METRICS_NAMESPACE too; these are the defaults.
logger = Logger(service=SERVICE_NAME)
tracer = Tracer(service=SERVICE_NAME)
metrics = Metrics(namespace=SERVICE_NAME, service=SERVICE_NAME)
# The core logs through the standard library; its records come out as JSON with the task's id too.
copy_config_to_registered_loggers(source_logger=logger, include={"dbexport"})
