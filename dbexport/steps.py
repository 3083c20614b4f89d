"""The export's steps as plain functions; the local runtime and the Lambdas call the same ones."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from dbexport import metadata
from dbexport.destinations import export_root, staging_root
from dbexport.errors import ExportFailed
from dbexport.layout import table_folder
from dbexport.leftovers import spool_folder
from dbexport.models import (
    ExportPlan,
    ExportTask,
    PartitionResult,
    PartitionWork,
    SkippedTable,
    Status,
    TablePlan,
    target_name,
)
from dbexport.outcomes import write_export_info
from dbexport.sources import for_name, for_table, for_url
from dbexport.typemap import arrow_schema
from dbexport.writer import write_partition

if TYPE_CHECKING:
    from collections.abc import Callable
    from contextlib import ExitStack

    from dbexport.destinations import Destination
    from dbexport.models import ExportSettings
    from dbexport.sources import Catalog, CatalogEntry, Engine, Snapshot
    from dbexport.urls import EngineName
    from dbexport.validation import Selection

log = logging.getLogger(__name__)

# The anchor skips a table whose column name holds one of these.
_BAD_COLUMN_CHARS = frozenset(",;{}()\n\t= ")


def open_snapshots(
    source_url: str, selection: Selection, stack: ExitStack, settings: ExportSettings | None = None
) -> dict[str, Snapshot]:
    """A snapshot of each database the selection wants, held open until `stack` closes.

    `settings` are the local runtime's, whose workers read in the snapshot (None: the AWS runtime's clone,
    which nobody writes to): an engine whose snapshot can't be joined later (MySQL) starts theirs now.
    """
    engine = for_url(source_url)
    databases = engine.list_databases(source_url)
    missing = sorted(selection.database_names() - set(databases))
    if missing:
        raise ExportFailed(
            f"ExportOnly names the database {', '.join(missing)}, which the source cluster does not have."
        )
    wanted = [db for db in databases if selection.wants_database(db)]
    return dict(stack.enter_context(engine.open_snapshots(source_url, wanted, settings)))


def plan_database(snapshot: Snapshot, database: str, selection: Selection, settings: ExportSettings) -> ExportPlan:
    """Catalog, selection, skip rules, type mapping and partitions of one database, in its snapshot."""
    engine = for_name(snapshot.engine)
    catalog = engine.catalog(snapshot.conn, database)
    _check_selection_matches(engine.NAME, database, selection, catalog)
    planned = _Planned(database, engine.NAME, warnings=list(snapshot.warnings))
    for entry in catalog.entries:
        # A partition is exported through the partitioned table above it, when that one is exported.
        if any(selection.wants_table(database, *ancestor) for ancestor in entry.ancestors):
            continue
        if not selection.wants_table(database, entry.schema, entry.name):
            continue
        if entry.kind != "table":
            if (database, entry.schema, entry.name) in selection.tables:
                planned.not_a_table(target_name(engine.NAME, database, entry.schema, entry.name), entry.kind)
            continue
        planned.add(
            entry.schema,
            entry.name,
            _skip_reason(entry) or _plan_table(engine, snapshot, database, entry, settings, planned.warnings),
        )
    return planned.plan(snapshot)


def _skip_reason(entry: CatalogEntry) -> str | None:
    """The anchor's reasons to skip a table before reading it: its name, the engine's own reason, permissions."""
    if "/" in entry.name:
        return "TABLE_NAME_HAS_SLASH"
    if entry.skip is not None:
        return entry.skip
    if not entry.readable:
        return "PERMISSIONS_DO_NOT_EXIST"
    return None


def _plan_table(
    engine: Engine,
    snapshot: Snapshot,
    database: str,
    entry: CatalogEntry,
    settings: ExportSettings,
    warnings: list[str],
) -> TablePlan | str:
    """The table's plan, or the reason it is skipped; a value over the anchor's limit fails the export."""
    columns = engine.list_columns(snapshot.conn, database, entry)
    if any(_BAD_COLUMN_CHARS & set(c.name) for c in columns):
        return "COLUMN_NAME_HAS_UNSUPPORTED_CHARACTERS"
    draft = engine.plan_table(snapshot.conn, database, entry, columns, settings)
    if draft.largest_row >= settings.max_row_bytes:
        return "ROW_SIZE_EXCEEDS_LIMIT"
    value_bytes, value_column = draft.largest_value
    if value_bytes >= settings.max_value_bytes:
        raise ExportFailed(
            f"The table {target_name(engine.NAME, database, entry.schema, entry.name)} has a value of "
            f"{_size(value_bytes)} in column {value_column}; values of {_size(settings.max_value_bytes)} or more "
            "can't be exported. Exclude the table with ExportOnly and retry the export."
        )
    warnings += draft.warnings
    return TablePlan(
        database=database,
        schema=entry.schema,
        table=entry.name,
        is_partitioned=draft.is_partitioned,
        columns=draft.columns,
        partitions=draft.partitions,
        estimated_bytes=draft.estimated_bytes,
        engine=engine.NAME,
    )


@dataclass
class _Planned:
    """What planning one database gathers, table by table."""

    database: str
    engine: EngineName
    tables: list[TablePlan] = field(default_factory=list)
    skipped: list[SkippedTable] = field(default_factory=list)
    # ExportOnly names of things that are not tables (a view, a foreign table).
    skipped_objectives: list[dict[str, str]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def not_a_table(self, objective: str, kind: str) -> None:
        self.skipped_objectives.append({"objective": objective, "reason": f"It is a {kind}; only tables are exported."})

    def add(self, schema: str, name: str, table: TablePlan | str) -> None:
        """A table's plan, or the reason it is skipped."""
        if isinstance(table, TablePlan):
            self.tables.append(table)
        else:
            self.skipped.append(
                SkippedTable(database=self.database, schema=schema, table=name, reason=table, engine=self.engine)
            )

    def plan(self, snapshot: Snapshot) -> ExportPlan:
        tables = self.tables
        log.info("planned database %s: %d tables, %d skipped", self.database, len(tables), len(self.skipped))
        return ExportPlan(
            database=self.database,
            snapshot_id=snapshot.snapshot_id,
            snapshot_time=snapshot.snapshot_time,
            tables=tables,
            skipped=self.skipped,
            skipped_objectives=self.skipped_objectives,
            general_warnings=self.warnings,
        )


