"""The anchor's request rules: ExportTaskIdentifier, S3 prefix, S3 path elements, ExportOnly (pure)."""

from __future__ import annotations

import pytest

from dbexport.errors import InvalidExportOnly, InvalidParameterValue, InvalidS3BucketFault
from dbexport.validation import (
    Selection,
    parse_export_only,
    sanitize_path_element,
    validate_bucket_name,
    validate_identifier,
    validate_s3_prefix,
)


@pytest.mark.parametrize("identifier", ["a", "A", "export-1", "my-export-2024-01-01", "x1y2z3", "a" * 60, "Ab-c-D9"])
def test_valid_identifiers(identifier: str) -> None:
    validate_identifier(identifier)


@pytest.mark.parametrize(
    "identifier",
    [
        "",
        "1export",
        "-export",
        "export-",
        "ex--port",
        "ex_port",
        "ex port",
        "ex.port",
        "export\n",
        "a" * 61,
        "é",
        "exp/ort",
    ],
)
def test_invalid_identifiers(identifier: str) -> None:
    with pytest.raises(InvalidParameterValue) as raised:
        validate_identifier(identifier)
    assert raised.value.code == "InvalidParameterValue"
    assert repr(identifier) in str(raised.value)


@pytest.mark.parametrize("prefix", ["", "exports", "a/b/c", "with space", "x-y_z.1"])
def test_valid_s3_prefix(prefix: str) -> None:
    validate_s3_prefix(prefix)


@pytest.mark.parametrize("prefix", ["a:b", ":", "exports/2024-01-01T00:00"])
def test_s3_prefix_with_colon_is_refused(prefix: str) -> None:
    with pytest.raises(InvalidParameterValue, match="':'"):
        validate_s3_prefix(prefix)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("plain_name", "plain_name"),
        ("with space", "with_space"),
        ('we"ird', "we_ird"),
        ("back`tick", "back_tick"),
        ("back\\slash", "back_slash"),
        ('a \\`"b', "a____b"),
        ("Mixed$Case-é.x", "Mixed$Case-é.x"),
    ],
)
def test_sanitize_path_element(name: str, expected: str) -> None:
    assert sanitize_path_element(name) == expected


def test_parse_export_only_forms() -> None:
    selection = parse_export_only(["db1", "db2.public", "db3.s$1.Table_2", "db1"])
    assert selection.databases == {"db1"}
    assert selection.schemas == {("db2", "public")}
    assert selection.tables == {("db3", "s$1", "Table_2")}
    assert selection.database_names() == {"db1", "db2", "db3"}
    assert selection.names() == ["db1", "db2.public", "db3.s$1.Table_2"]
    assert not selection.everything


def test_parse_export_only_empty_is_everything() -> None:
    selection = parse_export_only([])
    assert selection.everything
    assert selection.wants_database("anything")
    assert selection.wants_table("db", "schema", "table")


@pytest.mark.parametrize(
    ("item", "bad"),
    [
        ("my-db", "my-db"),
        ("db.my schema", "my schema"),
        ("db.public.Weird-Name", "Weird-Name"),
        ('db.public.we"ird', 'we"ird'),
        ("db.public.tablé", "tablé"),
        ("db..t", ""),
        ("", ""),
        ("db.public.", ""),
    ],
)
def test_parse_export_only_names_the_bad_part(item: str, bad: str) -> None:
    with pytest.raises(InvalidExportOnly) as raised:
        parse_export_only(["good", item])
    assert raised.value.code == "InvalidExportOnly"
    assert raised.value.http_status == 400
    assert repr(bad) in str(raised.value)


def test_parse_export_only_too_many_parts() -> None:
    with pytest.raises(InvalidExportOnly, match="database.schema.table"):
        parse_export_only(["db.schema.table.column"])


def test_parse_export_only_mysql_forms() -> None:
    selection = parse_export_only(["db1", "db2.orders"], "mysql")
    assert selection.databases == {"db1"}
    assert selection.schemas == set()
    # A MySQL table's schema is its database.
    assert selection.tables == {("db2", "db2", "orders")}
    assert selection.wants_table("db2", "db2", "orders")
    assert not selection.wants_table("db2", "db2", "other")


def test_parse_export_only_mysql_has_no_schema_form() -> None:
    with pytest.raises(InvalidExportOnly, match=r"use database or database\.table.*MySQL has no schemas"):
        parse_export_only(["db.schema.table"], "mysql")


def test_parse_export_only_size_limit() -> None:
    parse_export_only([f"db.s.t{i:06d}" for i in range(200 * 1024 // 12)])
    with pytest.raises(InvalidExportOnly, match="200 KB"):
        parse_export_only(["x" * 1024] * 201)


def test_selection_wants_table() -> None:
    selection = Selection(
        databases=frozenset({"whole"}),
        schemas=frozenset({("db", "sales")}),
        tables=frozenset({("db", "public", "orders")}),
    )
    assert selection.wants_table("whole", "any", "table")
    assert selection.wants_table("db", "sales", "anything")
    assert selection.wants_table("db", "public", "orders")
    assert not selection.wants_table("db", "public", "customers")
    assert not selection.wants_table("db", "Sales", "anything")  # names are case-sensitive
    assert not selection.wants_table("db", "public", "Orders")
    assert not selection.wants_table("other", "public", "orders")
    assert selection.wants_database("db")
    assert selection.wants_database("whole")
    assert not selection.wants_database("other")


@pytest.mark.parametrize("bucket", ["abc", "my-bucket", "my.bucket.2024", "a" * 63, "1bucket", "b-1-2"])
def test_valid_bucket_names(bucket: str) -> None:
    validate_bucket_name(bucket)


@pytest.mark.parametrize(
    "bucket",
    [
        "ab",
        "a" * 64,
        "My-Bucket",
        "-bucket",
        "bucket-",
        "bucket.",
        "my..bucket",
        "my_bucket",
        "192.168.5.4",
        "xn--bucket",
        "sthree-bucket",
        "bucket-s3alias",
        "bucket--ol-s3",
        "bucket.mrap",
    ],
)
def test_invalid_bucket_names(bucket: str) -> None:
    with pytest.raises(InvalidS3BucketFault) as raised:
        validate_bucket_name(bucket)
    assert raised.value.code == "InvalidS3BucketFault"
    assert bucket in str(raised.value)
