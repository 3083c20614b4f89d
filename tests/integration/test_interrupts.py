"""A runner killed or interrupted midway, for real: readers never see half a partition; the task says how it ended."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import boto3
import pyarrow.dataset as ds
import pytest
from pyarrow import fs

from dbexport.destinations import STAGING_FOLDER
from dbexport.leftovers import spool_folder
from tests.helpers import (
    DBEXPORT,
    assert_whole,
    dead,
    describe_task,
    execute,
    runner_of,
    start_task,
    wait_for,
    wait_until_finished,
)

# Files of 2 MB: the big table's one partition rolls over into several of them.
ROLLING = ("--max-file-size-mb", "2")
BIG_ROWS, SMALL_ROWS = 800_000, 100


@pytest.fixture
def tables(source: str) -> str:
    """`big`: one partition of several files, written while the test strikes; `small`: done long before."""
    execute(
        source,
        f"""
        CREATE TABLE big (id int PRIMARY KEY, payload text);
        INSERT INTO big SELECT g, md5(g::text) || md5((g + 1)::text) FROM generate_series(1, {BIG_ROWS}) g;
        CREATE TABLE small (id int PRIMARY KEY);
        INSERT INTO small SELECT generate_series(1, {SMALL_ROWS});
        ANALYZE;
        """,
    )
    return source


def staged_files(export: Path) -> list[Path]:
    """The Parquet files a local export has written but not yet moved into place."""
    return list((export / STAGING_FOLDER).rglob("*.parquet"))


def assert_readers_see_whole_partitions(export: Path) -> int:
    """Every partition folder is whole, nothing hidden is left, and pyarrow reads each table folder whole. Rows."""
    assert not [p for p in export.rglob("*") if p.name.startswith(".")], "staging or partial objects left"
    rows = 0
    for table in export.glob("*/*"):
        if table.is_dir():
            whole = sum(assert_whole(partition) for partition in table.iterdir())
            assert ds.dataset(table, format="parquet").count_rows() == whole
            rows += whole
    return rows


def export_info(export: Path, identifier: str) -> dict:
    return json.loads((export / f"export_info_{identifier}.json").read_text())  # type: ignore[no-any-return]


def killed_midway(identifier: str, in_flight) -> int:
    """Wait until the runner has written part of `big`, then kill -9 it; returns its pid."""
    pid = wait_for(lambda: runner_of(Path(os.environ["DBEXPORT_STATE_DIR"]), identifier)[0], what="the runner")
    wait_for(in_flight, what="a file of a partition in flight")
    assert spool_folder(identifier).is_dir()
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: dead(pid), what="the runner to die")
    return pid


def test_a_killed_runner_leaves_no_half_partition_in_a_local_folder(tables, tmp_path, state_dir):
    export = tmp_path / "out" / "killed"
    assert start_task("killed", tables, (tmp_path / "out").as_uri(), *ROLLING).returncode == 0
    pid = killed_midway("killed", lambda: staged_files(export))
    task = describe_task("killed")  # any command notices the dead runner and cleans up after it
    assert task["Status"] == "FAILED", task
    assert f"(pid {pid}) stopped before the export ended" in task["FailureCause"]
    assert not (export / STAGING_FOLDER).exists()
    assert not spool_folder("killed").exists()
    assert assert_readers_see_whole_partitions(export) in (0, SMALL_ROWS)
    assert not (export / tables.rpartition("/")[2] / "public.big").exists()
    info = export_info(export, "killed")
    assert (info["status"], info["failureCause"]) == ("FAILED", task["FailureCause"])


def test_a_killed_runner_leaves_no_half_partition_on_s3(tables, s3_endpoint, bucket, state_dir, monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_endpoint)  # where describe finds the objects to clean up
    s3 = boto3.client("s3", endpoint_url=s3_endpoint)

    def keys() -> list[str]:
        pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix="killed/")
        return [o["Key"] for page in pages for o in page.get("Contents", [])]

    def half_folders() -> set[str]:
        objects = keys()
        folders = {k.rpartition("/")[0] for k in objects if k.endswith(".parquet")}
        return {f for f in folders if f"{f}/_SUCCESS" not in objects}

    result = start_task("killed", tables, bucket, *ROLLING, "--endpoint-url", s3_endpoint)
    assert result.returncode == 0, result.stderr
    killed_midway("killed", half_folders)
    assert describe_task("killed")["Status"] == "FAILED"
    assert half_folders() == set()
    assert not spool_folder("killed").exists()
    # What pyarrow reads of each table folder is exactly its whole partitions.
    s3fs = fs.S3FileSystem(endpoint_override=s3_endpoint, region="us-east-1")
    for table in {k.rsplit("/", 2)[0] for k in keys() if k.endswith(".parquet")}:
        assert table.endswith("public.small"), table
        assert ds.dataset(f"{bucket}/{table}", format="parquet", filesystem=s3fs).count_rows() == SMALL_ROWS
    info = json.loads(s3.get_object(Bucket=bucket, Key="killed/export_info_killed.json")["Body"].read())
    assert info["status"] == "FAILED"


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_an_interrupted_waiting_export_is_canceled(signum, tables, tmp_path, state_dir):
    out = tmp_path / "out"
    command = [*DBEXPORT, "start-export-task", "--export-task-identifier", "stopped", "--source-arn", tables,
               "--s3-bucket-name", out.as_uri(), *ROLLING, "--wait"]  # fmt: skip
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as waiting:
        wait_for(lambda: staged_files(out / "stopped"), what="a file of a partition in flight")
        interrupted_at = time.monotonic()
        waiting.send_signal(signum)
        stdout, stderr = waiting.communicate(timeout=30)
    took = time.monotonic() - interrupted_at
    assert took < 5, f"{took:.1f} s from the signal to the end"
    assert waiting.returncode == 1, stderr
    assert "Traceback" not in stderr, stderr
    assert "interrupted: canceling export task stopped" in stderr
    task = json.loads(stdout)
    assert task["Status"] == "CANCELED" and "FailureCause" not in task, task
    assert describe_task("stopped")["Status"] == "CANCELED"
    assert assert_readers_see_whole_partitions(out / "stopped") in (0, SMALL_ROWS)
    assert export_info(out / "stopped", "stopped")["status"] == "CANCELED"
    assert not spool_folder("stopped").exists()


def test_sigterm_to_a_detached_runner_cancels_its_task(tables, tmp_path, state_dir):
    out = tmp_path / "out"
    assert start_task("termed", tables, out.as_uri(), *ROLLING).returncode == 0
    pid = wait_for(lambda: runner_of(state_dir, "termed")[0], what="the runner")
    wait_for(lambda: staged_files(out / "termed"), what="a file of a partition in flight")
    os.kill(pid, signal.SIGTERM)
    task = wait_until_finished("termed", timeout=10)
    assert task["Status"] == "CANCELED", task
    wait_for(lambda: dead(pid), timeout=5, what="the runner to exit")
    assert "Traceback" not in (state_dir / "logs" / "termed.log").read_text()
    assert assert_readers_see_whole_partitions(out / "termed") in (0, SMALL_ROWS)
    assert export_info(out / "termed", "termed")["status"] == "CANCELED"
    assert not spool_folder("termed").exists()
