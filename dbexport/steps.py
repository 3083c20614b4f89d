"""The export's steps as plain functions; the local runtime and the Lambdas call the same ones."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from dbexport import metadata
from dbexport.destinations import export_root
from dbexport.errors import ExportFailed
from dbexport.layout import table_folder
from dbexport.models import (
    ExportPlan,
    ExportTask,
    Partition,
    PartitionResult,
    PartitionWork,
    SkippedTable,
    Status,
    TablePlan,
)
from dbexport.outcomes import write_export_info
from dbexport.planning import (
    even_cuts,
    partition_count,
    quantile_fractions,
    split_by_key,
    split_by_pages,
    split_by_tuples,
)
from dbexport.sources import for_table, for_url, mysql, postgres
from dbexport.typemap import arrow_schema, map_column, map_mysql_column, mysql_needs_probe, value_probe
from dbexport.urls import engine_of
from dbexport.writer import write_partition

if TYPE_CHECKING:
    from collections.abc import Callable
    from contextlib import ExitStack

    from dbexport.destinations import Destination
    from dbexport.models import ExportSettings
    from dbexport.sources.postgres import CatalogTable, Snapshot
    from dbexport.typemap import ProbeKind
    from dbexport.urls import EngineName
    from dbexport.validation import Selection

log = logging.getLogger(__name__)

# The anchor skips a table whose column name holds one of these.
_BAD_COLUMN_CHARS = frozenset(",;{}()\n\t= ")
_NOT_EXPORTED_KINDS = {"v": "view", "m": "materialized view", "f": "foreign table"}
# MySQL: an integer key whose values span more than this many times its rows is sampled, not cut evenly.
_DENSE_KEY_SPAN = 4
# The most a row can hold besides its TOAST: one heap page.
_MAX_INLINE_ROW_BYTES = 8192


def _skip_reason(relation: CatalogTable) -> str | None:
    if "/" in relation.name:
        return "TABLE_NAME_HAS_SLASH"
    if relation.persistence == "t":
        return "TEMPORARY_TABLE"
    if relation.persistence == "u":
        return "UNLOGGED_TABLE"
    if not relation.readable:
        return "PERMISSIONS_DO_NOT_EXIST"
    return None


def open_snapshots(
    source_url: str, selection: Selection, stack: ExitStack, workers: int = 0
) -> dict[str, Snapshot | mysql.Snapshot]:
    """A snapshot of each database the selection wants, held open until `stack` closes.

    MySQL's snapshot can't be joined later: its `workers` connections start theirs now (see mysql.open_snapshots).
    """
    databases = for_url(source_url).list_databases(source_url)
    missing = sorted(selection.database_names() - set(databases))
    if missing:
        raise ExportFailed(
            f"ExportOnly names the database {', '.join(missing)}, which the source cluster does not have."
        )
    wanted = [db for db in databases if selection.wants_database(db)]
    if engine_of(source_url) == "mysql":
        return dict(stack.enter_context(mysql.open_snapshots(source_url, wanted, workers)))
    return {db: stack.enter_context(postgres.open_snapshot(postgres.database_dsn(source_url, db))) for db in wanted}


def plan_database(
    snapshot: Snapshot | mysql.Snapshot, database: str, selection: Selection, settings: ExportSettings
) -> ExportPlan:
    """Catalog, selection, skip rules, type mapping and partitions of one database, in its snapshot."""
    if isinstance(snapshot, mysql.Snapshot):
        return _plan_mysql_database(snapshot, database, selection, settings)
    conn = snapshot.conn
    relations = postgres.list_relations(conn)
    _check_selection_matches(database, selection, relations, postgres.list_schemas(conn))
    planned = _Planned(database)
    for relation in relations:
        # A partition is exported through the partitioned table above it, when that one is exported.
        if any(selection.wants_table(database, *ancestor) for ancestor in relation.ancestors):
            continue
        if not selection.wants_table(database, relation.schema, relation.name):
            continue
        if relation.kind in _NOT_EXPORTED_KINDS:
            if (database, relation.schema, relation.name) in selection.tables:
                planned.not_a_table(f"{database}.{relation.schema}.{relation.name}", _NOT_EXPORTED_KINDS[relation.kind])
            continue
        skip = _skip_reason(relation)
        planned.add(
            relation.schema, relation.name, skip or _plan_table(conn, database, relation, settings, planned.warnings)
        )
    return planned.plan(snapshot)


@dataclass
class _Planned:
    """What planning one database gathers, table by table."""

    database: str
    engine: EngineName = "postgresql"
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

    def plan(self, snapshot: Snapshot | mysql.Snapshot) -> ExportPlan:
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


def _check_selection_matches(
    database: str, selection: Selection, relations: list[CatalogTable], schemas: set[str]
) -> None:
    """A name in ExportOnly that matches nothing is an error, not an empty success.

    A schema that exists without tables is not an error: it names what the user meant, which is empty.
    """
    tables = {(r.schema, r.name) for r in relations}
    missing = [".".join((db, s)) for db, s in selection.schemas if db == database and s not in schemas]
    missing += [".".join((db, s, t)) for db, s, t in selection.tables if db == database and (s, t) not in tables]
    _refuse_missing(missing)


def _refuse_missing(missing: list[str]) -> None:
    if missing:
        raise ExportFailed(
            f"ExportOnly names {', '.join(sorted(missing))}, which the source cluster does not have. "
            "Check the names (they are case-sensitive) and retry the export."
        )


def _plan_table(
    conn: Any, database: str, relation: CatalogTable, settings: ExportSettings, warnings: list[str]
) -> TablePlan | str:
    """The table's plan, or the reason it is skipped."""
    source_columns = postgres.list_columns(conn, relation.oid)
    if any(_BAD_COLUMN_CHARS & set(c.name) for c in source_columns):
        return "COLUMN_NAME_HAS_UNSUPPORTED_CHARACTERS"
    size = postgres.table_size(conn, relation.oid)
    probes: dict[str, ProbeKind] = {
        c.name: kind for c in source_columns if (kind := value_probe(c, settings.type_mapping)) is not None
    }
    # Only values stored out of line can reach the size limits, so tables with little TOAST need no scan:
    # a row holds at most one heap page besides its TOAST.
    limit = min(settings.max_value_bytes, settings.max_row_bytes)
    sized = [c.name for c in source_columns] if size.toast_bytes + _MAX_INLINE_ROW_BYTES >= limit else []
    unrepresentable: frozenset[str] = frozenset()
    partitioned = relation.kind == "p"
    if probes or sized:
        scan = postgres.scan_values(conn, relation.schema, relation.name, probes, sized, partitioned=partitioned)
        unrepresentable = scan.unrepresentable
        if scan.largest_row >= settings.max_row_bytes:
            return "ROW_SIZE_EXCEEDS_LIMIT"
        value_bytes, value_column = scan.largest_value
        if value_bytes >= settings.max_value_bytes:
            raise ExportFailed(
                f"The table {database}.{relation.schema}.{relation.name} has a value of {_size(value_bytes)} "
                f"in column {value_column}; values of {_size(settings.max_value_bytes)} or more can't be "
                "exported. Exclude the table with ExportOnly and retry the export."
            )
    columns = []
    for source_column in source_columns:
        column = map_column(source_column, settings.type_mapping, source_column.name in unrepresentable)
        if column is None:
            warnings.append(
                f"Column {relation.schema}.{relation.name}.{source_column.name} of type "
                f"{source_column.base_type} is not exported."
            )
        else:
            columns.append(column)
    return TablePlan(
        database=database,
        schema=relation.schema,
        table=relation.name,
        is_partitioned=partitioned,
        columns=columns,
        partitions=_partitions(conn, relation, size, settings),
        estimated_bytes=size.bytes,
    )


