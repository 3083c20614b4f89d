"""ExportOnly: what each form exports, names it refuses, names that match nothing, views, quoting."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dbexport.errors import InvalidExportOnly
from dbexport.models import Status
from tests.helpers import database_of, execute, export, read_table

EXPORT_ID = "test-export"

TABLES = """
    CREATE SCHEMA sales;
    CREATE SCHEMA "Sales";
    CREATE SCHEMA empty_schema;
    CREATE TABLE public.customers (id int PRIMARY KEY, name text);
    CREATE TABLE public.notes (id int PRIMARY KEY, body text);
    CREATE TABLE sales.orders (id int PRIMARY KEY, customer int);
    CREATE TABLE sales.items (id int PRIMARY KEY, order_id int);
    CREATE TABLE "Sales".orders (id int PRIMARY KEY);
    INSERT INTO public.customers SELECT i, 'c' || i FROM generate_series(1, 5) i;
    INSERT INTO public.notes SELECT i, 'n' || i FROM generate_series(1, 3) i;
    INSERT INTO sales.orders SELECT i, i % 5 + 1 FROM generate_series(1, 7) i;
    INSERT INTO sales.items SELECT i, i % 7 + 1 FROM generate_series(1, 11) i;
    INSERT INTO "Sales".orders SELECT i FROM generate_series(100, 102) i;
