"""Transient faults are ridden out by the local runtime: S3 throttling, a backend terminated once.

The faults are real: an S3 endpoint that answers 503 SlowDown to 30% of requests (moto behind a WSGI wrapper),
and the export's own PostgreSQL backend terminated while a partition streams.
"""

from __future__ import annotations

import io
from typing import TYPE_CHECKING

import boto3
import psycopg
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from dbexport import local
from dbexport.errors import SourceUnavailable
from dbexport.local import run_export
from dbexport.models import ExportSettings, StartExportTaskRequest, Status
from dbexport.validation import validate_request
from tests.helpers import database_of, execute, export, read_table
from tests.integration.test_source_faults import LOST, fault_after_first_batch, terminate_postgres_reads
from tests.throttling_s3 import ThrottlingS3

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

# Several partitions of several row groups each: many S3 requests, each of which may be throttled.
SETTINGS = ExportSettings(workers=2, partition_target_bytes=256 * 1024, row_group_rows=2000)
BIG = 300_000


@pytest.fixture(autouse=True)
def quick_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    """The retries' backoff, shortened: the tests count attempts, not seconds."""
    monkeypatch.setattr(local, "RETRY_BASE_SECONDS", 0.01)


@pytest.fixture
def throttling_s3(s3_endpoint: str) -> Iterator[ThrottlingS3]:
    server = ThrottlingS3(share=0.3, seed=12)
    yield server
    server.stop()


class RowCount:
    """A progress display that only counts rows."""

    rows_read = 0

    def begin(self, tables: int, estimated_bytes: int) -> None:
        pass

    def rows(self, count: int) -> None:
        self.rows_read += count

    def partition_done(self, estimated_bytes: int, bytes_written: int, table_done: bool) -> None:
        pass


def make_table(url: str, count: int) -> str:
    execute(
        url,
        "CREATE TABLE t (id bigint PRIMARY KEY, body text);"
        f" INSERT INTO t SELECT i, repeat(md5(i::text), 3) FROM generate_series(1, {count}) i; ANALYZE t;",
    )
    return url


@pytest.fixture
def rows(source: str) -> str:
    return make_table(source, 8000)


@pytest.fixture
def many_rows(source: str) -> str:
    """Several of the driver's batches in one partition: a read can be cut midway."""
    return make_table(source, BIG)


def source_rows(url: str) -> pa.Table:
    with psycopg.connect(url) as conn:
        ids, bodies = zip(*conn.execute("SELECT id, body FROM t ORDER BY id").fetchall(), strict=True)
    return pa.table({"id": list(ids), "body": list(bodies)})


def exported_rows(s3_endpoint: str, bucket: str, folder: str) -> pa.Table:
    """Every Parquet object under the table's folder, read straight from moto (not through the throttling)."""
    s3 = boto3.client("s3", endpoint_url=s3_endpoint)
    keys = [
        o["Key"]
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=folder)
        for o in page.get("Contents", [])
        if o["Key"].endswith(".parquet")
    ]
    tables = [pq.read_table(io.BytesIO(s3.get_object(Bucket=bucket, Key=k)["Body"].read())) for k in keys]
    return pa.concat_tables(tables).select(["id", "body"]).sort_by("id")


def test_an_export_through_30_percent_slowdown_completes_with_the_same_rows(
    rows: str, bucket: str, s3_endpoint: str, throttling_s3: ThrottlingS3
) -> None:
    task = validate_request(
        StartExportTaskRequest(export_task_identifier="throttled", source_arn=rows, s3_bucket_name=bucket)
    )
    done = run_export(task, rows, SETTINGS, endpoint_url=throttling_s3.url)
    assert done.status == Status.COMPLETE, done.failure_cause
    assert throttling_s3.refused > 5, "the endpoint throttled nothing"
    exported = exported_rows(s3_endpoint, bucket, f"throttled/{database_of(rows)}/public.t/")
    expected = source_rows(rows)
    assert exported.num_rows == expected.num_rows == 8000
    assert exported.column("id").to_pylist() == expected.column("id").to_pylist()
    assert exported.column("body").to_pylist() == expected.column("body").to_pylist()


def test_a_backend_terminated_once_mid_read_is_retried_and_the_export_completes(
    many_rows: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rows = many_rows
    terminated: list[bool] = []

    def once() -> None:
        if not terminated:
            terminated.append(True)
            terminate_postgres_reads(rows)

    raised = fault_after_first_batch(monkeypatch, once)
    counted = RowCount()
    request = StartExportTaskRequest(
        export_task_identifier="terminated-once", source_arn=rows, s3_bucket_name=tmp_path.as_uri()
    )
    task = run_export(validate_request(request), rows, ExportSettings(workers=1), progress=counted)
    assert task.status == Status.COMPLETE, task.failure_cause
    assert counted.rows_read == BIG  # the failed attempt's rows were taken back
    assert terminated and [type(e) for e in raised] == [SourceUnavailable]
    exported = read_table(tmp_path, "terminated-once", database_of(rows), "public", "t").sort_by("id")
    assert exported.column("id").to_pylist() == list(range(1, BIG + 1))
    assert exported.select(["id", "body"]).equals(source_rows(rows))


def test_a_backend_terminated_at_every_attempt_fails_after_the_bounded_retries(
    many_rows: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rows = many_rows
    raised = fault_after_first_batch(monkeypatch, lambda: terminate_postgres_reads(rows))
    task = export(rows, tmp_path, "terminated-always", ExportSettings(workers=1))
    assert task.status == Status.FAILED
    assert [type(e) for e in raised] == [SourceUnavailable] * local.PARTITION_ATTEMPTS
    assert task.failure_cause is not None
    assert task.failure_cause.startswith(f"Exporting {database_of(rows)}.public.t (partition 1) {LOST}")
    # The failed attempts left nothing in the table's folder.
    assert not list((tmp_path / "terminated-always").rglob("*.parquet"))
