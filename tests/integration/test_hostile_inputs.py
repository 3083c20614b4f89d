"""Hostile names exported for real, and hostile requests through the command: each ends in a clear refusal or a
correct export (read back with pyarrow: every table in its own folder with its own rows, or skipped with its
reason), never a traceback, a write outside the destination, a leaked secret or mixed data.

The bulk of hostile requests is checked without a server in tests/unit/test_hostile_requests.py; exports are
slow, so the names here are generated in few batches, each one database exported once.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from urllib.parse import quote

import psycopg
import pyarrow.dataset as ds
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from psycopg import sql

from dbexport.models import Status
from dbexport.validation import sanitize_path_element
from tests.helpers import cli, database_of, execute, export, mysql_connect, mysql_execute, with_database

PIECES = [
    "'", '"', "`", "%", "%25", "..", ".", "/", "\\", " ", ";", ",", "=", "(", ")", "--", "/*", "$", "_", "@", ":",
    "?", "#", "DROP TABLE t;", "SELECT", "NULL", "é", "名前", "\u202e", "\u200b", "e\u0301", "İ", "ß",
]  # fmt: skip
_BAD_COLUMN_CHARS = set(",;{}()\n\t= ")
# A real export takes a second or two: a failing batch is reported as found, not shrunk for minutes.
EXPORT_PHASES = [Phase.explicit, Phase.reuse, Phase.generate]


def hostile_names(max_bytes: int, bmp_only: bool = False) -> st.SearchStrategy[str]:
    """Names a database accepts (no NUL; MySQL: no control character or one past the BMP), mostly hostile."""
    # MySQL also refuses control characters in a table's name ("Incorrect table name").
    characters = st.characters(
        max_codepoint=0xFFFF if bmp_only else 0x10FFFF,
        blacklist_categories=("Cs", "Cc") if bmp_only else ("Cs",),
        blacklist_characters="\x00",
    )
    pieces = st.one_of(st.sampled_from(PIECES), st.text(characters, min_size=1, max_size=3))
    names = st.lists(pieces, min_size=1, max_size=5).map("".join)
    return names.filter(lambda n: len(n.encode()) <= max_bytes and n.strip() and n == n.rstrip(" "))


def expected_skip(database: str, schema: str, table: str, column: str) -> str | None:
    """The documented skip rules, in the order they apply (a folder conflict is checked apart)."""
    if "/" in table:
        return "TABLE_NAME_HAS_SLASH"
    if _BAD_COLUMN_CHARS & set(column):
        return "COLUMN_NAME_HAS_UNSUPPORTED_CHARACTERS"
    if "/" in database:
        return "DATABASE_NAME_HAS_SLASH"
    if "/" in schema:
        return "SCHEMA_NAME_HAS_SLASH"
    if sanitize_path_element(database) in (".", ".."):
        return "NAME_IS_NOT_A_FOLDER"
    return None


def check_export(
    out: Path, export_id: str, task, database: str, tables: dict[tuple[str, str], tuple[str, int]]
) -> None:
    """Each table (schema, table) -> (its column, its marker) is exported alone into its folder, or skipped."""
    assert task.status == Status.COMPLETE, task.failure_cause
    # Nothing outside the export's own folder.
    assert {p.name for p in out.iterdir()} == {export_id}
    warning = json.loads(task.warning_message) if task.warning_message else {}
    skipped = {(s["schema"], s["table"]): s["reason"] for s in warning.get("skippedTables", [])}
    folders: dict[str, list[tuple[str, str]]] = {}
    for (schema, table), (column, _) in tables.items():
        reason = expected_skip(database, schema, table, column)
        if reason is not None:
            assert skipped.get((schema, table)) == reason, (schema, table, skipped)
        else:
            folders.setdefault(sanitize_path_element(f"{schema}.{table}"), []).append((schema, table))
    db_folder = sanitize_path_element(database)
    if "/" in db_folder or db_folder in (".", ".."):  # no folder of its own: nothing of it is written anywhere
        assert not folders
        assert all(p.parent == out / export_id for p in (out / export_id).rglob("*")), list(out.rglob("*"))
        return
    root = out / export_id / db_folder
    written = {p.name for p in root.iterdir()} if root.exists() else set()
    assert written == set(folders), (written, folders)
    for folder, owners in folders.items():
        # Of tables whose folders coincide, one is exported; the others say why they are not.
        data = ds.dataset(root / folder, format="parquet").to_table()
        kept = [o for o in owners if o not in skipped]
        assert len(kept) == 1, (folder, owners, skipped)
        assert all(skipped[o] == "TABLE_PATH_CONFLICT" for o in owners if o != kept[0])
        column, marker = tables[kept[0]]
        assert data.column_names == [column, "n"]
        assert sorted(data.to_pylist(), key=lambda r: r["n"]) == [
            {column: f"{kept[0][1]}#{i}", "n": marker * 10 + i} for i in range(3)
        ]
    # Every object is export metadata or lies in an exported table's folder.
    for path in (out / export_id).rglob("*"):
        if path.is_file():
            relative = path.relative_to(out / export_id).parts
            assert len(relative) == 1 or (relative[0] == db_folder and relative[1] in folders), relative


def with_twins(triples: list[tuple[str, str, str]]) -> list[tuple[str, str, str]]:
    """Add names made to collide: the first's cleaned twin (`a b` -> `a_b`), and `a.b`.`c` against `a`.`b.c`."""
    schema, table, column = triples[0]
    cleaned = (sanitize_path_element(schema), sanitize_path_element(table), column)
    extra = [cleaned, (f"{schema}.x", table, column), (schema, f"x.{table}", column)]
    unique: dict[tuple[str, str], tuple[str, str, str]] = {}
    for triple in [*triples, *extra]:
        unique.setdefault(triple[:2], triple)
    return list(unique.values())


