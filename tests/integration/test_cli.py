"""The `dbexport` command as a user runs it: JSON like the AWS CLI's, errors with RDS's codes."""

from __future__ import annotations

import json
import os
import pty
import subprocess
import sys
import time

import pytest

from tests.helpers import database_of, execute

DBEXPORT = [sys.executable, "-m", "dbexport.cli"]


@pytest.fixture
def small(source: str) -> str:
    execute(source, "CREATE TABLE t (id int PRIMARY KEY, name text); INSERT INTO t VALUES (1, 'a'), (2, NULL);")
    return source


def start(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*DBEXPORT, "start-export-task", *args], capture_output=True, text=True, timeout=120)


def describe(*args: str) -> dict:
    result = subprocess.run([*DBEXPORT, "describe-export-tasks", *args], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def wait_until_finished(identifier: str, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        (task,) = describe("--export-task-identifier", identifier)["ExportTasks"]
        if task["Status"] in ("COMPLETE", "FAILED", "CANCELED"):
            return task
        time.sleep(0.2)
    raise AssertionError(f"{identifier} did not finish in {timeout} s")


def test_start_returns_at_once_and_the_export_runs_in_the_background(small, tmp_path):
    out = tmp_path / "out"
    result = start(
        "--export-task-identifier",
        "cli-1",
        "--source-arn",
        small,
        "--s3-bucket-name",
        out.as_uri(),
        "--s3-prefix",
        "p",
    )
    assert result.returncode == 0, result.stderr
    task = json.loads(result.stdout)
    assert task["ExportTaskIdentifier"] == "cli-1"
    assert task["Status"] == "STARTING"
    assert task["S3Bucket"] == out.as_uri()
    assert task["SourceType"] == "CLUSTER"
    finished = wait_until_finished("cli-1")
    assert finished["Status"] == "COMPLETE", finished
    assert finished["PercentProgress"] == 100
    assert (out / "p" / "cli-1" / database_of(small) / "public.t" / "1" / "_SUCCESS").exists()


def test_wait_prints_the_finished_task(small, tmp_path):
    result = start(
        "--export-task-identifier", "cli-2", "--source-arn", small, "--s3-bucket-name", tmp_path.as_uri(), "--wait"
    )
    assert result.returncode == 0, result.stderr
    task = json.loads(result.stdout)
    assert task["Status"] == "COMPLETE"
    assert task["PercentProgress"] == 100
    assert "TaskEndTime" in task


def test_wait_shows_a_progress_bar_on_a_terminal(small, tmp_path):
    pid, fd = pty.fork()
    if pid == 0:  # the child runs the command with a terminal as stdout and stderr
        os.execv(
            sys.executable,
            [
                *DBEXPORT,
                "start-export-task",
                "--export-task-identifier",
                "cli-3",
                "--source-arn",
                small,
                "--s3-bucket-name",
                tmp_path.as_uri(),
                "--wait",
            ],
        )
    output = b""
    while True:
        try:
            chunk = os.read(fd, 4096)
        except OSError:
            break
        if not chunk:
            break
        output += chunk
    _, status = os.waitpid(pid, 0)
    text = output.decode()
    assert os.waitstatus_to_exitcode(status) == 0, text
    assert "tables 1/1" in text
    assert "rows 2" in text


def test_a_bad_identifier_is_refused_with_rds_code(small, tmp_path):
    result = start(
        "--export-task-identifier", "1-starts-with-digit", "--source-arn", small, "--s3-bucket-name", tmp_path.as_uri()
    )
    assert result.returncode == 254
    assert "An error occurred (InvalidParameterValue) when calling the StartExportTask operation" in result.stderr
    assert "1-starts-with-digit" in result.stderr
    assert not any(tmp_path.iterdir())


def test_bad_export_only_is_invalid_export_only(small, tmp_path):
    result = start(
        "--export-task-identifier",
        "x",
        "--source-arn",
        small,
        "--s3-bucket-name",
        tmp_path.as_uri(),
        "--export-only",
        "db.sch-ema",
    )
    assert result.returncode == 254
    assert "(InvalidExportOnly)" in result.stderr
    assert "'sch-ema'" in result.stderr


def test_an_unreachable_source_fails_the_task_naming_the_host(tmp_path):
    result = start(
        "--export-task-identifier",
        "x",
        "--source-arn",
        "postgresql://u:pw@127.0.0.1:1/db",
        "--s3-bucket-name",
        tmp_path.as_uri(),
        "--wait",
    )
    assert result.returncode == 1
    task = json.loads(result.stdout)
    assert task["Status"] == "FAILED"
    assert "127.0.0.1:1" in task["FailureCause"]
    assert "pw" not in result.stdout + result.stderr
