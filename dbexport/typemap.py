"""PostgreSQL and MySQL types -> Parquet: the anchor's `aurora` mapping and dbexport's `typed` one (pure)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import pyarrow as pa

from dbexport.models import Column, TypeMapping

ProbeKind = Literal["nan", "infinite", "timestamp_range", "midnight_24", "array_shape"]


@dataclass(frozen=True)
class SourceColumn:
    """A column as the catalog describes it, domains resolved to their base type."""

    name: str
    data_type: str  # information_schema's name of the declared type
    # pg_type.typname of the base type for built-in types (int4, numeric, _int4, ...),
    # schema-qualified for user-defined ones so that they never match a built-in name.
    base_type: str
    is_domain: bool
    output_function: tuple[str, str]  # (schema, function) of the type's text output
    element_type: str | None = None  # typname of an array's element
    numeric_precision: int | None = None
    numeric_scale: int | None = None


# Types the anchor reads natively; all others become PostgreSQL's own text.
_AURORA_NATIVE = {
    "int2": "int16",
    "int4": "int32",
    "int8": "int64",
    "float4": "float32",
    "float8": "float64",
    "bool": "bool",
    "bytea": "binary",
}
# What `typed` adds; each may fall back to text when a value cannot be represented (see probes).
_TYPED_NATIVE = {
    "date": "date",
    "timestamp": "timestamp",
    "timestamptz": "timestamptz",
    "time": "time",
    "uuid": "uuid",
    "json": "json",
    "jsonb": "json",
}
_TYPED_LIST_ELEMENTS = {**_AURORA_NATIVE, "text": "string", "varchar": "string"}
_TYPED_LIST_ELEMENTS.pop("bytea")
# The anchor does not export identifiers of system objects.
NOT_EXPORTED = frozenset(
    {
        "oid",
        "xid",
        "xid8",
        "cid",
        "regproc",
        "regprocedure",
        "regoper",
        "regoperator",
        "regclass",
        "regtype",
        "regrole",
        "regnamespace",
        "regconfig",
        "regdictionary",
        "regcollation",
    }
)
_MAX_DECIMAL_PRECISION = 38

_ARROW_TYPES: dict[str, pa.DataType] = {
    "int16": pa.int16(),
    "int32": pa.int32(),
    "int64": pa.int64(),
    "float32": pa.float32(),
    "float64": pa.float64(),
    "bool": pa.bool_(),
    "binary": pa.binary(),
    "string": pa.string(),
    "date": pa.date32(),
    "timestamp": pa.timestamp("us"),
    "timestamptz": pa.timestamp("us", tz="UTC"),
    "time": pa.time64("us"),
    "uuid": pa.uuid(),
    "json": pa.json_(),
}
# Names in export_tables_info's expectedExportedType, as the anchor writes them.
_EXPORTED_TYPE_NAMES = {
    "int16": "int32",
    "int32": "int32",
    "int64": "int64",
    "float32": "float",
    "float64": "double",
    "bool": "boolean",
    "binary": "binary",
    "string": "binary (UTF8)",
    "date": "int32 (DATE)",
    "timestamp": "int64 (TIMESTAMP(MICROS,false))",
    "timestamptz": "int64 (TIMESTAMP(MICROS,true))",
    "time": "int64 (TIME(MICROS,false))",
    "uuid": "fixed_len_byte_array(16) (UUID)",
    "json": "binary (JSON)",
}


def value_probe(col: SourceColumn, mapping: TypeMapping) -> ProbeKind | None:
    """Which values, if present, stop `typed` from using this column's typed form."""
    if mapping != "typed":
        return None
    if col.base_type == "numeric" and _typed_decimal(col):
        return "nan"
    if col.base_type == "date":
        return "infinite"
    if col.base_type in ("timestamp", "timestamptz"):
        return "timestamp_range"
    if col.base_type == "time":
        return "midnight_24"
    if col.element_type in _TYPED_LIST_ELEMENTS:
        return "array_shape"
    return None


def map_column(col: SourceColumn, mapping: TypeMapping, unrepresentable: bool = False) -> Column | None:
    """How to read and write one column; None when the anchor does not export its type.

    `unrepresentable` says a value probe found a value the typed form cannot hold
    (numeric NaN, an infinite date, a multi-dimensional array): the column stays text.
    """
    if col.base_type in NOT_EXPORTED:
        return None
    if col.base_type in _AURORA_NATIVE:
        return _native(col, _AURORA_NATIVE[col.base_type])
    if mapping == "typed" and not unrepresentable:
        if col.base_type in _TYPED_NATIVE:
            return _native(col, _TYPED_NATIVE[col.base_type])
        if col.element_type in _TYPED_LIST_ELEMENTS:
            return _native(col, f"list<{_TYPED_LIST_ELEMENTS[col.element_type]}>")
        if col.base_type == "numeric" and _typed_decimal(col):
            return Column(
                name=col.name,
                original_type=col.data_type,
                read_as="text",
                output_function=col.output_function,
                export_type="decimal",
                precision=col.numeric_precision,
                scale=col.numeric_scale,
            )
    return Column(
        name=col.name,
        original_type=col.data_type,
        read_as="text",
        output_function=col.output_function,
        export_type="string",
    )


def _typed_decimal(col: SourceColumn) -> bool:
    """numeric(p,s) that Parquet's DECIMAL(p,s) can hold: p <= 38 and 0 <= s <= p.

    PostgreSQL 15 also accepts a negative scale (numeric(5,-2) rounds to hundreds) and a scale above
    the precision (numeric(3,5)); Parquet allows neither, so those stay text.
    """
    p, s = col.numeric_precision, col.numeric_scale
    return p is not None and s is not None and p <= _MAX_DECIMAL_PRECISION and 0 <= s <= p


