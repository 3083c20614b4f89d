"""The type mappings as pure functions of the catalog's description of a column (no database)."""

from __future__ import annotations

import pyarrow as pa
import pytest

from dbexport.models import Column
from dbexport.typemap import (
    MySQLColumn,
    SourceColumn,
    arrow_schema,
    arrow_type,
    exported_type_name,
    map_column,
    map_mysql_column,
    mysql_needs_probe,
    value_probe,
)

TEXT_OUT = ("pg_catalog", "textout")


def source_column(
    base_type: str,
    data_type: str = "",
    *,
    is_domain: bool = False,
    element_type: str | None = None,
    precision: int | None = None,
    scale: int | None = None,
) -> SourceColumn:
    return SourceColumn(
        name="c",
        data_type=data_type or base_type,
        base_type=base_type,
        is_domain=is_domain,
        output_function=TEXT_OUT,
        element_type=element_type,
        numeric_precision=precision,
        numeric_scale=scale,
    )


def numeric(precision: int | None = None, scale: int | None = None) -> SourceColumn:
    return source_column("numeric", precision=precision, scale=scale)


def array_of(element: str) -> SourceColumn:
    schema, _, name = element.rpartition(".")
    return source_column(f"{schema}{'.' if schema else ''}_{name}", "ARRAY", element_type=element)


def mapped(col: SourceColumn, mapping: str = "aurora", unrepresentable: bool = False) -> Column:
    column = map_column(col, mapping, unrepresentable)  # type: ignore[arg-type]
    assert column is not None
    return column


# --- aurora --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("base_type", "arrow"),
    [
        ("int8", pa.int64()),
        ("int4", pa.int32()),
        ("int2", pa.int16()),
        ("float4", pa.float32()),
        ("float8", pa.float64()),
        ("bool", pa.bool_()),
        ("bytea", pa.binary()),
    ],
)
@pytest.mark.parametrize("mapping", ["aurora", "typed"])
def test_native_types_are_read_natively_in_both_mappings(base_type, arrow, mapping):
    column = mapped(source_column(base_type), mapping)
    assert column.read_as == "native"
    assert column.cast_to is None
    assert arrow_type(column) == arrow


@pytest.mark.parametrize(
    "col",
    [
        numeric(12, 2),
        numeric(),
        source_column("money"),
        source_column("bpchar", "character"),
        source_column("date"),
        source_column("timestamptz", "timestamp with time zone"),
        source_column("time", "time without time zone"),
        source_column("uuid"),
        source_column("jsonb"),
        array_of("int4"),
        source_column("public.mood", "USER-DEFINED"),
    ],
    ids=lambda c: c.base_type,
)
def test_aurora_reads_every_other_type_through_its_output_function_as_string(col):
    column = mapped(col)
    assert column.read_as == "text"
    assert column.output_function == TEXT_OUT
    assert arrow_type(column) == pa.string()
    assert exported_type_name(column) == "binary (UTF8)"


@pytest.mark.parametrize("base_type", ["oid", "xid", "xid8", "cid", "regclass", "regtype", "regproc"])
@pytest.mark.parametrize("mapping", ["aurora", "typed"])
def test_oid_like_types_are_not_exported(base_type, mapping):
    assert map_column(source_column(base_type), mapping) is None


def test_domain_over_a_native_type_is_cast_to_its_base_type():
    column = mapped(source_column("int4", "integer", is_domain=True))
    assert column.read_as == "native"
    assert column.cast_to == "int4"
    assert arrow_type(column) == pa.int32()


def test_column_keeps_its_information_schema_type_name():
    assert mapped(source_column("varchar", "character varying")).original_type == "character varying"


def test_aurora_probes_no_values():
    for col in (numeric(10, 2), source_column("date"), array_of("int4")):
        assert value_probe(col, "aurora") is None


