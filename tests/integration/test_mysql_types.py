"""Every mapped MySQL type, exported from the real server under both type mappings, read back from Parquet.

Expected values are written out here, never computed by the SQL the exporter runs.
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from decimal import Decimal

import pyarrow as pa
import pytest

from dbexport.models import ExportSettings, Status
from tests.helpers import database_of, export, mysql_execute, read_table

# (column, declared type, exported Arrow type, expectedExportedType, [(SQL literal, expected value)] of rows 1 and 2;
# row 3 is all NULL). Extremes of every integer type, signed and unsigned.
COLUMNS = [
    ("ti", "tinyint", pa.int32(), "int32", [("-128", -128), ("127", 127)]),
    ("tiu", "tinyint unsigned", pa.int16(), "int32", [("0", 0), ("255", 255)]),
    ("si", "smallint", pa.int32(), "int32", [("-32768", -32768), ("32767", 32767)]),
    ("siu", "smallint unsigned", pa.int32(), "int32", [("0", 0), ("65535", 65535)]),
    ("mi", "mediumint", pa.int32(), "int32", [("-8388608", -8388608), ("8388607", 8388607)]),
    ("miu", "mediumint unsigned", pa.int64(), "int64", [("0", 0), ("16777215", 16777215)]),
    ("i", "int", pa.int32(), "int32", [("-2147483648", -(2**31)), ("2147483647", 2**31 - 1)]),
    ("iu", "int unsigned", pa.int64(), "int64", [("0", 0), ("4294967295", 2**32 - 1)]),
    ("bi", "bigint", pa.int64(), "int64", [("-9223372036854775808", -(2**63)), ("9223372036854775807", 2**63 - 1)]),
    (
        "biu",
        "bigint unsigned",
        pa.decimal128(20, 0),
        "fixed_len_byte_array (DECIMAL(20,0))",
        [("0", Decimal(0)), ("18446744073709551615", Decimal(2**64 - 1))],
    ),
    ("f", "float", pa.float64(), "double", [("1.5", 1.5), ("-0.1", -0.1)]),
    (
        "d",
        "double",
        pa.float64(),
        "double",
        [("-1.7976931348623157e308", -1.7976931348623157e308), ("2.2250738585072014e-308", 2.2250738585072014e-308)],
    ),
    (
        "dec38",
        "decimal(38,10)",
        pa.decimal128(38, 10),
        "fixed_len_byte_array (DECIMAL(38,10))",
        [
            ("-9999999999999999999999999999.9999999999", Decimal("-9999999999999999999999999999.9999999999")),
            ("0.0000000001", Decimal("0.0000000001")),
        ],
    ),
    (
        "dec65",
        "decimal(65,30)",
        pa.string(),
        "binary (UTF8)",
        [
            ("-" + "9" * 35 + "." + "9" * 30, "-" + "9" * 35 + "." + "9" * 30),
            ("0." + "0" * 29 + "1", "0." + "0" * 29 + "1"),
        ],
    ),
    ("b1", "bit(1)", pa.binary(), "binary", [("b'0'", b"\x00"), ("b'1'", b"\x01")]),
    ("b64", "bit(64)", pa.binary(), "binary", [("0", b"\x00" * 8), ("18446744073709551615", b"\xff" * 8)]),
    ("bin", "binary(4)", pa.binary(), "binary", [("X'0001'", b"\x00\x01\x00\x00"), ("X'FF'", b"\xff\x00\x00\x00")]),
    ("vb", "varbinary(10)", pa.binary(), "binary", [("X'00FF00'", b"\x00\xff\x00"), ("X''", b"")]),
    ("bl", "blob", pa.binary(), "binary", [("X'000102'", b"\x00\x01\x02"), ("''", b"")]),
    ("c", "char(5)", pa.string(), "binary (UTF8)", [("'ab  '", "ab"), ("''", "")]),
    ("vc", "varchar(50)", pa.string(), "binary (UTF8)", [("'héllo 😀 日本'", "héllo 😀 日本"), ("''", "")]),
    ("tx", "text", pa.string(), "binary (UTF8)", [("'a\\nb\\tc \\\\ \\' \"'", "a\nb\tc \\ ' \""), ("''", "")]),
    ("lat", "varchar(10) CHARACTER SET latin1", pa.string(), "binary (UTF8)", [("'café'", "café"), ("'x'", "x")]),
    ("en", "enum('a','b c')", pa.string(), "binary (UTF8)", [("'a'", "a"), ("'b c'", "b c")]),
    ("st", "set('x','y','z')", pa.string(), "binary (UTF8)", [("'z,x'", "x,z"), ("''", "")]),
    ("dt", "date", pa.string(), "binary (UTF8)", [("'1000-01-01'", "1000-01-01"), ("'9999-12-31'", "9999-12-31")]),
    (
        "tm",
        "time(6)",
        pa.string(),
        "binary (UTF8)",
        [("'-838:59:59'", "-838:59:59.000000"), ("'12:00:00.5'", "12:00:00.500000")],
    ),
    (
        "dtm",
        "datetime(6)",
        pa.timestamp("us"),
        "int64 (TIMESTAMP(MICROS,false))",
        [
            ("'1000-01-01 00:00:00'", datetime(1000, 1, 1)),
            ("'9999-12-31 23:59:59.999999'", datetime(9999, 12, 31, 23, 59, 59, 999999)),
        ],
    ),
    (
        "ts",
        "timestamp(6) NULL",
        pa.timestamp("us", tz="UTC"),
        "int64 (TIMESTAMP(MICROS,true))",
        # Written in a session at +05:30: exported in UTC.
        [
            ("'1970-01-01 05:30:01'", datetime(1970, 1, 1, 0, 0, 1, tzinfo=UTC)),
            ("'2038-01-19 08:44:07.999999'", datetime(2038, 1, 19, 3, 14, 7, 999999, tzinfo=UTC)),
        ],
    ),
    ("yr", "year", pa.int32(), "int32", [("1901", 1901), ("2155", 2155)]),
    ("js", "json", pa.string(), "binary (UTF8)", [('\'{"a": [1, "é"]}\'', '{"a": [1, "é"]}'), ("'[]'", "[]")]),
    (
        "gm",
        "geometry",
        pa.binary(),
        "binary",
        [
            ("ST_GeomFromText('POINT(1 2)')", bytes.fromhex("0101000000000000000000f03f0000000000000040")),
            (
                "ST_GeomFromText('LINESTRING(0 0, 1 1)')",
                bytes.fromhex("010200000002000000" + "00" * 16 + "000000000000f03f000000000000f03f"),
            ),
        ],
    ),
]


@pytest.fixture
def all_types(mysql_source: str) -> str:
    columns = ", ".join(f"`{name}` {declared}" for name, declared, *_ in COLUMNS)
    rows = ["(" + ", ".join([str(i), *(values[i - 1][0] for *_, values in COLUMNS)]) + ")" for i in (1, 2)]
    mysql_execute(
        mysql_source,
        "SET time_zone = '+05:30'",
        f"CREATE TABLE t (id int PRIMARY KEY, {columns})",
        f"INSERT INTO t (id, {', '.join(f'`{c[0]}`' for c in COLUMNS)}) VALUES {', '.join(rows)}",
        "INSERT INTO t (id) VALUES (3)",
    )
    return mysql_source


def test_every_type_exports_exactly_under_the_anchors_mapping(all_types, tmp_path):
    task = export(all_types, tmp_path)
    assert task.status == Status.COMPLETE, task.failure_cause
    db = database_of(all_types)
    table = read_table(tmp_path, "test-export", db, db, "t").sort_by("id")
    assert table.column("id").to_pylist() == [1, 2, 3]
    for name, declared, arrow_type, _, values in COLUMNS:
        assert table.schema.field(name).type == arrow_type, name
        assert table.column(name).to_pylist() == [values[0][1], values[1][1], None], f"{name} {declared}"

    (info_file,) = (tmp_path / "test-export").glob("export_tables_info_*.json")
    (entry,) = json.loads(info_file.read_text())["perTableStatus"]
    assert entry["target"] == f"{db}.t"
    mappings = {m["columnName"]: m for m in entry["schemaMetadata"]["originalTypeMappings"]}
    for name, _, _, exported, _ in COLUMNS:
        assert mappings[name]["expectedExportedType"] == exported, name
    assert mappings["biu"]["originalType"] == "bigint unsigned"
    assert mappings["dtm"]["originalType"] == "datetime"
    assert mappings["vc"]["originalType"] == "varchar"


def test_the_typed_mapping_exports_dates_as_dates(all_types, tmp_path):
    task = export(all_types, tmp_path, settings=ExportSettings(type_mapping="typed"))
    assert task.status == Status.COMPLETE, task.failure_cause
    db = database_of(all_types)
    table = read_table(tmp_path, "test-export", db, db, "t").sort_by("id")
    assert table.schema.field("dt").type == pa.date32()
    assert table.column("dt").to_pylist() == [date(1000, 1, 1), date(9999, 12, 31), None]
    assert table.schema.field("dtm").type == pa.timestamp("us")
    assert table.schema.field("tm").type == pa.string()  # MySQL's time reaches 838 hours


def test_zero_dates_are_exported_as_mysqls_text_and_the_task_says_so(mysql_source, tmp_path):
    mysql_execute(
        mysql_source,
        "SET sql_mode = ''",
        "CREATE TABLE z (id int PRIMARY KEY, d date, dtm datetime, ts timestamp NULL, ok datetime)",
        "INSERT INTO z VALUES (1, '0000-00-00', '0000-00-00 00:00:00', '0000-00-00 00:00:00', '2024-01-02 03:04:05'),"
        " (2, '2024-00-15', '2024-02-00 10:00:00', NULL, NULL),"
        " (3, '2024-01-02', '2024-01-02 03:04:05', '2024-01-02 03:04:05', '2024-01-02 03:04:05')",
    )
    db = database_of(mysql_source)
    for mapping in ("aurora", "typed"):
        out = tmp_path / mapping
        task = export(mysql_source, out, settings=ExportSettings(type_mapping=mapping))
        assert task.status == Status.COMPLETE, task.failure_cause
        table = read_table(out, "test-export", db, db, "z").sort_by("id")
        assert table.column("d").to_pylist() == ["0000-00-00", "2024-00-15", "2024-01-02"]
        assert table.column("dtm").to_pylist() == ["0000-00-00 00:00:00", "2024-02-00 10:00:00", "2024-01-02 03:04:05"]
        assert table.column("ts").to_pylist() == ["0000-00-00 00:00:00", None, "2024-01-02 03:04:05"]
        # A column without zero dates keeps its typed form.
        assert table.column("ok").to_pylist() == [datetime(2024, 1, 2, 3, 4, 5), None, datetime(2024, 1, 2, 3, 4, 5)]
        general = [g["reason"] for g in json.loads(task.warning_message or "{}")["general"]]
        # A date is text under the anchor's mapping anyway: only the typed one needs to fall back for it.
        probed = ("d", "dtm", "ts") if mapping == "typed" else ("dtm", "ts")
        assert [g.split(" holds")[0] for g in general] == [f"Column {db}.z.{c}" for c in probed]
