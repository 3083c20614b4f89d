"""Every fault of the destination or the state directory says what failed and what to check, never a traceback.

Real components: the file system (a file where a folder must go, sysfs that refuses folders even to root,
/dev/full), moto's S3 over HTTP (a missing bucket), a closed port on 127.0.0.1, an environment without
AWS credentials; the CLI runs in a subprocess as a user runs it.
"""

from __future__ import annotations

import base64
import os
import socket
import subprocess
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from dbexport import destinations, local
from dbexport.local import run_export
from dbexport.models import ExportSettings, StartExportTaskRequest, Status
from dbexport.validation import validate_request
from tests.helpers import DBEXPORT, cli, describe_task, execute, export, start_task

if TYPE_CHECKING:
    from dbexport.models import ExportTask

# sysfs refuses to make folders, even to root (tests run as root: a chmod would not stop them).
UNWRITABLE = "/sys/fs/dbexport-test"


@pytest.fixture
def small(source: str) -> str:
    execute(
        source,
        "CREATE TABLE t (id int PRIMARY KEY, v text); INSERT INTO t SELECT i, 'x' FROM generate_series(1, 10) i;",
    )
    return source


def failed_with(task: ExportTask, *words: str) -> str:
    assert task.status == Status.FAILED, task
    cause = task.failure_cause or ""
    assert "unknown internal error" not in cause and "Traceback" not in cause and "\n" not in cause
    for word in words:
        assert word in cause, cause
    return cause


def s3_export(url: str, bucket: str, identifier: str, endpoint_url: str) -> ExportTask:
    task = validate_request(
        StartExportTaskRequest(export_task_identifier=identifier, source_arn=url, s3_bucket_name=bucket)
    )
    return run_export(task, url, ExportSettings(), endpoint_url=endpoint_url)


def closed_port() -> int:
    """A port on 127.0.0.1 that nothing listens on (bound, then closed)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --- a local directory ---------------------------------------------------------------------------------


def test_a_file_where_the_destination_folder_must_be_is_named(small: str, tmp_path: Path) -> None:
    (tmp_path / "out").write_text("not a folder")
    task = export(small, tmp_path / "out", "file-in-the-way")
    failed_with(task, f"{tmp_path / 'out'} is a file where a folder must be", "Move the file away")


def test_a_file_where_a_table_folder_must_be_is_named(small: str, tmp_path: Path) -> None:
    (tmp_path / "file-deep").mkdir()
    (tmp_path / "file-deep" / "file-deep").write_text("in the way of <id>/<database>/")
    task = export(small, tmp_path / "file-deep", "file-deep")
    failed_with(task, str(tmp_path / "file-deep" / "file-deep"), "is a file where a folder must be")


def test_an_unwritable_destination_is_named(small: str) -> None:
    task = export(small, Path(UNWRITABLE), "unwritable")
    failed_with(task, f"The destination directory {UNWRITABLE} is not writable", "read-only file system")


def test_a_full_destination_is_named(small: str, tmp_path: Path) -> None:
    """/dev/full answers every write with ENOSPC: the metadata file's partial is made to point there."""
    folder = tmp_path / "full" / "full-disk"
    folder.mkdir(parents=True)
    (folder / ".export_info_full-disk.json.partial").symlink_to("/dev/full")
    task = export(small, tmp_path / "full", "full-disk")
    failed_with(task, f"The destination directory {tmp_path / 'full'} is full", "free some space")


# --- S3 ------------------------------------------------------------------------------------------------


def test_a_missing_bucket_is_named(small: str, s3_endpoint: str) -> None:
    task = s3_export(small, "no-such-bucket-here", "missing-bucket", s3_endpoint)
    failed_with(task, "The S3 bucket no-such-bucket-here does not exist", "check its name")