def _check_selection_matches(engine: EngineName, database: str, selection: Selection, catalog: Catalog) -> None:
    """A name in ExportOnly that matches nothing is an error, not an empty success.

    A schema that exists without tables is not an error: it names what the user meant, which is empty.
    """
    tables = {(e.schema, e.name) for e in catalog.entries}
    missing = [".".join((db, s)) for db, s in selection.schemas if db == database and s not in catalog.schemas]
    missing += [
        target_name(engine, db, s, t) for db, s, t in selection.tables if db == database and (s, t) not in tables
    ]
    if missing:
        raise ExportFailed(
            f"ExportOnly names {', '.join(sorted(missing))}, which the source cluster does not have. "
            "Check the names (they are case-sensitive) and retry the export."
        )


def _size(n: int) -> str:
    """A byte count as a user reads it: 500 MB, 1.5 GB, 300 kB."""
    for unit, scale in (("GB", 2**30), ("MB", 2**20), ("kB", 2**10)):
        if n >= scale:
            return f"{n / scale:.3g} {unit}"
    return f"{n} bytes"


def partition_works(task: ExportTask, settings: ExportSettings, plans: list[ExportPlan]) -> list[PartitionWork]:
    """Every partition of the plans as one unit of work, in plan order, each in its database's snapshot."""
    return [
        PartitionWork(task=task, settings=settings, table=table, partition=partition, snapshot_id=plan.snapshot_id)
        for plan in plans
        for table in plan.tables
        for partition in table.partitions
    ]


def export_partition(
    work: PartitionWork,
    dsn: str,
    destination: Destination,
    on_rows: Callable[[int], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> PartitionResult:
    """Read one partition inside the shared snapshot and write its Parquet objects."""
    table, partition = work.table, work.partition
    batches = for_table(table).read_partition(dsn, work.snapshot_id, table, partition)
    written = write_partition(
        batches,
        arrow_schema(table.columns),
        destination,
        f"{table_folder(work.task, table)}/{partition.index}",
        work.settings,
        write_empty=partition.index == "1",
        on_batch=on_rows,
        should_stop=should_stop,
        staging=staging_root(work.task),
        spool=spool_folder(work.task.export_task_identifier),
    )
    log.info("exported %s partition %s: %d rows", table.target, partition.index, written.rows)
    return PartitionResult(
        target=table.target,
        partition_index=partition.index,
        rows=written.rows,
        bytes_written=written.bytes_written,
        objects=written.objects,
    )


def verify_table(
    plan: ExportPlan, table: TablePlan, results: list[PartitionResult], conn: Any
) -> metadata.TableOutcome:
    """Compare the rows written with the rows the source holds (in the snapshot `conn` reads)."""
    rows = sum(r.rows for r in results)
    source_rows = for_table(table).count_rows(conn, table)
    if rows != source_rows:
        log.error("%s: exported %d rows, the source has %d", table.target, rows, source_rows)
    return metadata.TableOutcome(
        plan=table,
        status="COMPLETE" if rows == source_rows and len(results) == len(table.partitions) else "FAILED",
        rows=rows,
        bytes_written=sum(r.bytes_written for r in results),
        completed_partitions=len(results),
        source_rows=source_rows,
        started=plan.snapshot_time,
        ended=datetime.now(UTC),
    )


def finalize(
    task: ExportTask,
    plans: list[ExportPlan],
    outcomes: list[metadata.TableOutcome],
    destination: Destination,
    now: datetime | None = None,
) -> ExportTask:
    """Write the metadata files and end the task: COMPLETE, or FAILED when a table did not verify."""
    failed = [o.plan.target for o in outcomes if o.status != "COMPLETE"]
    total_bytes = sum(o.bytes_written for o in outcomes)
    update: dict[str, Any] = {
        "task_end_time": now or datetime.now(UTC),
        "total_extracted_data_in_gb": total_bytes // metadata.GB,
        "warning_message": metadata.warning_message(plans),
    }
    if failed:
        update |= {
            "status": Status.FAILED,
            "failure_cause": f"The exported row count did not match the source for {', '.join(failed)}.",
        }
    else:
        update |= {"status": Status.COMPLETE, "percent_progress": 100}
    task = task.model_copy(update=update)
    root = export_root(task)
    for name, body in metadata.tables_info_files(task.export_task_identifier, outcomes, plans).items():
        destination.put_bytes(json.dumps(body, indent=2).encode(), f"{root}/{name}")
    write_export_info(task, destination)
    return task
