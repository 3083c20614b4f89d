"""Names from a database become exactly one safe folder each, and no two tables share one (dbexport.layout)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dbexport.errors import InvalidParameterValue
from dbexport.layout import NOT_A_FOLDER, PATH_CONFLICT, folder_element, settle_folders, table_folder
from dbexport.models import ExportPlan, ExportTask, Partition, TablePlan
from dbexport.validation import validate_s3_prefix

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def table(database: str, schema: str, name: str, engine: str = "postgresql") -> TablePlan:
    return TablePlan.model_validate(
        {
            "database": database,
            "schema": schema,
            "table": name,
            "columns": [],
            "partitions": [Partition(index="1")],
            "estimated_bytes": 0,
            "engine": engine,
        }
    )


def plan(database: str, *tables: TablePlan) -> ExportPlan:
    return ExportPlan(database=database, snapshot_id="s", snapshot_time=NOW, tables=list(tables))


def skipped(plans: list[ExportPlan]) -> dict[str, str]:
    return {s.target: s.reason for p in plans for s in p.skipped}


@given(st.text())
def test_any_name_is_one_safe_folder_or_none(name: str) -> None:
    element = folder_element(name)
    if element is not None:
        assert "/" not in element and element not in ("", ".", "..")
        assert not set('\\`" ') & set(element)


# ".dbexport-staging": the local staging folder beside the databases, emptied when an export ends.
@pytest.mark.parametrize("name", ["", ".", "..", "a/b", "../victim", "x/../../victim2/db", "/", ".dbexport-staging"])
def test_names_that_are_no_folder(name: str) -> None:
    assert folder_element(name) is None


def test_databases_whose_names_clean_alike_are_not_written_into_one_another() -> None:
    # "c a" cleans to c_a, the folder of the database c_a: the one whose name is its folder keeps it.
    plans = settle_folders([plan("c a", table("c a", "public", "t")), plan("c_a", table("c_a", "public", "t"))])
    assert [[t.target for t in p.tables] for p in plans] == [[], ["c_a.public.t"]]
    assert skipped(plans) == {"c a.public.t": PATH_CONFLICT}
    assert plans[0].general_warnings == [
        "The table c a.public.t is not exported: its folder c_a/public.t is the folder of c_a.public.t."
    ]


def test_a_conflict_across_databases_keeps_the_first_when_both_are_cleaned() -> None:
    plans = settle_folders([plan("c a", table("c a", "p", "t")), plan("c`a", table("c`a", "p", "t"))])
    assert [len(p.tables) for p in plans] == [1, 0]
    assert skipped(plans) == {"c`a.p.t": PATH_CONFLICT}


def test_mysql_tables_conflict_across_databases_too() -> None:
    plans = settle_folders(
        [plan("m n", table("m n", "m n", "t", "mysql")), plan("m_n", table("m_n", "m_n", "t", "mysql"))]
    )
    assert skipped(plans) == {"m n.t": PATH_CONFLICT}


@pytest.mark.parametrize(
    ("database", "schema", "name", "reason"),
    [
        ("x/../../victim2/db", "public", "t", "DATABASE_NAME_HAS_SLASH"),
        ("..", "public", "t", NOT_A_FOLDER),
        (".", "public", "t", NOT_A_FOLDER),
        ("db", "../../victim1/db/public", "t", "SCHEMA_NAME_HAS_SLASH"),
        ("db", "sch/x", "t", "SCHEMA_NAME_HAS_SLASH"),
    ],
)
def test_names_that_would_leave_their_folder_are_skipped(database: str, schema: str, name: str, reason: str) -> None:
    plans = settle_folders([plan(database, table(database, schema, name)), plan("ok", table("ok", "public", "t"))])
    assert skipped(plans) == {table(database, schema, name).target: reason}
    assert [t.target for t in plans[1].tables] == ["ok.public.t"]


def test_a_table_folder_is_under_its_export() -> None:
    task = ExportTask(
        export_task_identifier="e1",
        source_arn="postgresql://h/",
        task_start_time=NOW,
        s3_bucket="file:///tmp/x",
        s3_prefix="a b/c",
    )
    assert table_folder(task, table("d b", "s", "t u")) == "a_b/c/e1/d_b/s.t_u"
    with pytest.raises(ValueError, match="no safe folder"):
        table_folder(task, table("..", "s", "t"))


@pytest.mark.parametrize("prefix", ["..", "a/../b", "./x", "x/.", "../../etc"])
def test_an_s3_prefix_with_a_dot_folder_is_refused(prefix: str) -> None:
    with pytest.raises(InvalidParameterValue, match="'.' or '..'"):
        validate_s3_prefix(prefix)