def test_a_refused_endpoint_is_named(small: str, s3_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """(s3_endpoint: for its test credentials.)"""
    monkeypatch.setattr(destinations, "S3_MAX_ATTEMPTS", 2)  # botocore's backoff, shortened
    endpoint = f"http://127.0.0.1:{closed_port()}"
    task = s3_export(small, "some-bucket", "refused-endpoint", endpoint)
    cause = failed_with(task, f"The S3 endpoint at {endpoint}", "could not be reached", "--endpoint-url")
    assert "some-bucket" in cause


def test_a_frozen_endpoint_is_named(small: str, s3_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """An endpoint that takes the connection and never answers: the read timeout ends each attempt (s3_endpoint:
    for its test credentials)."""
    monkeypatch.setattr(destinations, "S3_MAX_ATTEMPTS", 1)
    monkeypatch.setattr(destinations, "S3_READ_TIMEOUT_SECONDS", 1)
    with socket.socket() as frozen:
        frozen.bind(("127.0.0.1", 0))
        frozen.listen()  # the kernel completes the connection; nothing ever reads or answers it
        endpoint = f"http://127.0.0.1:{frozen.getsockname()[1]}"
        task = s3_export(small, "some-bucket", "frozen-endpoint", endpoint)
    failed_with(task, f"The S3 endpoint at {endpoint}", "could not be reached (ReadTimeoutError)")


def test_a_refused_endpoint_during_partitions_is_retried_then_named(
    small: str, bucket: str, s3_endpoint: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The endpoint goes away once the export has started: partitions are retried, then the task fails."""
    monkeypatch.setattr(destinations, "S3_MAX_ATTEMPTS", 1)
    monkeypatch.setattr(local, "RETRY_BASE_SECONDS", 0.01)
    endpoint = f"http://127.0.0.1:{closed_port()}"
    opened = destinations.open_destination(bucket, endpoint_url=s3_endpoint)
    gone = destinations.open_destination(bucket, endpoint_url=endpoint)
    opened.delete_prefix = gone.delete_prefix  # type: ignore[method-assign]
    task = validate_request(
        StartExportTaskRequest(export_task_identifier="endpoint-gone", source_arn=small, s3_bucket_name=bucket)
    )
    done = run_export(task, small, ExportSettings(), destination=opened)
    failed_with(done, "could not be reached")


def test_missing_credentials_are_named_without_a_traceback(small: str, s3_endpoint: str, bucket: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env |= {
        "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent",
        "AWS_CONFIG_FILE": "/nonexistent",
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    args = ["--export-task-identifier", "no-credentials", "--source-arn", small, "--s3-bucket-name", bucket]
    result = subprocess.run(
        [*DBEXPORT, "start-export-task", *args, "--endpoint-url", s3_endpoint, "--wait"],
        capture_output=True, text=True, timeout=60, env=env,
    )  # fmt: skip
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert f"No AWS credentials were found to write to the S3 bucket {bucket}" in result.stderr
    assert "testing" not in result.stderr + result.stdout  # the other tests' secret key


# --- the CLI: refusals before anything starts, and the state directory -------------------------------


@pytest.mark.parametrize(
    ("option", "value", "words"),
    [
        ("--workers", "0", "--workers is 0"),
        ("--partition-size-mb", "0", "--partition-size-mb (in bytes) is 0"),
        ("--max-file-size-mb", "-1", "--max-file-size-mb (in bytes) is -1048576"),
    ],
)
def test_settings_out_of_range_are_refused_before_anything_starts(
    small: str, tmp_path: Path, option: str, value: str, words: str
) -> None:
    result = start_task("bad-setting", small, (tmp_path / "out").as_uri(), option, value, "--wait")
    assert result.returncode == 254, result.stderr
    assert "(InvalidParameterValue)" in result.stderr and words in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "out").exists()
    assert "ExportTaskNotFound" in cli("describe-export-tasks", "--export-task-identifier", "bad-setting").stderr


@pytest.mark.parametrize(
    ("bucket", "words"),
    [
        ("file://relative", "names a host"),
        ("file://", "names no absolute path"),
        ("file://host/abs", "names a host"),
        ("file:///etc/passwd/..", "'.' or '..'"),
        ("file:///tmp/a%2F..%2Fb", "'.' or '..'"),
        ("file:///tmp/x?y", "query"),
        ("file://[::1/x", "names a host"),
    ],
)
def test_file_urls_that_name_no_absolute_directory_are_refused(small: str, bucket: str, words: str) -> None:
    result = start_task("bad-file-url", small, bucket)
    assert result.returncode == 254, result.stderr
    assert "(InvalidParameterValue)" in result.stderr and words in result.stderr
    assert "Traceback" not in result.stderr


def test_a_percent_escape_in_a_file_url_is_decoded(small: str, tmp_path: Path) -> None:
    result = start_task("spaced", small, (tmp_path / "with space").as_uri(), "--wait")
    assert result.returncode == 0, result.stderr
    assert "%20" in (tmp_path / "with space").as_uri()
    assert list((tmp_path / "with space" / "spaced").rglob("*.parquet"))
    assert not list(tmp_path.glob("with%20space"))


def test_a_broken_ipv6_source_url_is_refused(tmp_path: Path) -> None:
    result = start_task("broken-ipv6", "postgresql://postgres@[::1:5432/db", (tmp_path / "o").as_uri())
    assert result.returncode == 254 and "(InvalidParameterValue)" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_huge_marker_is_refused_short() -> None:
    for marker in ["9" * 5000, base64.urlsafe_b64encode(b"after:" + b"9" * 40).decode()]:
        result = cli("describe-export-tasks", "--marker", marker)
        assert result.returncode == 254, result.stderr
        assert "(InvalidParameterValue)" in result.stderr and "Traceback" not in result.stderr
        assert len(result.stderr) < 300


@pytest.mark.parametrize("kind", ["file", "corrupt", "unwritable"])
def test_an_unusable_state_dir_is_named(tmp_path: Path, kind: str) -> None:
    state = tmp_path / "state"
    if kind == "file":
        state.write_text("not a folder")
        words = f"The state directory {state} can't be used"
    elif kind == "corrupt":
        state.mkdir()
        (state / "tasks.sqlite3").write_bytes(b"garbage, not SQLite" * 100)
        words = "is not dbexport's (file is not a database)"
    else:
        state = Path(UNWRITABLE)
        words = f"The state directory {state} can't be used"
    result = cli("--state-dir", str(state), "describe-export-tasks")
    assert result.returncode == 1
    assert words in result.stderr and "--state-dir" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_failed_wait_export_prints_its_cause_without_a_traceback(small: str, tmp_path: Path) -> None:
    (tmp_path / "out").write_text("not a folder")
    result = start_task("wait-fails", small, (tmp_path / "out").as_uri(), "--wait")
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "is a file where a folder must be" in result.stderr
    assert describe_task("wait-fails")["Status"] == "FAILED"


def test_an_unusable_spool_folder_is_named(small: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The partitions' files are spooled in the temporary folder first: one that refuses is named, with TMPDIR."""
    monkeypatch.setattr(tempfile, "tempdir", str(Path(UNWRITABLE).parent))
    task = export(small, tmp_path / "out", "spool-refused")
    failed_with(task, f"in the temporary folder {Path(UNWRITABLE).parent} failed", "TMPDIR")
