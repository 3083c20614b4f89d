"""What a destination's own errors become: the project's, naming the directory or bucket and what to check.

A fault that may pass (S3 throttling, a 5xx, a timeout, a dropped connection) is DestinationUnavailable,
which both runtimes retry; any other is ExportFailed. No message holds a credential: S3's messages are not
quoted, only their error codes.

Light: botocore is imported only to judge an error that an S3 call raised.
"""

from __future__ import annotations

import errno
from pathlib import Path
from typing import Any

from dbexport.errors import DestinationUnavailable, ExportFailed

_NOT_WRITABLE = frozenset({errno.EACCES, errno.EPERM, errno.EROFS})
_FULL = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})
_FILE_IN_THE_WAY = frozenset({errno.ENOTDIR, errno.EEXIST, errno.EISDIR})

# S3's answers that mean "not now": retrying later may succeed.
_S3_TRANSIENT_CODES = frozenset(
    {"SlowDown", "Throttling", "ThrottlingException", "RequestTimeout", "InternalError", "ServiceUnavailable"}
)
# S3's answers that mean the credentials themselves were refused, not a permission.
_S3_CREDENTIAL_CODES = frozenset(
    {"InvalidAccessKeyId", "SignatureDoesNotMatch", "InvalidToken", "ExpiredToken", "TokenRefreshRequired"}
)
_S3_DENIED_CODES = frozenset({"AccessDenied", "AllAccessDisabled", "403", "Forbidden"})


def local_error(exc: OSError, root: Path) -> ExportFailed:
    """An OSError of a local destination under `root`, as a FailureCause that says what to check."""
    path = exc.filename or root
    reason = exc.strerror or type(exc).__name__
    if exc.errno in _NOT_WRITABLE:
        return ExportFailed(
            f"The destination directory {root} is not writable ({reason}: {path}): check that it is writable by "
            "this user and not on a read-only file system, or choose another directory."
        )
    if exc.errno in _FULL:
        return ExportFailed(
            f"The destination directory {root} is full ({reason}): free some space or choose another directory."
        )
    if exc.errno in _FILE_IN_THE_WAY:
        blocking = _file_in_the_way(Path(path))
        return ExportFailed(
            f"The destination directory {root} can't hold the export: {blocking} is a file where a folder must be "
            f"({reason}). Move the file away or choose another directory."
        )
    return ExportFailed(f"Writing to the destination directory {root} failed ({reason}: {path}).")


def _file_in_the_way(path: Path) -> Path:
    """The first of `path` and its parents that exists and is not a folder (or `path` itself when none is)."""
    for candidate in [path, *path.parents]:
        if candidate.exists() and not candidate.is_dir():
            return candidate
    return path


def s3_error(exc: Exception, bucket: str) -> ExportFailed | DestinationUnavailable | None:
    """An error an S3 call raised, as the project's naming the bucket; None for one that is not S3's."""
    from botocore.exceptions import (
        ClientError,
        ConnectionClosedError,
        ConnectionError,
        NoCredentialsError,
        PartialCredentialsError,
        ReadTimeoutError,
    )

    # boto3's upload_file raises S3UploadFailedError while handling S3's ClientError.
    if not isinstance(exc, ClientError) and isinstance(exc.__context__, ClientError):
        exc = exc.__context__
    if isinstance(exc, ClientError):
        return _s3_answer(exc, bucket)
    if isinstance(exc, (NoCredentialsError, PartialCredentialsError)):
        return ExportFailed(
            f"No AWS credentials were found to write to the S3 bucket {bucket}: set AWS_ACCESS_KEY_ID and "
            "AWS_SECRET_ACCESS_KEY, AWS_PROFILE, or another source of boto3's credential chain."
        )
    if isinstance(exc, (ConnectionError, ConnectionClosedError, ReadTimeoutError)):
        endpoint = getattr(exc, "kwargs", {}).get("endpoint_url", "")
        where = f" at {endpoint.split('?')[0]}" if endpoint else ""
        return DestinationUnavailable(
            f"The S3 endpoint{where} for the bucket {bucket} could not be reached ({type(exc).__name__}): check the "
            "endpoint (--endpoint-url, AWS_ENDPOINT_URL), the network and any proxy."
        )
    return None


def _s3_answer(exc: Any, bucket: str) -> ExportFailed | DestinationUnavailable:
    error, metadata = exc.response.get("Error", {}), exc.response.get("ResponseMetadata", {})
    code, status = str(error.get("Code", "")), int(metadata.get("HTTPStatusCode") or 0)
    if code in _S3_TRANSIENT_CODES or status >= 500:
        return DestinationUnavailable(
            f"The S3 bucket {bucket} is unavailable for now ({code or 'HTTP'} {status}) and stayed so through "
            "retries: retry the export later, or check the endpoint's health."
        )
    if code == "NoSuchBucket":
        return ExportFailed(
            f"The S3 bucket {bucket} does not exist: check its name, its Region and the endpoint (--endpoint-url)."
        )
    if code in _S3_CREDENTIAL_CODES:
        return ExportFailed(
            f"The S3 endpoint refused the AWS credentials used to write to the bucket {bucket} ({code}): check the "
            "access key, secret key or session token (AWS_PROFILE, AWS_ACCESS_KEY_ID)."
        )
    if code in _S3_DENIED_CODES:
        return ExportFailed(
            f"Access to the S3 bucket {bucket} was denied ({code}): check that the credentials (or the IAM role) may "
            "s3:PutObject, s3:ListBucket and s3:DeleteObject on it, and the bucket's policy."
        )
    return ExportFailed(f"Writing to the S3 bucket {bucket} failed ({code or 'HTTP'} {status}).")
