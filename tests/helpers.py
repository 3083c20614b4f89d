"""Helpers the tests share: run SQL in the test database, export it, read the output back."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pyarrow as pa
import pyarrow.dataset as ds

from dbexport.local import run_export
from dbexport.models import ExportSettings, ExportTask, StartExportTaskRequest
from dbexport.steps import validate_request


def with_database(dsn: str, name: str) -> str:
    """The same server URL, naming another database."""
    return urlunsplit(urlsplit(dsn)._replace(path=f"/{name}"))


def execute(url: str, statements: str) -> None:
    """Run SQL in the test database, autocommit."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(statements)


def export(
    url: str, out: Path, export_id: str = "test-export", settings: ExportSettings | None = None, **request: object
) -> ExportTask:
    """Export the test database to a local directory and return the finished task."""
    task = validate_request(
        StartExportTaskRequest(
            export_task_identifier=export_id,
            source_arn=url,
            s3_bucket_name=out.as_uri(),
            **request,  # type: ignore[arg-type]
        )
    )
    return run_export(task, url, settings or ExportSettings())


def read_table(out: Path, export_id: str, database: str, schema: str, table: str) -> pa.Table:
    """Every Parquet file under the table's folder, as the anchor tells readers to read them."""
    folder = out / export_id / database / f"{schema}.{table}".translate(str.maketrans({c: "_" for c in '\\`" '}))
    return ds.dataset(folder, format="parquet").to_table()


def database_of(url: str) -> str:
    return urlsplit(url).path.strip("/")
