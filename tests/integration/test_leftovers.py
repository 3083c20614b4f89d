"""What the next command removes after a dead runner: only that task's half partitions and staging, on disk and S3."""

from __future__ import annotations

from datetime import UTC, datetime

import boto3
import pytest

from dbexport.destinations import LocalDestination, S3Destination
from dbexport.leftovers import clean_after_dead_runner, remove_half_partitions, spool_folder
from dbexport.models import ExportTask, Status

WHOLE = ["p/x/db/public.t/1/part-00000-a-c000.gz.parquet", "p/x/db/public.t/1/_SUCCESS"]
HALF = ["p/x/db/public.t/2/part-00000-b-c000.gz.parquet", "p/x/db/public.u/1/part-00000-c-c001.gz.parquet"]
STAGED = ["p/x/.dbexport-staging/5f0e/part-00000-d-c000.gz.parquet"]
# Another task's, exported under the prefix p/x: below this task's root, but none of its partitions.
OTHERS = ["p/x/y/db/public.t/1/part-00000-e-c000.gz.parquet", "p/x/export_info_x.json", "p/xy/db/public.t/1/f.parquet"]


def task(bucket: str, snapshot_time: datetime | None = None) -> ExportTask:
    return ExportTask(
        export_task_identifier="x",
        source_arn="postgresql://h/db",
        s3_bucket=bucket,
        s3_prefix="p",
        status=Status.FAILED,
        snapshot_time=snapshot_time,
    )


@pytest.fixture(params=["local", "s3"])
def destination(request, tmp_path):
    if request.param == "local":
        return LocalDestination(tmp_path)
    s3_endpoint = request.getfixturevalue("s3_endpoint")
    return S3Destination(request.getfixturevalue("bucket"), client=boto3.client("s3", endpoint_url=s3_endpoint))


def test_only_the_tasks_half_partitions_and_staging_are_removed(destination):
    for key in WHOLE + HALF + STAGED + OTHERS:
        destination.put_bytes(b"", key)
    removed = remove_half_partitions(task("b"), destination)
    assert removed == ["p/x/db/public.t/2", "p/x/db/public.u/1"]
    assert sorted(destination.keys("p/")) == sorted(WHOLE + OTHERS)


def test_a_runner_dead_before_its_snapshot_left_only_a_spool(tmp_path):
    spool_folder("x").mkdir(parents=True, exist_ok=True)
    bucket = tmp_path / "never-written"
    clean_after_dead_runner(task(bucket.as_uri()))
    assert not spool_folder("x").exists()
    assert not bucket.exists()  # nothing was written there, so nothing is looked at, nor export_info made


def test_a_dead_runners_export_info_tells_its_end(tmp_path):
    clean_after_dead_runner(task(tmp_path.as_uri(), snapshot_time=datetime.now(UTC)))
    assert '"status": "FAILED"' in (tmp_path / "p" / "x" / "export_info_x.json").read_text()
