"""The event a finished export task announces: RDS's event, under dbexport's own source (pure).

The local runtime appends it to a JSON-lines file; the AWS runtime publishes the same JSON to SNS and
EventBridge. Rules match on `detail.EventID` as they would for RDS.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from dbexport.models import Status

if TYPE_CHECKING:
    from dbexport.models import ExportTask

SOURCE = "dbexport"
DETAIL_TYPE = "Export Task State Change"
_RDS_EVENTS = {
    Status.FAILED: ("RDS-EVENT-0234", "Export task failed."),
    Status.CANCELED: ("RDS-EVENT-0235", "Export task canceled."),
    Status.COMPLETE: ("RDS-EVENT-0236", "Export task completed."),
}


def task_event(
    task: ExportTask, rows: int | None, bytes_written: int | None, now: datetime | None = None
) -> dict[str, Any]:
    """The EventBridge-shaped event of a task that reached COMPLETE, FAILED or CANCELED.

    `rows` and `bytes_written` are None when they are not known (a runner that died).
    """
    event_id, message = _RDS_EVENTS[task.status]
    date = (now or datetime.now(UTC)).isoformat()
    return {
        "version": "0",
        "detail-type": DETAIL_TYPE,
        "source": SOURCE,
        "time": date,
        "resources": [task.source_arn],
        "detail": {
            "EventCategories": ["notification"],
            "SourceType": task.source_type,
            "SourceArn": task.source_arn,
            "Date": date,
            "Message": message,
            "SourceIdentifier": task.export_task_identifier,
            "EventID": event_id,
            # dbexport's additions: the task itself and what it moved.
            "ExportTask": task.to_rds(),
            "ExportedRows": rows,
            "ExportedBytes": bytes_written,
        },
    }
