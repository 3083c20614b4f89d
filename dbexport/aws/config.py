"""What the stack tells each function through its environment (the names are in contract)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Literal

from dbexport.aws import contract
from dbexport.tasks.dynamodb import DynamoDbTaskStore
from dbexport.tasks.lifecycle import DEFAULT_MAX_UNFINISHED

SourceMode = Literal["clone", "direct"]


@dataclass(frozen=True)
class CloudConfig:
    """What the stack tells each function through its environment."""

    table_name: str
    work_bucket: str | None = None
    source_secret_arn: str | None = None
    source_mode: SourceMode = "clone"
    max_unfinished: int = DEFAULT_MAX_UNFINISHED
    max_concurrency: int = 100

    @classmethod
    def from_env(cls) -> CloudConfig:
        env = os.environ
        mode = env.get(contract.SOURCE_MODE, "clone")
        if mode not in ("clone", "direct"):
            raise ValueError(f"{contract.SOURCE_MODE} must be clone or direct, not {mode!r}")
        return cls(
            table_name=env[contract.TASK_TABLE_NAME],
            work_bucket=env.get(contract.WORK_BUCKET_NAME),
            source_secret_arn=env.get(contract.SOURCE_SECRET_ARN),
            source_mode=mode,  # type: ignore[arg-type]
            max_unfinished=int(env.get(contract.MAX_UNFINISHED_TASKS, DEFAULT_MAX_UNFINISHED)),
            max_concurrency=int(env.get(contract.MAX_CONCURRENCY, 100)),
        )

    def store(self) -> DynamoDbTaskStore:
        return DynamoDbTaskStore(self.table_name, self.max_unfinished)

    @property
    def bucket(self) -> str:
        """The work bucket (plans, manifests, Map results); only some functions are given it."""
        assert self.work_bucket, f"{contract.WORK_BUCKET_NAME} is not set"
        return self.work_bucket
