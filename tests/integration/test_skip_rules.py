"""The anchor's skip rules: each skipped table is listed in WarningMessage, every other table is exported."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

from dbexport.models import ExportSettings, ExportTask, Status
from tests.helpers import database_of, execute, export, read_table

EXPORT_ID = "test-export"
# Every test has this table beside the one it skips; it must come out whole.
GOOD_TABLE = """
    CREATE TABLE good (id int PRIMARY KEY, v text);
    INSERT INTO good SELECT i, 'v' || i FROM generate_series(1, 5) i;
"""


def _skipped(task: ExportTask) -> list[dict[str, str]]:
    assert task.warning_message is not None, "no WarningMessage"
    return list(json.loads(task.warning_message)["skippedTables"])


def _statuses(out: Path) -> dict[str, dict[str, Any]]:
    files = sorted((out / EXPORT_ID).glob(f"export_tables_info_{EXPORT_ID}_from_*_to_*.json"))
    return {e["target"]: e for f in files for e in json.loads(f.read_text())["perTableStatus"] if "status" in e}


def _folders(out: Path, url: str) -> list[str]:
    return sorted(p.name for p in (out / EXPORT_ID / database_of(url)).iterdir())


def _assert_only_skipped(
    task: ExportTask, out: Path, url: str, skipped: list[tuple[str, str, str]], exported: dict[str, int]
) -> None:
    """The task completed, skipped exactly these (schema, table, reason) and exported these tables whole."""
    assert task.status == Status.COMPLETE, task.failure_cause
    db = database_of(url)
    assert sorted(_skipped(task), key=lambda s: (s["schema"], s["table"])) == [
        {"database": db, "schema": schema, "table": table, "reason": reason} for schema, table, reason in skipped
    ]
    statuses = _statuses(out)
    for schema, table, reason in skipped:
        assert statuses[f"{db}.{schema}.{table}"]["status"] == "SKIPPED"
        assert statuses[f"{db}.{schema}.{table}"]["reason"] == reason
    assert _folders(out, url) == sorted(f"public.{t}" for t in exported)
    for table, rows in exported.items():
        assert read_table(out, EXPORT_ID, db, "public", table).num_rows == rows
        assert statuses[f"{db}.public.{table}"]["status"] == "COMPLETE"
    info = json.loads((out / EXPORT_ID / f"export_info_{EXPORT_ID}.json").read_text())
    assert info["warningMessage"] == task.warning_message


def test_table_name_with_a_slash(source: str, tmp_path: Path) -> None:
    execute(source, GOOD_TABLE + 'CREATE TABLE "in/out" (id int); INSERT INTO "in/out" VALUES (1);')
    task = export(source, tmp_path)
    _assert_only_skipped(task, tmp_path, source, [("public", "in/out", "TABLE_NAME_HAS_SLASH")], {"good": 5})
    assert not (tmp_path / EXPORT_ID / database_of(source) / "public.in").exists()


@pytest.mark.parametrize("char", [",", ";", "{", "}", "(", ")", "\n", "\t", "=", " "])
def test_column_name_with_an_unsupported_character(source: str, tmp_path: Path, char: str) -> None:
    column = sql.Identifier(f"a{char}b").as_string(None)
    execute(source, GOOD_TABLE + f"CREATE TABLE odd (id int, {column} int); INSERT INTO odd VALUES (1, 2);")
    task = export(source, tmp_path)
    _assert_only_skipped(
        task, tmp_path, source, [("public", "odd", "COLUMN_NAME_HAS_UNSUPPORTED_CHARACTERS")], {"good": 5}
    )


def test_column_names_with_other_punctuation_are_exported(source: str, tmp_path: Path) -> None:
    execute(source, 'CREATE TABLE fine (id int, "a-b" int, "a.b" int, "a$b" int, "A""B" int, "ä:b" int)')
    execute(source, "INSERT INTO fine VALUES (1, 2, 3, 4, 5, 6)")
    task = export(source, tmp_path)
    assert task.status == Status.COMPLETE, task.failure_cause
    assert task.warning_message is None
    rows = read_table(tmp_path, EXPORT_ID, database_of(source), "public", "fine").to_pylist()
    assert rows == [{"id": 1, "a-b": 2, "a.b": 3, "a$b": 4, 'A"B': 5, "ä:b": 6}]


def test_unlogged_table(source: str, tmp_path: Path) -> None:
    execute(source, GOOD_TABLE + "CREATE UNLOGGED TABLE scratch (id int); INSERT INTO scratch VALUES (1);")
    task = export(source, tmp_path)
    _assert_only_skipped(task, tmp_path, source, [("public", "scratch", "UNLOGGED_TABLE")], {"good": 5})


def test_temporary_table_of_another_session(source: str, tmp_path: Path) -> None:
    execute(source, GOOD_TABLE)
    with psycopg.connect(source, autocommit=True) as other:
        other.execute("CREATE TEMPORARY TABLE session_scratch (id int); INSERT INTO session_scratch VALUES (1), (2);")
        row = other.execute("SELECT nspname FROM pg_namespace WHERE oid = pg_my_temp_schema()").fetchone()
        assert row is not None
        temp_schema = row[0]
        task = export(source, tmp_path)  # while the session, and its table, still exist
    _assert_only_skipped(task, tmp_path, source, [(temp_schema, "session_scratch", "TEMPORARY_TABLE")], {"good": 5})


@pytest.fixture
def reader(source: str) -> Iterator[str]:
    """A login role that may connect to the test database and use its schema public, and no more."""
    role = f"dbexport_reader_{uuid.uuid4().hex[:8]}"
    ident = sql.Identifier(role)
    with psycopg.connect(source, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE ROLE {} LOGIN").format(ident))
        admin.execute(sql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(sql.Identifier(database_of(source)), ident))
        admin.execute(sql.SQL("GRANT USAGE ON SCHEMA public TO {}").format(ident))
    try:
        yield role
    finally:
        with psycopg.connect(source, autocommit=True) as admin:
            admin.execute(sql.SQL("REASSIGN OWNED BY {} TO CURRENT_USER").format(ident))
            admin.execute(sql.SQL("DROP OWNED BY {}").format(ident))
            admin.execute(sql.SQL("DROP ROLE {}").format(ident))


def test_table_the_export_user_cannot_read(source: str, tmp_path: Path, reader: str) -> None:
    execute(
        source,
        GOOD_TABLE
        + """
        CREATE TABLE secret (id int, v text); INSERT INTO secret VALUES (1, 'hidden');
        CREATE SCHEMA private; CREATE TABLE private.also_secret (id int); INSERT INTO private.also_secret VALUES (1);
        """,
    )
    execute(source, sql.SQL("GRANT SELECT ON good TO {}").format(sql.Identifier(reader)).as_string(None))
    execute(source, sql.SQL("GRANT SELECT ON private.also_secret TO {}").format(sql.Identifier(reader)).as_string(None))
    url = source.replace("postgres@", f"{reader}@", 1)
    task = export(url, tmp_path)
    _assert_only_skipped(
        task,
        tmp_path,
        source,
        [
            ("private", "also_secret", "PERMISSIONS_DO_NOT_EXIST"),  # SELECT, but no USAGE on its schema
            ("public", "secret", "PERMISSIONS_DO_NOT_EXIST"),
        ],
        {"good": 5},
    )
    assert reader in task.source_arn


# Incompressible bytes (md5 digests), stored out of line: `n` kB of them per value.
_BLOB = "(SELECT decode(string_agg(md5(i::text || '{seed}'), ''), 'hex') FROM generate_series(1, {n} * 64) i)"


def _blob(kb: int, seed: str) -> str:
    return _BLOB.format(n=kb, seed=seed)


def _row_size(url: str, table: str, key: int) -> int:
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(
            f"SELECT pg_column_size(id) + coalesce(pg_column_size(a), 0) + coalesce(pg_column_size(b), 0)"
            f" FROM {table} WHERE id = %s",
            [key],
        ).fetchone()
    assert row is not None
    return int(row[0])


WIDE = (
    GOOD_TABLE
    + f"""
    CREATE TABLE wide (id int PRIMARY KEY, a bytea, b bytea);
    CREATE TABLE narrow (id int PRIMARY KEY, a bytea, b bytea);
    INSERT INTO wide VALUES (1, 'small', NULL), (2, {_blob(100, "a")}, {_blob(100, "b")}), (3, NULL, 'x');
    INSERT INTO narrow VALUES (1, {_blob(100, "c")}, NULL), (2, NULL, {_blob(100, "d")});
    """
)


@pytest.mark.parametrize("max_value_bytes", [150_000, 10 * 2**20])
def test_row_over_the_row_size_limit(source: str, tmp_path: Path, max_value_bytes: int) -> None:
    execute(source, WIDE)
    # Rows of 150 kB and more are skipped (the one of 200 kB is); values of 100 kB are fine.
    settings = ExportSettings(max_row_bytes=150_000, max_value_bytes=max_value_bytes)
    task = export(source, tmp_path, settings=settings)
    _assert_only_skipped(
        task, tmp_path, source, [("public", "wide", "ROW_SIZE_EXCEEDS_LIMIT")], {"good": 5, "narrow": 2}
    )
    narrow = read_table(tmp_path, EXPORT_ID, database_of(source), "public", "narrow").to_pylist()
    assert sorted(len(r["a"] or r["b"]) for r in narrow) == [102_400, 102_400]


def test_row_exactly_at_the_row_size_limit_is_skipped(source: str, tmp_path: Path) -> None:
    execute(source, WIDE)
    size = _row_size(source, "wide", 2)
    assert size > 200_000  # stored out of line, uncompressed
    at_limit = export(source, tmp_path / "at", settings=ExportSettings(max_row_bytes=size, max_value_bytes=size))
    _assert_only_skipped(
        at_limit, tmp_path / "at", source, [("public", "wide", "ROW_SIZE_EXCEEDS_LIMIT")], {"good": 5, "narrow": 2}
    )
    below = export(source, tmp_path / "below", settings=ExportSettings(max_row_bytes=size + 1, max_value_bytes=size))
    assert below.status == Status.COMPLETE, below.failure_cause
    assert below.warning_message is None
    assert read_table(tmp_path / "below", EXPORT_ID, database_of(source), "public", "wide").num_rows == 3


def test_value_over_the_value_limit_fails_the_export(source: str, tmp_path: Path) -> None:
    execute(source, GOOD_TABLE + "CREATE TABLE blobs (id int, payload bytea); INSERT INTO blobs VALUES (1, 'a');")
    execute(source, f"INSERT INTO blobs VALUES (2, {_blob(300, 'x')})")
    task = export(source, tmp_path, settings=ExportSettings(max_row_bytes=10 * 2**20, max_value_bytes=200 * 1024))
    assert task.status == Status.FAILED
    assert task.failure_cause is not None
    assert f"{database_of(source)}.public.blobs" in task.failure_cause
    assert "payload" in task.failure_cause
    assert "200 kB" in task.failure_cause
    info = json.loads((tmp_path / EXPORT_ID / f"export_info_{EXPORT_ID}.json").read_text())
    assert info["status"] == "FAILED"
    assert info["failureCause"] == task.failure_cause


def test_every_skip_rule_at_once(source: str, tmp_path: Path) -> None:
    execute(
        source,
        GOOD_TABLE
        + f"""
        CREATE TABLE "a/b" (id int);
        CREATE TABLE "bad column" ("x=y" int);
        CREATE UNLOGGED TABLE fast (id int);
        CREATE TABLE wide (id int PRIMARY KEY, a bytea, b bytea);
        INSERT INTO wide VALUES (1, {_blob(100, "a")}, {_blob(100, "b")});
        CREATE TABLE plain (id int); INSERT INTO plain VALUES (1), (2);
        """,
    )
    with psycopg.connect(source, autocommit=True) as other:
        other.execute("CREATE TEMPORARY TABLE mine (id int)")
        row = other.execute("SELECT nspname FROM pg_namespace WHERE oid = pg_my_temp_schema()").fetchone()
        assert row is not None
        task = export(source, tmp_path, settings=ExportSettings(max_row_bytes=150_000, max_value_bytes=150_000))
    _assert_only_skipped(
        task,
        tmp_path,
        source,
        sorted(
            [
                ("public", "a/b", "TABLE_NAME_HAS_SLASH"),
                ("public", "bad column", "COLUMN_NAME_HAS_UNSUPPORTED_CHARACTERS"),
                ("public", "fast", "UNLOGGED_TABLE"),
                ("public", "wide", "ROW_SIZE_EXCEEDS_LIMIT"),
                (row[0], "mine", "TEMPORARY_TABLE"),
            ]
        ),
        {"good": 5, "plain": 2},
    )
