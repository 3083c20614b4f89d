"""Where the files go: the anchor's layout on S3 (moto over HTTP) and in a local directory."""

from __future__ import annotations

import json
import re

import boto3
import psycopg
import pyarrow.dataset as ds
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest

from dbexport.destinations import S3Destination
from dbexport.local import run_export
from dbexport.models import ExportSettings, StartExportTaskRequest, Status
from dbexport.validation import validate_request
from dbexport.writer import write_partition
from tests.helpers import database_of, execute, export, read_table

PART_FILE = re.compile(r"part-00000-[0-9a-f-]{36}-c(\d{3})(\.gz|\.zstd|\.snappy|)\.parquet")


@pytest.fixture
def orders(source: str) -> str:
    execute(
        source,
        """
        CREATE SCHEMA sales;
        CREATE TABLE sales.orders (id bigint PRIMARY KEY, note text, amount numeric(12,2));
        INSERT INTO sales.orders SELECT i, repeat('n', i % 50), i * 1.25 FROM generate_series(1, 20000) i;
        ANALYZE;
        """,
    )
    return source


def test_s3_export_has_the_anchor_layout_and_sse_kms(orders, s3_endpoint, bucket):
    s3 = boto3.client("s3", endpoint_url=s3_endpoint)
    key_id = boto3.client("kms", endpoint_url=s3_endpoint).create_key()["KeyMetadata"]["KeyId"]
    request = StartExportTaskRequest(
        export_task_identifier="s3-export",
        source_arn=orders,
        s3_bucket_name=bucket,
        s3_prefix="exports/nightly",
        kms_key_id=key_id,
    )
    task = run_export(
        validate_request(request),
        orders,
        ExportSettings(partition_target_bytes=256 * 1024),
        endpoint_url=s3_endpoint,
    )
    assert task.status == Status.COMPLETE, task.failure_cause

    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]]
    db = database_of(orders)
    root = "exports/nightly/s3-export"
    assert f"{root}/export_info_s3-export.json" in keys
    assert any(re.fullmatch(rf"{root}/export_tables_info_s3-export_from_1_to_\d+\.json", k) for k in keys)
    data = [k for k in keys if k.startswith(f"{root}/{db}/sales.orders/")]
    folders = {k.split("/")[-2] for k in data}
    assert len(folders) > 1, "a 20k-row table with a 256 KiB target splits"
    for folder in folders:
        names = [k.split("/")[-1] for k in data if k.split("/")[-2] == folder]
        assert "_SUCCESS" in names
        assert all(PART_FILE.fullmatch(n) for n in names if n != "_SUCCESS")
    for key in keys:
        head = s3.head_object(Bucket=bucket, Key=key)
        assert head["ServerSideEncryption"] == "aws:kms", key
        assert head["SSEKMSKeyId"].endswith(key_id), key

    host_port = s3_endpoint.removeprefix("http://")
    fs = pafs.S3FileSystem(
        access_key="testing", secret_key="testing", endpoint_override=host_port, scheme="http", region="us-east-1"
    )
    table = ds.dataset(f"{bucket}/{root}/{db}/sales.orders", filesystem=fs, format="parquet").to_table()
    assert sorted(table.column("id").to_pylist()) == list(range(1, 20001))
    assert table.filter(ds.field("id") == 4).column("amount").to_pylist() == ["5.00"]

    info = json.loads(s3.get_object(Bucket=bucket, Key=f"{root}/export_info_s3-export.json")["Body"].read())
    assert info["status"] == "COMPLETE"
    assert info["exportedFilesPath"] == f"s3://{bucket}/{root}"


def test_files_roll_over_at_the_size_limit(orders, tmp_path):
    task = export(
        orders, tmp_path, settings=ExportSettings(max_file_bytes=20_000, row_group_rows=2_000, compression="zstd")
    )
    assert task.status == Status.COMPLETE, task.failure_cause
    folder = tmp_path / "test-export" / database_of(orders) / "sales.orders" / "1"
    files = sorted(p.name for p in folder.glob("*.parquet"))
    assert len(files) > 1
    assert [PART_FILE.fullmatch(f).group(1) for f in files] == [f"{i:03d}" for i in range(len(files))]  # type: ignore[union-attr]
    assert all(f.endswith(".zstd.parquet") for f in files)
    table = read_table(tmp_path, "test-export", database_of(orders), "sales", "orders")
    assert sorted(table.column("id").to_pylist()) == list(range(1, 20001))


