"""A sample event for every state, as the state machine passes it (the state's Payload), and each state's models.

`<function>.json` is the event of `lambdas.<function>`; the samples name the database `sales`, which a replay
replaces with its own.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from dbexport.aws import contract
from dbexport.aws.events import (
    FailureEvent,
    Outcome,
    PartitionDone,
    PartitionEvent,
    Planned,
    Registered,
    Source,
    SourceEvent,
    TaskEvent,
    ValidateEvent,
)

SAMPLES = Path(__file__).parent
SAMPLE_DATABASE = "sales"
# Each function's event model and result model; None where the state discards the result (ResultPath null).
MODELS: dict[str, tuple[type[BaseModel], type[BaseModel] | None]] = {
    contract.VALIDATE: (ValidateEvent, Registered),
    contract.CHECK_ACCESS: (TaskEvent, None),
    contract.PREPARE_SOURCE: (TaskEvent, Source),
    contract.SOURCE_READY: (SourceEvent, Source),
    contract.PLAN: (SourceEvent, Planned),
    contract.EXPORT_PARTITION: (PartitionEvent, PartitionDone),
    contract.FINALIZE: (SourceEvent, Outcome),
    contract.RECORD_FAILURE: (FailureEvent, Outcome),
    contract.CLEANUP: (TaskEvent, None),
}


def sample(function: str, database: str = SAMPLE_DATABASE) -> dict[str, Any]:
    """The function's sample event, its database renamed to `database`."""
    text = (SAMPLES / f"{function}.json").read_text()
    # The name alone ("sales"), or first in a dotted one ("sales.public.orders", in ExportOnly and in messages).
    for before in ('"', " "):
        text = text.replace(f"{before}{SAMPLE_DATABASE}", f"{before}{database}")
    return json.loads(text)