def _partitions(conn: Any, relation: CatalogTable, size: postgres.TableSize, settings: ExportSettings) -> list[Any]:
    count = partition_count(size.bytes, settings.partition_target_bytes)
    key = postgres.integer_key(conn, relation.oid) if count > 1 else None
    if key is not None:
        cuts = postgres.key_quantiles(
            conn,
            relation.schema,
            relation.name,
            key,
            quantile_fractions(count),
            size.estimated_rows,
            partitioned=relation.kind == "p",
        )
        if cuts:
            return split_by_key(key, cuts, size.bytes)
    return split_by_pages(size.pages, size.bytes, settings.partition_target_bytes)


def _plan_mysql_database(
    snapshot: mysql.Snapshot, database: str, selection: Selection, settings: ExportSettings
) -> ExportPlan:
    """plan_database for MySQL: a database's tables are named `database.table`, and have no schema."""
    conn = snapshot.conn
    relations = mysql.list_relations(conn, database)
    names = {r.name for r in relations}
    _refuse_missing([f"{db}.{t}" for db, _, t in selection.tables if db == database and t not in names])
    planned = _Planned(database, "mysql", warnings=list(snapshot.warnings))
    for relation in relations:
        if not selection.wants_table(database, database, relation.name):
            continue
        if relation.kind != "table":
            if (database, database, relation.name) in selection.tables:
                planned.not_a_table(f"{database}.{relation.name}", relation.kind)
            continue
        skip = "TABLE_NAME_HAS_SLASH" if "/" in relation.name else None
        if not relation.readable:
            skip = skip or "PERMISSIONS_DO_NOT_EXIST"
        planned.add(
            database,
            relation.name,
            skip or _plan_mysql_table(conn, database, relation.name, settings, planned.warnings),
        )
    return planned.plan(snapshot)