# --- PostgreSQL: hostile schemas, tables and columns in one database, exported at once ----------------------


@settings(
    max_examples=8, deadline=None, phases=EXPORT_PHASES, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    triples=st.lists(
        st.tuples(
            hostile_names(40).filter(lambda s: not s.startswith("pg_") and s != "public"),
            hostile_names(20),
            hostile_names(63).filter(lambda c: c != "n"),
        ),
        min_size=6,
        max_size=8,
        unique_by=lambda t: t[:2],
    )
)
def test_postgres_hostile_names_export_each_table_alone_or_skip_it(source, tmp_path, triples) -> None:
    triples = with_twins(triples)
    tables = {(s, t): (c, n) for n, (s, t, c) in enumerate(triples)}
    schemas = sorted({s for s, _, _ in triples})
    with psycopg.connect(source, autocommit=True) as conn:
        try:
            for schema in schemas:
                conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
            for (schema, table), (column, marker) in tables.items():
                name = sql.Identifier(schema, table)
                conn.execute(sql.SQL("CREATE TABLE {} ({} text, n int)").format(name, sql.Identifier(column)))
                # Values as literals: with parameters, psycopg would read a `%` in a name as a placeholder.
                values = sql.SQL(", ").join(
                    sql.SQL("({}, {})").format(sql.Literal(f"{table}#{i}"), sql.Literal(marker * 10 + i))
                    for i in range(3)
                )
                conn.execute(sql.SQL("INSERT INTO {} VALUES {}").format(name, values))
            out, export_id = tmp_path / uuid.uuid4().hex, "hostile-pg"
            out.mkdir()
            task = export(source, out, export_id)
            check_export(out, export_id, task, database_of(source), tables)
        finally:
            for schema in schemas:
                conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


# --- MySQL: hostile tables and columns in one database -------------------------------------------------------


