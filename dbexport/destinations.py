"""Where an export's objects go: an S3 bucket or a local directory, addressed by S3-style keys.

Light (no pyarrow): the AWS runtime's metadata-only states write export_info through it; the writer's
Parquet files go through the same destinations.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import urlsplit

from dbexport.validation import LOCAL_PREFIX, sanitize_path_element

if TYPE_CHECKING:
    from dbexport.models import ExportTask


class Destination(Protocol):
    """Where objects go: an S3 bucket or a local directory, addressed by S3-style keys."""

    def put_file(self, path: Path, key: str) -> None: ...
    def put_bytes(self, data: bytes, key: str) -> None: ...
    def delete_prefix(self, prefix: str) -> None: ...
    def url(self, key: str) -> str: ...


@dataclass
class LocalDestination:
    """A directory that mirrors the bucket's layout."""

    root: Path

    def _path(self, key: str) -> Path:
        path = (self.root / key).resolve()
        if not path.is_relative_to(self.root.resolve()):
            raise ValueError(f"object key {key!r} leaves the destination directory")
        return path

    def put_file(self, path: Path, key: str) -> None:
        # Move next to the target (a copy when the spool is on another filesystem), then rename:
        # a reader never sees half an object.
        partial = self._partial(key)
        shutil.move(path, partial)
        partial.replace(self._path(key))

    def put_bytes(self, data: bytes, key: str) -> None:
        partial = self._partial(key)
        partial.write_bytes(data)
        partial.replace(self._path(key))

    def _partial(self, key: str) -> Path:
        target = self._path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        return target.with_name(f".{target.name}.partial")

    def delete_prefix(self, prefix: str) -> None:
        folder = self._path(prefix)
        if folder.is_dir():
            shutil.rmtree(folder)

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
            import boto3  # only where S3 is the destination: it takes a tenth of a second to import

            self.client = boto3.client("s3")

    def _encryption(self) -> dict[str, str]:
        if self.kms_key_id is None:
            return {}
        return {"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": self.kms_key_id}

    def put_file(self, path: Path, key: str) -> None:
        self.client.upload_file(str(path), self.bucket, key, ExtraArgs=self._encryption())
        path.unlink()

    def put_bytes(self, data: bytes, key: str) -> None:
        self.client.put_object(Bucket=self.bucket, Key=key, Body=data, **self._encryption())

    def delete_prefix(self, prefix: str) -> None:
        paginator = self.client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix):
            keys = [{"Key": obj["Key"]} for obj in page.get("Contents", [])]
            if keys:
                self.client.delete_objects(Bucket=self.bucket, Delete={"Objects": keys, "Quiet": True})

    def url(self, key: str) -> str:
        return f"s3://{self.bucket}/{key}"


def open_destination(bucket: str, kms_key_id: str | None = None, endpoint_url: str | None = None) -> Destination:
    """`file:///path` is a local directory; anything else an S3 bucket (boto3's credential chain)."""
    if bucket.startswith(LOCAL_PREFIX):
        return LocalDestination(Path(urlsplit(bucket).path))
    import boto3

    return S3Destination(bucket, kms_key_id, boto3.client("s3", endpoint_url=endpoint_url))


def join_key(*elements: str) -> str:
    """An object key from path elements, each cleaned of the characters the anchor replaces."""
    return "/".join(sanitize_path_element(e) for e in elements if e)


def export_root(task: ExportTask) -> str:
    """`<S3Prefix>/<export id>`: where an export's metadata and data go.

    The prefix's empty folders (`exports/`, `/exports`, `a//b`) are dropped: no key starts with `/` or holds `//`.
    """
    return join_key(*task.s3_prefix.split("/"), task.export_task_identifier)