def _plan_mysql_table(
    conn: Any, database: str, name: str, settings: ExportSettings, warnings: list[str]
) -> TablePlan | str:
    """A MySQL table's plan, or the reason it is skipped."""
    source_columns = mysql.list_columns(conn, database, name)
    if any(_BAD_COLUMN_CHARS & set(c.name) for c in source_columns):
        return "COLUMN_NAME_HAS_UNSUPPORTED_CHARACTERS"
    probed = [c.name for c in source_columns if mysql_needs_probe(c, settings.type_mapping)]
    zero_dates = mysql.zero_date_columns(conn, database, name, probed) if probed else frozenset()
    warnings += [
        f"Column {database}.{name}.{column} holds zero dates (0000-00-00), a zero month or day, or year 0, which "
        "a Parquet date or timestamp can't hold: it is exported as text (STRING), as MySQL prints it."
        for column in sorted(zero_dates)
    ]
    size = mysql.table_size(conn, database, name)
    return TablePlan(
        database=database,
        schema=database,
        table=name,
        engine="mysql",
        columns=[map_mysql_column(c, settings.type_mapping, c.name in zero_dates) for c in source_columns],
        partitions=_mysql_partitions(conn, database, name, size, settings),
        estimated_bytes=size.bytes,
    )


def _mysql_partitions(
    conn: Any, database: str, name: str, size: mysql.TableSize, settings: ExportSettings
) -> list[Partition]:
    """Ranges of an integer key's first column, else of the key's tuples; one partition without a usable key."""
    count = partition_count(size.bytes, settings.partition_target_bytes)
    key = mysql.table_key(conn, database, name) if count > 1 else None
    if (column := mysql.integer_key(key)) is not None:
        # The key's smallest and largest values cost two index lookups; even ranges of its values suit a dense
        # key. A sparse or skewed one (its values span far more than its rows), or one of a single value, is
        # split at sampled keys instead, below.
        bounds = mysql.key_range(conn, database, name, column)
        if bounds is None:
            return [Partition(index="1", estimated_bytes=size.bytes)]
        cuts = even_cuts(*bounds, count)
        if cuts and bounds[1] - bounds[0] < _DENSE_KEY_SPAN * max(size.estimated_rows, 1):
            return split_by_key(column, cuts, size.bytes)
    if (columns := mysql.tuple_key(key)) is not None:
        every = max(1, size.estimated_rows // count)
        boundaries = mysql.key_boundaries(conn, database, name, columns, every)
        if len(boundaries) >= count:  # the row estimate was low: keep count - 1 of them, evenly spaced
            boundaries = [boundaries[len(boundaries) * i // count] for i in range(1, count)]
        if column is not None and columns == [column]:
            return split_by_key(column, [int(b[0]) for b in boundaries], size.bytes)
        return split_by_tuples(columns, boundaries, size.bytes)
    return [Partition(index="1", estimated_bytes=size.bytes)]


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
