"""Each sample event of tests/events replayed through its handler; each result validates against its model.

The world is test_state_machine's (moto, direct mode, the real PostgreSQL); the handlers run in-process, in the
order the state machine runs them.
"""

from __future__ import annotations

import json
from typing import Any

import boto3
import pytest

from dbexport.aws import contract
from dbexport.models import Status
from dbexport.tasks.dynamodb import DynamoDbTaskStore
from tests.events import MODELS, sample
from tests.helpers import database_of, execute
from tests.integration import test_state_machine
from tests.integration.test_state_machine import HANDLERS, Deployment, FakeContext

aws = test_state_machine.aws
deployment = test_state_machine.deployment

SAMPLE_TASK = "sample-export"


@pytest.fixture
def sales(deployment: Deployment, source: str) -> str:
    """The samples' world: their `orders` table in a database of the test's, their KMS key alias."""
    execute(
        source,
        """
        CREATE TABLE orders (id bigint PRIMARY KEY, customer text);
        INSERT INTO orders SELECT i, 'customer ' || i FROM generate_series(1, 100) i;
        ANALYZE;
        """,
    )
    boto3.client("kms").create_alias(AliasName="alias/dbexport-sample", TargetKeyId=deployment.key_id)
    return database_of(source)


def replay(function: str, database: str) -> dict[str, Any]:
    """The function's sample through its handler; its result, checked against the state's result model."""
    result = HANDLERS[function](sample(function, database), FakeContext(function))
    json.dumps(result)  # what a Lambda returns must be JSON
    _, result_model = MODELS[function]
    if result_model is None:
        assert result == {}, function
    else:
        result_model.model_validate(result)
    return result


def test_every_sample_replays_through_its_handler_in_the_machine_s_order(deployment: Deployment, sales: str) -> None:
    for function in (
        contract.VALIDATE,
        contract.CHECK_ACCESS,
        contract.PREPARE_SOURCE,
        contract.SOURCE_READY,
        contract.PLAN,
        contract.EXPORT_PARTITION,
        contract.FINALIZE,
        contract.CLEANUP,
    ):
        result = replay(function, sales)
    assert result == {}
    task = DynamoDbTaskStore(deployment.table).get(SAMPLE_TASK)
    assert task.status == Status.COMPLETE, task.failure_cause
    assert [p.rows for p in DynamoDbTaskStore(deployment.table).partition_results(SAMPLE_TASK)] == [100]


def test_the_failure_sample_ends_its_task_failed_with_the_error_s_message(deployment: Deployment, sales: str) -> None:
    for function in (contract.VALIDATE, contract.CHECK_ACCESS):
        replay(function, sales)
    outcome = replay(contract.RECORD_FAILURE, sales)
    replay(contract.CLEANUP, sales)
    task = DynamoDbTaskStore(deployment.table).get(SAMPLE_TASK)
    assert outcome["status"] == task.status == Status.FAILED
    assert task.failure_cause == (
        f"ExportOnly names {sales}.public.no_such_table, which the source cluster does not have. "
        "Check the names (they are case-sensitive) and retry the export."
    )