@pytest.mark.parametrize(
    ("base_type", "name"),
    [("int2", "int32"), ("int4", "int32"), ("int8", "int64"), ("float4", "float"), ("float8", "double")],
)
def test_exported_type_names_are_the_anchors(base_type, name):
    assert exported_type_name(mapped(source_column(base_type))) == name


def test_arrow_schema_names_the_columns_in_order():
    columns = [
        mapped(SourceColumn("a", "integer", "int4", False, TEXT_OUT)),
        mapped(SourceColumn("b", "text", "text", False, TEXT_OUT)),
    ]
    assert arrow_schema(columns) == pa.schema([("a", pa.int32()), ("b", pa.string())])


# --- typed ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("precision", "scale"), [(12, 2), (38, 0), (38, 38), (1, 0)])
def test_typed_numeric_with_parquet_precision_and_scale_becomes_decimal(precision, scale):
    column = mapped(numeric(precision, scale), "typed")
    assert column.read_as == "text"
    assert arrow_type(column) == pa.decimal128(precision, scale)
    assert exported_type_name(column) == f"fixed_len_byte_array (DECIMAL({precision},{scale}))"
    assert value_probe(numeric(precision, scale), "typed") == "nan"


@pytest.mark.parametrize(
    "col",
    [
        pytest.param(numeric(), id="unconstrained"),
        pytest.param(numeric(39, 2), id="precision-above-38"),
        pytest.param(numeric(50, 2), id="precision-50"),
        pytest.param(numeric(5, -2), id="negative-scale"),
        pytest.param(numeric(3, 5), id="scale-above-precision"),
    ],
)
def test_typed_numeric_without_a_parquet_decimal_is_string_and_not_probed(col):
    assert arrow_type(mapped(col, "typed")) == pa.string()
    assert value_probe(col, "typed") is None


def test_typed_numeric_holding_nan_is_string():
    assert arrow_type(mapped(numeric(10, 2), "typed", unrepresentable=True)) == pa.string()


@pytest.mark.parametrize(
    ("base_type", "arrow", "probe"),
    [
        ("date", pa.date32(), "infinite"),
        ("timestamp", pa.timestamp("us"), "timestamp_range"),
        ("timestamptz", pa.timestamp("us", tz="UTC"), "timestamp_range"),
        ("time", pa.time64("us"), "midnight_24"),
        ("uuid", pa.uuid(), None),
        ("json", pa.json_(), None),
        ("jsonb", pa.json_(), None),
    ],
)
def test_typed_dates_times_uuid_and_json_are_read_natively(base_type, arrow, probe):
    column = mapped(source_column(base_type), "typed")
    assert column.read_as == "native"
    assert arrow_type(column) == arrow
    assert value_probe(source_column(base_type), "typed") == probe


@pytest.mark.parametrize("base_type", ["date", "timestamp", "timestamptz"])
def test_typed_date_or_timestamp_holding_infinity_is_string(base_type):
    column = mapped(source_column(base_type), "typed", unrepresentable=True)
    assert column.read_as == "text"
    assert arrow_type(column) == pa.string()


def test_typed_domain_over_date_is_cast_to_date():
    column = mapped(source_column("date", is_domain=True), "typed")
    assert column.cast_to == "date"
    assert arrow_type(column) == pa.date32()


@pytest.mark.parametrize(
    ("element", "value_type"),
    [
        ("int2", pa.int16()),
        ("int4", pa.int32()),
        ("int8", pa.int64()),
        ("float4", pa.float32()),
        ("float8", pa.float64()),
        ("bool", pa.bool_()),
        ("text", pa.string()),
        ("varchar", pa.string()),
    ],
)
def test_typed_one_dimensional_array_becomes_list(element, value_type):
    column = mapped(array_of(element), "typed")
    assert column.read_as == "native"
    assert arrow_type(column) == pa.list_(value_type)
    assert value_probe(array_of(element), "typed") == "array_shape"


def test_typed_multidimensional_array_is_string():
    assert arrow_type(mapped(array_of("int4"), "typed", unrepresentable=True)) == pa.string()


