"""The anchor's export_tables_info files and the WarningMessage (pure builders); export_info is in outcomes."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from dbexport.typemap import exported_type_name

if TYPE_CHECKING:
    from datetime import datetime

    from dbexport.models import ExportPlan, SkippedTable, TablePlan

TABLES_PER_INFO_FILE = 100
GB = 1024**3


@dataclass
class TableOutcome:
    """What exporting one table produced, for its perTableStatus entry."""

    plan: TablePlan
    status: str
    rows: int
    bytes_written: int
    completed_partitions: int
    source_rows: int | None
    started: datetime | None
    ended: datetime | None


def _time(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def table_status(outcome: TableOutcome) -> dict[str, Any]:
    """One perTableStatus entry of export_tables_info."""
    plan = outcome.plan
    return {
        "target": plan.target,
        "status": outcome.status,
        "sizeGB": round(outcome.bytes_written / GB, 9),
        "tableStatistics": {
            "extractionStartTime": _time(outcome.started),
            "extractionEndTime": _time(outcome.ended),
            "exportedRowCount": outcome.rows,
            "sourceRowCount": outcome.source_rows,
            "partitioningInfo": {
                "numberOfPartitions": len(plan.partitions),
                "numberOfCompletedPartitions": outcome.completed_partitions,
            },
        },
        "schemaMetadata": {
            "originalTypeMappings": [
                {
                    "columnName": c.name,
                    "originalType": c.original_type,
                    "expectedExportedType": exported_type_name(c),
                }
                for c in plan.columns
            ]
        },
    }


def skipped_status(skipped: SkippedTable) -> dict[str, Any]:
    return {
        "target": skipped.target,
        "status": "SKIPPED",
        "reason": skipped.reason,
    }


def tables_info_files(
    export_id: str, outcomes: list[TableOutcome], plans: list[ExportPlan]
) -> dict[str, dict[str, Any]]:
    """export_tables_info_<id>_from_<a>_to_<b>.json files, keyed by file name."""
    entries = [table_status(o) for o in outcomes]
    entries += [skipped_status(s) for p in plans for s in p.skipped]
    entries += [{"target": p.database, "warningMessage": w} for p in plans for w in p.general_warnings]
    files = {}
    for start in range(0, max(len(entries), 1), TABLES_PER_INFO_FILE):
        chunk = entries[start : start + TABLES_PER_INFO_FILE]
        name = f"export_tables_info_{export_id}_from_{start + 1}_to_{start + len(chunk)}.json"
        files[name] = {"perTableStatus": chunk}
    return files


def warning_message(plans: list[ExportPlan]) -> str | None:
    """The task's WarningMessage: the anchor's JSON text, or None when there is nothing to say."""
    skipped = [
        {"database": s.database, "schema": s.schema_, "table": s.table, "reason": s.reason}
        for p in plans
        for s in p.skipped
    ]
    general = [{"reason": w} for p in plans for w in p.general_warnings]
    skipped_objectives = [o for p in plans for o in p.skipped_objectives]
    if not (skipped or skipped_objectives or general):
        return None
    return json.dumps({"skippedTables": skipped, "skippedObjectives": skipped_objectives, "general": general})
