"""Pydantic models that cross boundaries: the RDS-shaped task, the plan, the partition work."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PlainSerializer
from pydantic.alias_generators import to_pascal

from dbexport.urls import EngineName, has_schemas  # noqa: TC001 (pydantic reads EngineName at run time)

GIB = 1024**3
MIB = 1024**2

# The AWS CLI prints timestamps as ISO 8601 with an explicit UTC offset.
AwsTime = Annotated[datetime, PlainSerializer(lambda t: t.isoformat(), return_type=str, when_used="json")]

TypeMapping = Literal["aurora", "typed"]
Runtime = Literal["local", "aws"]
Compression = Literal["gzip", "zstd", "snappy", "none"]
# Each worker holds a connection to the source for the whole export (MySQL opens them all up front), and every
# worker shares this machine's cores: 32 stays well inside the connection limit of a small server (PostgreSQL's
# default max_connections is 100; RDS's smallest MySQL classes allow 60 to 80) and past what one machine gains from.
MAX_WORKERS = 32


class Status(StrEnum):
    STARTING = "STARTING"
    IN_PROGRESS = "IN_PROGRESS"
    COMPLETE = "COMPLETE"
    FAILED = "FAILED"
    CANCELING = "CANCELING"
    CANCELED = "CANCELED"


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class _RdsShape(BaseModel):
    """Fields named in snake_case here and in RDS's PascalCase on the wire."""

    model_config = ConfigDict(alias_generator=to_pascal, populate_by_name=True, extra="forbid")

    def to_rds(self) -> dict[str, Any]:
        """The JSON the AWS CLI would print: RDS names, absent fields left out."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


class ExportSettings(_Frozen):
    """dbexport's own knobs, beyond the anchor's API."""

    type_mapping: TypeMapping = "aurora"
    compression: Compression = "gzip"
    partition_target_bytes: int = Field(default=256 * MIB, gt=0)
    max_file_bytes: int = Field(default=20 * 10**9, gt=0)
    row_group_rows: int = Field(default=128 * 1024, gt=0)
    workers: int = Field(default=2, ge=1, le=MAX_WORKERS)
    # The anchor's limits: a row of about 2 GB is skipped, a value of about 500 MB fails the export.
    max_row_bytes: int = Field(default=2 * GIB, gt=0)
    max_value_bytes: int = Field(default=500 * MIB, gt=0)


class ExportRequestFields(_RdsShape):
    """StartExportTask's input but the task's identifier (a schedule gives a prefix instead: see dbexport.aws)."""

    source_arn: str
    s3_bucket_name: str
    iam_role_arn: str | None = None
    kms_key_id: str | None = None
    s3_prefix: str = ""
    export_only: list[str] = Field(default_factory=list)


class StartExportTaskRequest(ExportRequestFields):
    """StartExportTask's input, as botocore's RDS model names it."""

    export_task_identifier: str


class ExportTask(_RdsShape):
    """The ExportTask shape of botocore's RDS model."""

    export_task_identifier: str
    source_arn: str
    export_only: list[str] = Field(default_factory=list)
    snapshot_time: AwsTime | None = None
    task_start_time: AwsTime | None = None
    task_end_time: AwsTime | None = None
    s3_bucket: str
    s3_prefix: str = ""
    iam_role_arn: str | None = None
    kms_key_id: str | None = None
    status: Status = Status.STARTING
    percent_progress: int = 0
    total_extracted_data_in_gb: int = Field(default=0, alias="TotalExtractedDataInGB")
    failure_cause: str | None = None
    warning_message: str | None = None
    source_type: Literal["SNAPSHOT", "CLUSTER"] = "CLUSTER"


class Column(_Frozen):
    """One exported column: how it is read and what it becomes in Parquet."""

    name: str
    original_type: str  # information_schema's name: `character varying`, `ARRAY`, `USER-DEFINED`
    read_as: Literal["native", "text"]
    # native: the type is read as is (cast to `cast_to` when it is a domain);
    # text: the type's own output function, as PostgreSQL prints it.
    cast_to: str | None = None
    output_function: tuple[str, str] | None = None  # (schema, function) for read_as == "text"
    export_type: str  # see typemap.arrow_type
    precision: int | None = None
    scale: int | None = None


class Partition(_Frozen):
    """A slice of a table: all rows, a key range, a range of heap pages or of key tuples; bounds are [lower, upper).

    A `tuple` range compares the row `keys` with `lower_tuple` and `upper_tuple` (MySQL: a primary key whose
    first column is not an integer); None is an open end.
    """

    index: str
    kind: Literal["all", "key", "pages", "tuple"] = "all"
    key: str | None = None
    lower: int | None = None
    upper: int | None = None
    keys: list[str] | None = None
    lower_tuple: list[int | float | str] | None = None
    upper_tuple: list[int | float | str] | None = None
    estimated_bytes: int = 0


def target_name(engine: EngineName, database: str, schema: str, table: str) -> str:
    """How export_tables_info names a table: `database.schema.table`; without schemas (MySQL) `database.table`."""
    return f"{database}.{schema}.{table}" if has_schemas(engine) else f"{database}.{table}"


class SkippedTable(_Frozen):
    database: str
    schema_: str = Field(alias="schema")
    table: str
    reason: str
    engine: EngineName = "postgresql"

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    @property
    def target(self) -> str:
        return target_name(self.engine, self.database, self.schema_, self.table)


class TablePlan(_Frozen):
    database: str
    schema_: str = Field(alias="schema")
    table: str
    is_partitioned: bool = False
    columns: list[Column]
    partitions: list[Partition]
    estimated_bytes: int
    # An engine without schemas (MySQL) gives its tables the database as their schema: `database.table`.
    engine: EngineName = "postgresql"

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    @property
    def target(self) -> str:
        return target_name(self.engine, self.database, self.schema_, self.table)


class ExportPlan(_Frozen):
    """What one database exports: its tables and their partitions, and what it skips."""

    database: str
    snapshot_id: str
    snapshot_time: datetime
    tables: list[TablePlan]
    skipped: list[SkippedTable] = Field(default_factory=list)
    # ExportOnly names that point at something the export does not copy (a view, a foreign table).
    skipped_objectives: list[dict[str, str]] = Field(default_factory=list)
    general_warnings: list[str] = Field(default_factory=list)


class PartitionWork(_Frozen):
    """One unit of the fan-out: everything a worker needs to export one partition."""

    task: ExportTask
    settings: ExportSettings
    table: TablePlan
    partition: Partition
    snapshot_id: str | None  # None where the source is a clone nobody writes to


class PartitionResult(_Frozen):
    target: str
    partition_index: str
    rows: int
    bytes_written: int
    objects: list[str]
