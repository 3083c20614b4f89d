"""Where an export's objects go: an S3 bucket or a local directory, addressed by S3-style keys.

Light (no pyarrow): the AWS runtime's metadata-only states write export_info through it; the writer's
Parquet files go through the same destinations.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Concatenate, ParamSpec, Protocol, TypeVar

from dbexport.storage_errors import local_error, s3_error
from dbexport.validation import LOCAL_PREFIX, local_directory, sanitize_path_element

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from pathlib import Path

    import boto3

    from dbexport.models import ExportTask

# Written last in a partition folder: the folder is complete once it holds this.
SUCCESS_MARKER = "_SUCCESS"
# A local partition is written in a folder of its own under this one, then renamed into place whole. Hidden
# (pyarrow.dataset skips names starting with `.` or `_`) and beside the databases, outside every table folder:
# DuckDB's `<table>/*/*.parquet`, which skips no hidden name, never reaches it either.
STAGING_FOLDER = ".dbexport-staging"

# S3 clients retry throttling, 5xx and dropped connections themselves, and slow down when throttled (botocore's
# adaptive mode); a partition that still fails is retried whole by the runtime (dbexport.local, the ASL).
S3_MAX_ATTEMPTS = 6
S3_CONNECT_TIMEOUT_SECONDS = 10
# A frozen endpoint fails a request after this long without an answer (then it is retried).
S3_READ_TIMEOUT_SECONDS = 60

_P = ParamSpec("_P")
_R = TypeVar("_R")


class Destination(Protocol):
    """Where objects go: an S3 bucket or a local directory, addressed by S3-style keys."""

    def put_file(self, path: Path, key: str) -> None: ...
    def put_bytes(self, data: bytes, key: str) -> None: ...
    def delete_prefix(self, prefix: str) -> None: ...
    def keys(self, prefix: str) -> Iterator[str]: ...
    def url(self, key: str) -> str: ...


def _local_errors(
    method: Callable[Concatenate[LocalDestination, _P], _R],
) -> Callable[Concatenate[LocalDestination, _P], _R]:
    """The method's file system errors as the project's, naming the destination directory."""

    def wrapped(self: LocalDestination, /, *args: _P.args, **kwargs: _P.kwargs) -> _R:
        try:
            return method(self, *args, **kwargs)
        except OSError as exc:
            raise local_error(exc, self.root) from exc

    return wrapped


def _s3_errors(method: Callable[Concatenate[S3Destination, _P], _R]) -> Callable[Concatenate[S3Destination, _P], _R]:
    """The method's S3 errors as the project's, naming the bucket; transient ones retryable."""

    def wrapped(self: S3Destination, /, *args: _P.args, **kwargs: _P.kwargs) -> _R:
        try:
            return method(self, *args, **kwargs)
        except Exception as exc:
            error = s3_error(exc, self.bucket)
            if error is None:
                raise
            raise error from exc

    return wrapped


@dataclass
class LocalDestination:
    """A directory that mirrors the bucket's layout."""

    root: Path

    def _path(self, key: str) -> Path:
        path = (self.root / key).resolve()
        if not path.is_relative_to(self.root.resolve()):
            raise ValueError(f"object key {key!r} leaves the destination directory")
        return path

    @_local_errors
    def put_file(self, path: Path, key: str) -> None:
        # Move next to the target (a copy when the spool is on another filesystem), then rename:
        # a reader never sees half an object.
        partial = self._partial(key)
        shutil.move(path, partial)
        partial.replace(self._path(key))

    @_local_errors
    def put_bytes(self, data: bytes, key: str) -> None:
        partial = self._partial(key)
        partial.write_bytes(data)
        partial.replace(self._path(key))

    def _partial(self, key: str) -> Path:
        target = self._path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        return target.with_name(f".{target.name}.partial")

    @_local_errors
    def delete_prefix(self, prefix: str) -> None:
        folder = self._path(prefix)
        if folder.is_dir():
            shutil.rmtree(folder)

    def keys(self, prefix: str) -> Iterator[str]:
        folder, root = self._path(prefix), self.root.resolve()
        if folder.is_dir():
            yield from sorted(p.relative_to(root).as_posix() for p in folder.rglob("*") if p.is_file())

    @_local_errors
    def replace_folder(self, staged: str, folder: str) -> None:
        """Move a staged folder into place in one rename: a reader sees all of it or none of it."""
        target = self._path(folder)
        if target.is_dir():  # a retry's: gone for a moment, never mixed with the new files
            shutil.rmtree(target)
        target.parent.mkdir(parents=True, exist_ok=True)
        self._path(staged).rename(target)

    def url(self, key: str) -> str:
        return self._path(key).as_uri()


@dataclass
class S3Destination:
    """An S3 bucket, through boto3; with a KMS key every object is written with SSE-KMS."""

    bucket: str
    kms_key_id: str | None = None
    client: Any = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.client is None:
            self.client = s3_client()

    def _encryption(self) -> dict[str, str]:
        if self.kms_key_id is None:
            return {}
        return {"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": self.kms_key_id}

    @_s3_errors
    def put_file(self, path: Path, key: str) -> None:
        self.client.upload_file(str(path), self.bucket, key, ExtraArgs=self._encryption())
        path.unlink()

    @_s3_errors
    def put_bytes(self, data: bytes, key: str) -> None:
        self.client.put_object(Bucket=self.bucket, Key=key, Body=data, **self._encryption())

    @_s3_errors
    def delete_prefix(self, prefix: str) -> None:
        paginator = self.client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix):
            keys = [{"Key": obj["Key"]} for obj in page.get("Contents", [])]
            if keys:
                self.client.delete_objects(Bucket=self.bucket, Delete={"Objects": keys, "Quiet": True})

    def keys(self, prefix: str) -> Iterator[str]:
        for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix):
            yield from (obj["Key"] for obj in page.get("Contents", []))

    def url(self, key: str) -> str:
        return f"s3://{self.bucket}/{key}"


def open_destination(bucket: str, kms_key_id: str | None = None, endpoint_url: str | None = None) -> Destination:
    """`file:///path` is a local directory; anything else an S3 bucket (boto3's credential chain)."""
    if bucket.startswith(LOCAL_PREFIX):
        return LocalDestination(local_directory(bucket))
    return S3Destination(bucket, kms_key_id, s3_client(endpoint_url=endpoint_url))


def s3_client(session: boto3.session.Session | None = None, **kwargs: Any) -> Any:
    """An S3 client of `session` (boto3's default one if None) that rides out throttling and short outages."""
    import boto3  # only where S3 is the destination: it takes a tenth of a second to import
    from botocore.config import Config

    config = Config(
        retries={"mode": "adaptive", "max_attempts": S3_MAX_ATTEMPTS},
        connect_timeout=S3_CONNECT_TIMEOUT_SECONDS,
        read_timeout=S3_READ_TIMEOUT_SECONDS,
    )
    return (session or boto3).client("s3", config=config, **kwargs)


def join_key(*elements: str) -> str:
    """An object key from path elements, each cleaned of the characters the anchor replaces."""
    return "/".join(sanitize_path_element(e) for e in elements if e)


def export_root(task: ExportTask) -> str:
    """`<S3Prefix>/<export id>`: where an export's metadata and data go.

    The prefix's empty folders (`exports/`, `/exports`, `a//b`) are dropped: no key starts with `/` or holds `//`.
    """
    return join_key(*task.s3_prefix.split("/"), task.export_task_identifier)


def staging_root(task: ExportTask) -> str:
    """Where a local export's partitions are written before they are renamed into place."""
    return f"{export_root(task)}/{STAGING_FOLDER}"