"""
ALL_FOLDERS = ["Sales.orders", "public.customers", "public.notes", "sales.items", "sales.orders"]
ROWS = {
    "Sales.orders": [100, 101, 102],
    "public.customers": [1, 2, 3, 4, 5],
    "public.notes": [1, 2, 3],
    "sales.items": list(range(1, 12)),
    "sales.orders": list(range(1, 8)),
}


def _folders(out: Path, url: str) -> list[str]:
    database = out / EXPORT_ID / database_of(url)
    return sorted(p.name for p in database.iterdir()) if database.exists() else []


def _targets(out: Path) -> list[str]:
    files = sorted((out / EXPORT_ID).glob(f"export_tables_info_{EXPORT_ID}_from_*_to_*.json"))
    return sorted(e["target"] for f in files for e in json.loads(f.read_text())["perTableStatus"] if "status" in e)


def _assert_exported(out: Path, url: str, folders: list[str]) -> None:
    """Exactly these tables are exported, each with its own rows, and the metadata lists the same."""
    assert _folders(out, url) == sorted(folders)
    db = database_of(url)
    for folder in folders:
        schema, table = folder.split(".")
        assert sorted(read_table(out, EXPORT_ID, db, schema, table).column("id").to_pylist()) == ROWS[folder]
    assert _targets(out) == sorted(f"{db}.{f}" for f in folders)


@pytest.mark.parametrize(
    ("export_only", "expected"),
    [
        ([], ALL_FOLDERS),
        (["{db}"], ALL_FOLDERS),
        (["{db}.sales"], ["sales.items", "sales.orders"]),
        (["{db}.Sales"], ["Sales.orders"]),
        (["{db}.sales.orders"], ["sales.orders"]),
        (["{db}.public.customers", "{db}.sales"], ["public.customers", "sales.items", "sales.orders"]),
        (["{db}.public", "{db}.public.notes"], ["public.customers", "public.notes"]),
        (["{db}", "{db}.sales.orders"], ALL_FOLDERS),
    ],
)
def test_export_only_exports_exactly_what_it_names(
    source: str, tmp_path: Path, export_only: list[str], expected: list[str]
) -> None:
    execute(source, TABLES)
    names = [n.format(db=database_of(source)) for n in export_only]
    task = export(source, tmp_path, export_only=names)
    assert task.status == Status.COMPLETE, task.failure_cause
    assert task.export_only == names
    _assert_exported(tmp_path, source, expected)


def test_export_only_an_existing_schema_without_tables(source: str, tmp_path: Path) -> None:
    execute(source, TABLES)
    task = export(source, tmp_path, export_only=[f"{database_of(source)}.empty_schema"])
    assert task.status == Status.COMPLETE, task.failure_cause
    assert _folders(tmp_path, source) == []
    assert _targets(tmp_path) == []


@pytest.mark.parametrize(
    ("item", "bad"),
    [
        ("{db}.my schema", "my schema"),
        ("{db}.my schema.Weird-Name", "my schema"),
        ("{db}.public.Weird-Name", "Weird-Name"),
        ("{db}.public.dotted.name", None),
        ("other-db", "other-db"),
        ('{db}.public."quoted"', '"quoted"'),
        ("{db}.public.tablé", "tablé"),
    ],
)
def test_export_only_with_other_characters_is_refused_before_anything_is_written(
    source: str, tmp_path: Path, item: str, bad: str | None
) -> None:
    execute(source, TABLES + 'CREATE SCHEMA "my schema"; CREATE TABLE "my schema"."Weird-Name" (id int);')
    db = database_of(source)
    with pytest.raises(InvalidExportOnly) as raised:
        export(source, tmp_path, export_only=[f"{db}.public.customers", item.format(db=db)])
    assert raised.value.code == "InvalidExportOnly"
    if bad is not None:
        assert repr(bad) in str(raised.value)
    assert list(tmp_path.iterdir()) == []


def test_full_export_exports_names_export_only_refuses(source: str, tmp_path: Path) -> None:
    execute(
        source,
        """
        CREATE SCHEMA "my schema";
        CREATE TABLE "my schema"."Weird-Name" (id int PRIMARY KEY, "a-b" text);
        INSERT INTO "my schema"."Weird-Name" VALUES (1, 'x'), (2, 'y');
        CREATE TABLE public."Weird-Name" (id int);
        INSERT INTO public."Weird-Name" VALUES (3);
        """,
    )
    task = export(source, tmp_path)
    assert task.status == Status.COMPLETE, task.failure_cause
    assert task.warning_message is None or "Weird-Name" not in task.warning_message
    assert _folders(tmp_path, source) == ["my_schema.Weird-Name", "public.Weird-Name"]
    db = database_of(source)
    rows = read_table(tmp_path, EXPORT_ID, db, "my schema", "Weird-Name").to_pylist()
    assert sorted(rows, key=lambda r: r["id"]) == [{"id": 1, "a-b": "x"}, {"id": 2, "a-b": "y"}]
    assert read_table(tmp_path, EXPORT_ID, db, "public", "Weird-Name").column("id").to_pylist() == [3]
    assert _targets(tmp_path) == [f"{db}.my schema.Weird-Name", f"{db}.public.Weird-Name"]


@pytest.mark.parametrize(
    ("export_only", "missing"),
    [
        (["no_such_db"], ["no_such_db"]),
        (["no_such_db.public.customers"], ["no_such_db"]),
        (["{db}.no_such_schema"], ["{db}.no_such_schema"]),
        (["{db}.no_such_schema.customers"], ["{db}.no_such_schema.customers"]),
        (["{db}.public.no_such_table"], ["{db}.public.no_such_table"]),
        (["{db}.public.Customers"], ["{db}.public.Customers"]),
        (["{db}.public.customers", "{db}.sales.nope", "{db}.nope"], ["{db}.nope", "{db}.sales.nope"]),
    ],
)
def test_names_that_match_nothing_fail_the_export(
    source: str, tmp_path: Path, export_only: list[str], missing: list[str]
) -> None:
    execute(source, TABLES)
    db = database_of(source)
    task = export(source, tmp_path, export_only=[n.format(db=db) for n in export_only])
    assert task.status == Status.FAILED
    assert task.failure_cause is not None
    for name in missing:
        assert name.format(db=db) in task.failure_cause
    assert f"{db}.public.customers," not in task.failure_cause
    assert task.task_end_time is not None
    # Nothing is exported for a request that names something the source does not have.
    assert _folders(tmp_path, source) == []
    info = json.loads((tmp_path / EXPORT_ID / f"export_info_{EXPORT_ID}.json").read_text())
    assert info["status"] == "FAILED"


NOT_TABLES = """
    CREATE TABLE public.base (id int PRIMARY KEY);
    INSERT INTO public.base VALUES (1), (2);
    CREATE VIEW public.base_view AS SELECT * FROM public.base;
    CREATE MATERIALIZED VIEW public.base_matview AS SELECT * FROM public.base;
    CREATE FOREIGN DATA WRAPPER dummy_fdw;
    CREATE SERVER dummy_server FOREIGN DATA WRAPPER dummy_fdw;
    CREATE FOREIGN TABLE public.remote (id int) SERVER dummy_server;