def _mysql_identifier(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


@settings(
    max_examples=8, deadline=None, phases=EXPORT_PHASES, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    pairs=st.lists(
        st.tuples(hostile_names(20, bmp_only=True), hostile_names(30, bmp_only=True)),
        min_size=6,
        max_size=8,
        unique_by=lambda p: p[0],
    ).filter(lambda pairs: all(c.lower() != "n" for _, c in pairs))
)
def test_mysql_hostile_names_export_each_table_alone_or_skip_it(mysql_source, tmp_path, pairs) -> None:
    database = database_of(mysql_source)
    # MySQL has no schemas: a table is `database.table`, its folder `<database>.<table>`.
    triples = [(database, table, column) for table, column in pairs]
    cleaned = sanitize_path_element(pairs[0][0])
    if cleaned not in {t for t, _ in pairs}:
        triples.append((database, cleaned, pairs[0][1]))
    tables = {(d, t): (c, n) for n, (d, t, c) in enumerate(triples)}
    created = []
    try:
        with mysql_connect(mysql_source) as conn, conn.cursor() as cur:
            for (_, table), (column, marker) in tables.items():
                name = f"{_mysql_identifier(database)}.{_mysql_identifier(table)}"
                cur.execute(f"CREATE TABLE {name} ({_mysql_identifier(column)} text, n int)")
                created.append(name)
                rows = [(f"{table}#{i}", marker * 10 + i) for i in range(3)]
                # PyMySQL formats the statement with %: a `%` in a name is written `%%`.
                cur.executemany(f"INSERT INTO {name.replace('%', '%%')} VALUES (%s, %s)", rows)
        out, export_id = tmp_path / uuid.uuid4().hex, "hostile-mysql"
        out.mkdir()
        task = export(mysql_source, out, export_id)
        check_export(out, export_id, task, database, tables)
    finally:
        for name in created:
            mysql_execute(mysql_source, f"DROP TABLE IF EXISTS {name}")


# --- Hostile database names, named in the source URL --------------------------------------------------------

DATABASE_NAMES = ["d b`'\"%..x", "..", "x/../../victim", "é名🦆\u202e", "%2F%25 ;--"]


@pytest.mark.parametrize("name", DATABASE_NAMES)
def test_a_postgres_database_of_a_hostile_name_exports_into_its_own_folder_or_skips(pg_dsn, tmp_path, name) -> None:
    name = f"{name}{uuid.uuid4().hex[:6]}" if name != ".." else name
    with psycopg.connect(pg_dsn, autocommit=True) as admin:
        admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    url = with_database(pg_dsn, quote(name, safe=""))
    try:
        execute(url, "CREATE TABLE t (v text, n int); INSERT INTO t VALUES ('t#0', 0), ('t#1', 1), ('t#2', 2);")
        task = export(url, tmp_path, "hostile-db")
        check_export(tmp_path, "hostile-db", task, name, {("public", "t"): ("v", 0)})
    finally:
        with psycopg.connect(pg_dsn, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.mark.parametrize("name", [n for n in DATABASE_NAMES if n != ".." and "🦆" not in n])
def test_a_mysql_database_of_a_hostile_name_exports_into_its_own_folder_or_skips(mysql_url, tmp_path, name) -> None:
    name = f"{name}{uuid.uuid4().hex[:6]}"
    mysql_execute(mysql_url, f"CREATE DATABASE {_mysql_identifier(name)} CHARACTER SET utf8mb4")
    url = with_database(mysql_url, quote(name, safe=""))
    try:
        table = f"{_mysql_identifier(name)}.t"
        rows = "('t#0', 0), ('t#1', 1), ('t#2', 2)"
        mysql_execute(url, f"CREATE TABLE {table} (v text, n int)", f"INSERT INTO {table} VALUES {rows}")
        task = export(url, tmp_path, "hostile-db")
        check_export(tmp_path, "hostile-db", task, name, {(name, "t"): ("v", 0)})
    finally:
        mysql_execute(mysql_url, f"DROP DATABASE IF EXISTS {_mysql_identifier(name)}")


# --- The command's refusals: one line on stderr, exit 254, no traceback, no secret anywhere -----------------

SECRET = "Zq9p@ss/Xw7"
REQUESTS = [
    ({"--export-task-identifier": "x--y"}, "InvalidParameterValue"),
    ({"--export-task-identifier": "ex port é"}, "InvalidParameterValue"),
    ({"--s3-prefix": "../escape"}, "InvalidParameterValue"),
    ({"--s3-prefix": "a\x01b"}, "InvalidParameterValue"),
    ({"--export-only": "db.`t`"}, "InvalidExportOnly"),
    ({"--export-only": "db.s.t.x"}, "InvalidExportOnly"),
    ({"--source-arn": f"postgresql://u:{SECRET}@127.0.0.1/db"}, "InvalidParameterValue"),
    ({"--source-arn": f"host=127.0.0.1 password={SECRET}"}, "InvalidParameterValue"),
    ({"--source-arn": f"POSTGRESQL://u:{quote(SECRET, safe='')}%zz@127.0.0.1/db"}, "InvalidParameterValue"),
    ({"--source-arn": f"postgresql://127.0.0.1/#?password={quote(SECRET, safe='')}"}, "InvalidParameterValue"),
    ({"--s3-bucket-name": "Bad_Bucket"}, "InvalidS3BucketFault"),
    ({"--workers": "100000"}, "InvalidParameterValue"),
    ({"--workers": "0"}, "InvalidParameterValue"),
    ({"--partition-size-mb": "0"}, "InvalidParameterValue"),
]


@pytest.mark.parametrize(("options", "code"), REQUESTS)
def test_the_command_refuses_a_hostile_request_in_one_line(options, code, tmp_path, state_dir) -> None:
    given = {
        "--export-task-identifier": "hostile",
        "--source-arn": "postgresql://postgres@127.0.0.1:5432/postgres",
        "--s3-bucket-name": tmp_path.as_uri(),
    } | options
    result = cli("start-export-task", *[part for pair in given.items() for part in pair], "--wait")
    assert result.returncode == 254, (result.returncode, result.stdout, result.stderr)
    assert result.stdout == "" and "Traceback" not in result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith(f"An error occurred ({code}) when calling the StartExportTask operation: "), line
    everything = [result.stderr, *(p.read_text(errors="replace") for p in state_dir.rglob("*") if p.is_file())]
    for form in (SECRET, quote(SECRET, safe=""), "Zq9p"):
        assert not any(form in text for text in everything)
    assert list(tmp_path.iterdir()) == []