def _native(col: SourceColumn, export_type: str) -> Column:
    return Column(
        name=col.name,
        original_type=col.data_type,
        read_as="native",
        cast_to=col.base_type if col.is_domain else None,
        export_type=export_type,
    )


@dataclass(frozen=True)
class MySQLColumn:
    """A MySQL or MariaDB column as information_schema.COLUMNS describes it."""

    name: str
    data_type: str  # DATA_TYPE: int, varchar, datetime, ...
    unsigned: bool = False
    numeric_precision: int | None = None
    numeric_scale: int | None = None

    @property
    def original_type(self) -> str:
        """originalType in export_tables_info: DATA_TYPE, and `unsigned` when it is."""
        return f"{self.data_type} unsigned" if self.unsigned else self.data_type


# The anchor's MySQL mapping (REFERENCE.md), by DATA_TYPE, signed and unsigned.
_MYSQL_INTEGERS: dict[str, tuple[str, str]] = {
    "tinyint": ("int32", "int16"),
    "smallint": ("int32", "int32"),
    "mediumint": ("int32", "int64"),
    "int": ("int32", "int64"),
    "bigint": ("int64", "decimal"),  # bigint unsigned: DECIMAL(20,0)
}
MYSQL_SPATIAL = frozenset(
    {
        "geometry",
        "point",
        "linestring",
        "polygon",
        "multipoint",
        "multilinestring",
        "multipolygon",
        "geometrycollection",
        "geomcollection",
    }
)
_MYSQL_NATIVE = {
    "float": "float64",
    "double": "float64",
    "year": "int32",
    "bit": "binary",
    "binary": "binary",
    "varbinary": "binary",
    "tinyblob": "binary",
    "blob": "binary",
    "mediumblob": "binary",
    "longblob": "binary",
    **dict.fromkeys(MYSQL_SPATIAL, "binary"),
    # Read as MySQL prints them (char keeps no padding, as MySQL strips it; time may exceed a day).
    **dict.fromkeys(
        ("char", "varchar", "tinytext", "text", "mediumtext", "longtext", "enum", "set", "json", "time", "date"),
        "string",
    ),
    "datetime": "timestamp",
    "timestamp": "timestamptz",  # stored in UTC; the session's time zone is UTC
}
# Temporal types whose typed forms can't hold MySQL's zero dates (0000-00-00), zero parts (2024-00-10) or year 0.
MYSQL_DATE_TYPES = frozenset({"date", "datetime", "timestamp"})


def mysql_needs_probe(col: MySQLColumn, mapping: TypeMapping) -> bool:
    """Whether the column's mapped form is a typed date or timestamp, which zero dates would not fit."""
    return col.data_type in ("datetime", "timestamp") or (col.data_type == "date" and mapping == "typed")


def map_mysql_column(col: MySQLColumn, mapping: TypeMapping, unrepresentable: bool = False) -> Column:
    """How to read and write one MySQL column.

    `unrepresentable` says the column holds a zero date (or a zero month or day, or year 0): it is exported
    as MySQL's own text of the value, as a date column is under the anchor's mapping.
    """
    export_type = _MYSQL_NATIVE.get(col.data_type, "string")
    precision = scale = None
    if col.data_type in _MYSQL_INTEGERS:
        export_type = _MYSQL_INTEGERS[col.data_type][col.unsigned]
        if export_type == "decimal":
            precision, scale = 20, 0
    elif col.data_type in ("decimal", "numeric"):
        p, s = col.numeric_precision, col.numeric_scale
        if p is not None and s is not None and p <= _MAX_DECIMAL_PRECISION:
            export_type, precision, scale = "decimal", p, s
    elif col.data_type == "date" and mapping == "typed":
        export_type = "date"
    if unrepresentable and col.data_type in MYSQL_DATE_TYPES:
        export_type = "string"
    known = (
        col.data_type in _MYSQL_NATIVE or col.data_type in _MYSQL_INTEGERS or col.data_type in ("decimal", "numeric")
    )
    return Column(
        name=col.name,
        original_type=col.original_type,
        # text: read as the server's text of the value (a type dbexport does not know, or a bigint unsigned,
        # which becomes a decimal through its text).
        read_as="text" if not known or export_type == "decimal" else "native",
        export_type=export_type,
        precision=precision,
        scale=scale,
    )


def arrow_type(column: Column) -> pa.DataType:
    """The Arrow type a column is written as."""
    if column.export_type == "decimal":
        assert column.precision is not None and column.scale is not None
        return pa.decimal128(column.precision, column.scale)
    if column.export_type.startswith("list<"):
        return pa.list_(_ARROW_TYPES[column.export_type[5:-1]])
    return _ARROW_TYPES[column.export_type]


def arrow_schema(columns: list[Column]) -> pa.Schema:
    """The Arrow schema of a table's Parquet files."""
    return pa.schema([pa.field(c.name, arrow_type(c)) for c in columns])


def exported_type_name(column: Column) -> str:
    """expectedExportedType for export_tables_info."""
    if column.export_type == "decimal":
        return f"fixed_len_byte_array (DECIMAL({column.precision},{column.scale}))"
    if column.export_type.startswith("list<"):
        return f"list<{_EXPORTED_TYPE_NAMES[column.export_type[5:-1]]}>"
    return _EXPORTED_TYPE_NAMES[column.export_type]