"""


def test_views_and_foreign_tables_named_in_export_only_are_skipped_objectives(source: str, tmp_path: Path) -> None:
    execute(source, NOT_TABLES)
    db = database_of(source)
    named = [f"{db}.public.base_view", f"{db}.public.remote", f"{db}.public.base_matview", f"{db}.public.base"]
    task = export(source, tmp_path, export_only=named)
    assert task.status == Status.COMPLETE, task.failure_cause
    assert _folders(tmp_path, source) == ["public.base"]
    assert task.warning_message is not None
    warning = json.loads(task.warning_message)
    assert warning["skippedTables"] == []
    objectives = {o["objective"]: o["reason"] for o in warning["skippedObjectives"]}
    assert sorted(objectives) == sorted(named[:3])
    assert "view" in objectives[f"{db}.public.base_view"]
    assert "foreign table" in objectives[f"{db}.public.remote"]
    assert "materialized view" in objectives[f"{db}.public.base_matview"]
    info = json.loads((tmp_path / EXPORT_ID / f"export_info_{EXPORT_ID}.json").read_text())
    assert json.loads(info["warningMessage"]) == warning


def test_full_export_leaves_views_and_foreign_tables_out_quietly(source: str, tmp_path: Path) -> None:
    execute(source, NOT_TABLES)
    task = export(source, tmp_path)
    assert task.status == Status.COMPLETE, task.failure_cause
    assert _folders(tmp_path, source) == ["public.base"]
    assert task.warning_message is None


QUOTED = [
    # (schema, table, folder)
    ("public", "MixedCase", "public.MixedCase"),
    ("public", "mixedcase", "public.mixedcase"),
    ("public", "with space", "public.with_space"),
    ("public", "dollar$name", "public.dollar$name"),
    ("public", "select", "public.select"),
    ("public", 'we"ird', "public.we_ird"),
    ("public", "back`tick", "public.back_tick"),
    ("public", "back\\slash", "public.back_slash"),
    ("public", "ünïcode", "public.ünïcode"),
    ("Odd Schema", "from", "Odd_Schema.from"),
    ("select", "Table", "select.Table"),
]


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def test_names_needing_quotes_export_with_clean_folder_names(source: str, tmp_path: Path) -> None:
    statements = ['CREATE SCHEMA "Odd Schema"', 'CREATE SCHEMA "select"']
    for i, (schema, table, _) in enumerate(QUOTED):
        name = f"{_ident(schema)}.{_ident(table)}"
        statements.append(f'CREATE TABLE {name} (id int PRIMARY KEY, "Value" text, "select" int)')
        statements.append(f"INSERT INTO {name} VALUES ({i}, {_literal(table)}, {i * 10})")
    execute(source, ";\n".join(statements))
    task = export(source, tmp_path)
    assert task.status == Status.COMPLETE, task.failure_cause
    assert task.warning_message is None
    assert _folders(tmp_path, source) == sorted(folder for _, _, folder in QUOTED)
    db = database_of(source)
    for i, (schema, table, _) in enumerate(QUOTED):
        assert read_table(tmp_path, EXPORT_ID, db, schema, table).to_pylist() == [
            {"id": i, "Value": table, "select": i * 10}
        ]
    assert _targets(tmp_path) == sorted(f"{db}.{schema}.{table}" for schema, table, _ in QUOTED)


def _literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def test_export_only_names_mixed_case_dollar_and_reserved_words(source: str, tmp_path: Path) -> None:
    execute(
        source,
        """
        CREATE SCHEMA "select";
        CREATE TABLE public."MixedCase" (id int);
        CREATE TABLE public.mixedcase (id int);
        CREATE TABLE public."dollar$name" (id int);
        CREATE TABLE public."select" (id int);
        CREATE TABLE "select"."Table" (id int);
        CREATE TABLE public.other (id int);
        INSERT INTO public."MixedCase" VALUES (1);
        INSERT INTO public.mixedcase VALUES (2);
        INSERT INTO public."dollar$name" VALUES (3);
        INSERT INTO public."select" VALUES (4);
        INSERT INTO "select"."Table" VALUES (5);
        """,
    )
    db = database_of(source)
    names = [f"{db}.public.MixedCase", f"{db}.public.dollar$name", f"{db}.public.select", f"{db}.select"]
    task = export(source, tmp_path, export_only=names)
    assert task.status == Status.COMPLETE, task.failure_cause
    assert _folders(tmp_path, source) == ["public.MixedCase", "public.dollar$name", "public.select", "select.Table"]
    expected = {("public", "MixedCase"): 1, ("public", "dollar$name"): 3, ("public", "select"): 4}
    expected[("select", "Table")] = 5
    for (schema, table), value in expected.items():
        assert read_table(tmp_path, EXPORT_ID, db, schema, table).column("id").to_pylist() == [value]


def test_names_cleaned_to_the_same_folder_do_not_overwrite_each_other(source: str, tmp_path: Path) -> None:
    execute(
        source,
        """
        CREATE TABLE public.a_b (id int); INSERT INTO public.a_b SELECT generate_series(1, 3);
        CREATE TABLE public."a b" (id int); INSERT INTO public."a b" SELECT generate_series(10, 14);
        CREATE TABLE public."a`b" (id int); INSERT INTO public."a`b" VALUES (20);
        CREATE SCHEMA "x y";
        CREATE SCHEMA "x.y";
        CREATE TABLE "x y".t (id int); INSERT INTO "x y".t VALUES (30);
        CREATE TABLE "x.y".t (id int); INSERT INTO "x.y".t VALUES (40);
        CREATE SCHEMA x;
        CREATE TABLE x."y.t" (id int); INSERT INTO x."y.t" VALUES (50);
        """,
    )
    task = export(source, tmp_path)
    assert task.status == Status.COMPLETE, task.failure_cause
    db = database_of(source)
    # The table whose folder is its own name is exported; the ones that would write into it are skipped.
    assert _folders(tmp_path, source) == ["public.a_b", "x.y.t", "x_y.t"]
    assert sorted(read_table(tmp_path, EXPORT_ID, db, "public", "a_b").column("id").to_pylist()) == [1, 2, 3]
    assert read_table(tmp_path, EXPORT_ID, db, "x y", "t").column("id").to_pylist() == [30]
    # `x`.`y.t` and `x.y`.`t` share a folder with no cleaning at all: the first in catalog order is kept.
    assert read_table(tmp_path, EXPORT_ID, db, "x", "y.t").column("id").to_pylist() == [50]
    assert task.warning_message is not None
    warning = json.loads(task.warning_message)
    skipped = sorted((s["schema"], s["table"], s["reason"]) for s in warning["skippedTables"])
    assert [(schema, table) for schema, table, _ in skipped] == [("public", "a b"), ("public", "a`b"), ("x.y", "t")]
    assert {reason for _, _, reason in skipped} == {"TABLE_PATH_CONFLICT"}
    assert any(f"{db}.public.a b" in w["reason"] and "public.a_b" in w["reason"] for w in warning["general"])
