"""Local directory URLs, export settings' ranges, and what storage errors become (pure)."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError, NoCredentialsError, ReadTimeoutError

from dbexport.errors import DestinationUnavailable, ExportFailed, InvalidParameterValue
from dbexport.models import ExportSettings
from dbexport.storage_errors import local_error, s3_error
from dbexport.validation import export_settings, local_directory


@pytest.mark.parametrize(
    ("url", "path"),
    [
        ("file:///tmp/out", "/tmp/out"),
        ("file:///tmp/with%20space", "/tmp/with space"),
        ("file:///tmp/caf%C3%A9/", "/tmp/café"),
        ("file:///", "/"),
    ],
)
def test_a_file_url_names_an_absolute_directory(url: str, path: str) -> None:
    assert local_directory(url) == Path(path)


@pytest.mark.parametrize(
    "url",
    [
        "file://relative",
        "file://",
        "file:",
        "file://host/abs",
        "file://localhost:80/abs",
        "file:///etc/passwd/..",
        "file:///tmp/./x",
        "file:///tmp/%2E%2E/x",
        "file:///tmp/x?y=1",
        "file:///tmp/x#frag",
        "file:///tmp/x%00y",
        "file://[::1/x",
    ],
)
def test_other_file_urls_are_refused(url: str) -> None:
    with pytest.raises(InvalidParameterValue, match="is not valid"):
        local_directory(url)


@pytest.mark.parametrize(
    "values",
    [
        {"workers": 0},
        {"workers": -3},
        {"partition_target_bytes": 0},
        {"max_file_bytes": 0},
        {"row_group_rows": 0},
        {"max_value_bytes": -1},
    ],
)
def test_settings_out_of_range_are_invalid_parameter_values(values: dict[str, int]) -> None:
    with pytest.raises(InvalidParameterValue, match=f"{next(iter(values))} is {next(iter(values.values()))}"):
        export_settings(values)


def test_settings_in_range_pass() -> None:
    assert export_settings({"workers": 1, "partition_target_bytes": 1}) == ExportSettings(
        workers=1, partition_target_bytes=1
    )


@pytest.mark.parametrize(
    ("number", "words"),
    [
        (errno.EACCES, "is not writable"),
        (errno.EROFS, "is not writable"),
        (errno.ENOSPC, "is full"),
        (errno.ENOTDIR, "is a file where a folder must be"),
        (errno.EEXIST, "is a file where a folder must be"),
        (errno.EIO, "failed"),
    ],
)
def test_local_errors_name_the_directory(number: int, words: str) -> None:
    error = local_error(OSError(number, "reason", "/out/x/y"), Path("/out"))
    assert isinstance(error, ExportFailed) and "/out" in str(error) and words in str(error)


def client_error(code: str, status: int) -> ClientError:
    response = {"Error": {"Code": code, "Message": "secret-ish detail"}, "ResponseMetadata": {"HTTPStatusCode": status}}
    return ClientError(response, "PutObject")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("exc", "kind", "words"),
    [
        (client_error("SlowDown", 503), DestinationUnavailable, "unavailable for now (SlowDown 503)"),
        (client_error("InternalError", 500), DestinationUnavailable, "unavailable for now"),
        (client_error("Whatever", 502), DestinationUnavailable, "unavailable for now"),
        (client_error("NoSuchBucket", 404), ExportFailed, "does not exist"),
        (client_error("AccessDenied", 403), ExportFailed, "was denied (AccessDenied)"),
        (client_error("InvalidAccessKeyId", 403), ExportFailed, "refused the AWS credentials"),
        (NoCredentialsError(), ExportFailed, "No AWS credentials were found"),
        (
            EndpointConnectionError(endpoint_url="http://127.0.0.1:9/b/k"),
            DestinationUnavailable,
            "could not be reached",
        ),
        (ReadTimeoutError(endpoint_url="http://127.0.0.1:9/b/k"), DestinationUnavailable, "could not be reached"),
    ],
)
def test_s3_errors_name_the_bucket(exc: Exception, kind: type, words: str) -> None:
    error = s3_error(exc, "my-bucket")
    assert type(error) is kind and "my-bucket" in str(error) and words in str(error)
    assert "secret-ish" not in str(error)  # S3's own message is never quoted


def test_an_error_that_is_not_s3s_is_left_alone() -> None:
    assert s3_error(ValueError("x"), "my-bucket") is None