@pytest.mark.parametrize(("compression", "suffix"), [("gzip", ".gz"), ("snappy", ".snappy"), ("none", "")])
def test_codec_names_the_file(orders, tmp_path, compression, suffix):
    task = export(orders, tmp_path, settings=ExportSettings(compression=compression))
    assert task.status == Status.COMPLETE
    files = list((tmp_path / "test-export").rglob("*.parquet"))
    assert files
    assert all(PART_FILE.fullmatch(f.name).group(2) == suffix for f in files)  # type: ignore[union-attr]


@pytest.mark.parametrize(("compression", "codec"), [("gzip", "GZIP"), ("zstd", "ZSTD")])
def test_columns_the_codec_cannot_shrink_are_stored_uncompressed(source, tmp_path, compression, codec):
    """Random bytes (md5 digests) gain nothing from gzip but cost most of its time; text keeps the codec."""
    execute(
        source,
        """
        CREATE TABLE blobs (id bigint PRIMARY KEY, digest bytea, note text);
        INSERT INTO blobs SELECT i, decode(md5(i::text) || md5('x' || i), 'hex'), 'row number ' || i
        FROM generate_series(1, 20000) i;
        ANALYZE;
        """,
    )
    task = export(source, tmp_path, settings=ExportSettings(compression=compression))
    assert task.status == Status.COMPLETE, task.failure_cause
    (file,) = (tmp_path / "test-export").rglob("*.parquet")
    metadata = pq.ParquetFile(file).metadata
    codecs = {
        metadata.row_group(g).column(c).path_in_schema: metadata.row_group(g).column(c).compression
        for g in range(metadata.num_row_groups)
        for c in range(metadata.num_columns)
    }
    assert codecs == {"id": codec, "digest": "UNCOMPRESSED", "note": codec}
    table = pq.read_table(file)
    with psycopg.connect(source) as conn:
        rows = conn.execute("SELECT id, digest, note FROM blobs ORDER BY id").fetchall()
    assert sorted(zip(*table.to_pydict().values(), strict=True)) == rows


def test_a_retried_partition_replaces_its_objects(s3_endpoint, bucket):
    import pyarrow as pa

    destination = S3Destination(bucket, client=boto3.client("s3", endpoint_url=s3_endpoint))
    schema = pa.schema([("id", pa.int64())])
    batch = pa.record_batch([pa.array([1, 2, 3])], schema=schema)
    first = write_partition([batch], schema, destination, "x/db/s.t/1", ExportSettings(), write_empty=True)
    second = write_partition([batch], schema, destination, "x/db/s.t/1", ExportSettings(), write_empty=True)
    keys = [o["Key"] for o in destination.client.list_objects_v2(Bucket=bucket, Prefix="x/")["Contents"]]
    assert sorted(keys) == sorted([*second.objects, "x/db/s.t/1/_SUCCESS"])
    assert first.objects != second.objects


def test_credentials_never_appear_in_output(orders, tmp_path, caplog):
    password = "s3cr3t-Pa55"
    url = orders.replace("postgres@", f"postgres:{password}@")
    caplog.set_level("DEBUG")
    task = export(url, tmp_path)
    assert task.status == Status.COMPLETE
    assert password not in task.model_dump_json()
    assert task.source_arn == orders
    for path in tmp_path.rglob("*.json"):
        assert password not in path.read_text()
    assert password not in caplog.text


def test_the_local_runtime_runs_the_access_preflight_before_writing(orders, s3_endpoint, bucket):
    kms = boto3.client("kms", endpoint_url=s3_endpoint)
    key_id = kms.create_key()["KeyMetadata"]["KeyId"]
    kms.disable_key(KeyId=key_id)
    request = StartExportTaskRequest(
        export_task_identifier="disabled-key", source_arn=orders, s3_bucket_name=bucket, kms_key_id=key_id
    )
    task = run_export(validate_request(request), orders, endpoint_url=s3_endpoint)
    assert task.status == Status.FAILED
    assert task.failure_cause == "KMS key check failed. Check the credentials on your KMS key and try again."
    assert "Contents" not in boto3.client("s3", endpoint_url=s3_endpoint).list_objects_v2(Bucket=bucket)