@pytest.mark.parametrize("element", ["bytea", "numeric", "date", "uuid", "public.int4", "public.mood"])
def test_typed_array_of_other_elements_is_string_and_not_probed(element):
    col = array_of(element)
    assert arrow_type(mapped(col, "typed")) == pa.string()
    assert value_probe(col, "typed") is None


@pytest.mark.parametrize(
    "col",
    [
        source_column("interval"),
        source_column("timetz", "time with time zone"),
        source_column("bpchar", "character"),
        source_column("inet"),
        source_column("public.int4", "USER-DEFINED"),
    ],
    ids=lambda c: c.base_type,
)
def test_typed_exports_other_types_as_aurora_does(col):
    assert mapped(col, "typed") == mapped(col, "aurora")
    assert value_probe(col, "typed") is None


@pytest.mark.parametrize(
    ("data_type", "unsigned", "precision", "scale", "aurora", "typed"),
    [
        ("bigint", False, None, None, pa.int64(), pa.int64()),
        ("bigint", True, None, None, pa.decimal128(20, 0), pa.decimal128(20, 0)),
        ("int", False, None, None, pa.int32(), pa.int32()),
        ("int", True, None, None, pa.int64(), pa.int64()),
        ("mediumint", False, None, None, pa.int32(), pa.int32()),
        ("mediumint", True, None, None, pa.int64(), pa.int64()),
        ("smallint", False, None, None, pa.int32(), pa.int32()),
        ("smallint", True, None, None, pa.int32(), pa.int32()),
        ("tinyint", False, None, None, pa.int32(), pa.int32()),
        ("tinyint", True, None, None, pa.int16(), pa.int16()),
        ("float", False, None, None, pa.float64(), pa.float64()),
        ("double", False, None, None, pa.float64(), pa.float64()),
        ("decimal", False, 38, 38, pa.decimal128(38, 38), pa.decimal128(38, 38)),
        ("decimal", False, 39, 2, pa.string(), pa.string()),
        ("bit", False, None, None, pa.binary(), pa.binary()),
        ("varbinary", False, None, None, pa.binary(), pa.binary()),
        ("longblob", False, None, None, pa.binary(), pa.binary()),
        ("enum", False, None, None, pa.string(), pa.string()),
        ("set", False, None, None, pa.string(), pa.string()),
        ("longtext", False, None, None, pa.string(), pa.string()),
        ("json", False, None, None, pa.string(), pa.string()),
        ("date", False, None, None, pa.string(), pa.date32()),
        ("time", False, None, None, pa.string(), pa.string()),
        ("datetime", False, None, None, pa.timestamp("us"), pa.timestamp("us")),
        ("timestamp", False, None, None, pa.timestamp("us", tz="UTC"), pa.timestamp("us", tz="UTC")),
        ("year", False, None, None, pa.int32(), pa.int32()),
        ("point", False, None, None, pa.binary(), pa.binary()),
        ("inet6", False, None, None, pa.string(), pa.string()),  # MariaDB's own types: their text
    ],
)
def test_mysql_mapping(data_type, unsigned, precision, scale, aurora, typed) -> None:
    col = MySQLColumn("c", data_type, unsigned, precision, scale)
    assert arrow_type(map_mysql_column(col, "aurora")) == aurora
    assert arrow_type(map_mysql_column(col, "typed")) == typed


def test_mysql_zero_dates_make_a_temporal_column_text() -> None:
    for data_type in ("date", "datetime", "timestamp"):
        col = MySQLColumn("c", data_type)
        assert mysql_needs_probe(col, "typed")
        assert arrow_type(map_mysql_column(col, "typed", unrepresentable=True)) == pa.string()
    assert not mysql_needs_probe(MySQLColumn("c", "date"), "aurora")  # text already
    assert mysql_needs_probe(MySQLColumn("c", "datetime"), "aurora")
    assert map_mysql_column(MySQLColumn("c", "bigint", unsigned=True), "aurora").original_type == "bigint unsigned"
