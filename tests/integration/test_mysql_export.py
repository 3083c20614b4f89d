"""MySQL/MariaDB exports end to end against the real server: layout, selection, skip rules, names,
partitions, the synchronized snapshot, S3 and the command line."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
import pyarrow.dataset as ds
import pytest

from dbexport.errors import InvalidExportOnly
from dbexport.local import run_export
from dbexport.models import ExportSettings, StartExportTaskRequest, Status
from dbexport.sources.mysql import snapshot
from dbexport.validation import validate_request
from tests.helpers import (
    WritesDuringExport,
    database_of,
    export,
    mysql_connect,
    mysql_execute,
    mysql_query,
    read_table,
    with_database,
)

SMALL_PARTITIONS = ExportSettings(partition_target_bytes=128 * 1024, workers=2)


def fill(url: str, statement: str, rows: list[tuple[Any, ...]]) -> None:
    """Insert rows in a few multi-row INSERTs (pymysql makes one only when every value is a %s)."""
    with mysql_connect(url) as conn, conn.cursor() as cur:
        for start in range(0, len(rows), 5000):
            cur.executemany(statement, rows[start : start + 5000])
        cur.execute("ANALYZE TABLE " + statement.split()[2])


def tables_info(out: Path, export_id: str = "test-export") -> dict[str, dict]:
    entries = [
        e
        for f in (out / export_id).glob("export_tables_info_*.json")
        for e in json.loads(f.read_text())["perTableStatus"]
    ]
    return {e["target"]: e for e in entries}


def partition_folders(out: Path, db: str, table: str, export_id: str = "test-export") -> list[str]:
    return sorted(p.name for p in (out / export_id / db / f"{db}.{table}").iterdir())


# --- layout and metadata ----------------------------------------------------------------------------------


def test_a_database_exports_in_the_anchors_mysql_layout(mysql_source, tmp_path):
    mysql_execute(
        mysql_source,
        "CREATE TABLE items (id int PRIMARY KEY, name varchar(20))",
        "INSERT INTO items VALUES (1, 'a'), (2, NULL)",
        "CREATE TABLE empty_one (id int)",
    )
    task = export(mysql_source, tmp_path)
    assert task.status == Status.COMPLETE, task.failure_cause
    assert task.warning_message is None
    db = database_of(mysql_source)
    root = tmp_path / "test-export"
    assert (root / "export_info_test-export.json").exists()
    files = sorted(str(p.relative_to(root / db)) for p in (root / db).rglob("*") if p.is_file())
    assert [f.split("/")[:2] + [f.split("/")[-1].split("-")[0]] for f in files] == [
        [f"{db}.empty_one", "1", "_SUCCESS"],
        [f"{db}.empty_one", "1", "part"],
        [f"{db}.items", "1", "_SUCCESS"],
        [f"{db}.items", "1", "part"],
    ]
    assert read_table(tmp_path, "test-export", db, db, "items").sort_by("id").to_pylist() == [
        {"id": 1, "name": "a"},
        {"id": 2, "name": None},
    ]
    info = tables_info(tmp_path)
    assert info[f"{db}.items"]["tableStatistics"]["exportedRowCount"] == 2
    assert info[f"{db}.items"]["tableStatistics"]["sourceRowCount"] == 2
    assert info[f"{db}.empty_one"]["status"] == "COMPLETE"


def test_the_command_line_exports_a_mysql_server_to_a_directory(mysql_source, tmp_path):
    mysql_execute(mysql_source, "CREATE TABLE t (id int PRIMARY KEY)", "INSERT INTO t VALUES (1), (2), (3)")
    db = database_of(mysql_source)
    result = subprocess.run(
        [sys.executable, "-m", "dbexport.cli", "start-export-task", "--export-task-identifier", "cli-mysql",
         "--source-arn", mysql_source, "--s3-bucket-name", tmp_path.as_uri(), "--export-only", db, "--wait"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["Status"] == "COMPLETE"
    assert sorted(read_table(tmp_path, "cli-mysql", db, db, "t").column("id").to_pylist()) == [1, 2, 3]


def test_a_mysql_export_to_s3_has_the_anchor_layout(mysql_source, s3_endpoint, bucket):
    mysql_execute(mysql_source, "CREATE TABLE t (id int PRIMARY KEY, v varchar(10))")
    fill(mysql_source, "INSERT INTO t VALUES (%s, %s)", [(i, f"v{i}") for i in range(5000)])
    request = StartExportTaskRequest(
        export_task_identifier="s3-mysql", source_arn=mysql_source, s3_bucket_name=bucket, s3_prefix="exports"
    )
    task = run_export(validate_request(request), mysql_source, endpoint_url=s3_endpoint)
    assert task.status == Status.COMPLETE, task.failure_cause
    db = database_of(mysql_source)
    keys = [o["Key"] for o in boto3.client("s3", endpoint_url=s3_endpoint).list_objects_v2(Bucket=bucket)["Contents"]]
    assert "exports/s3-mysql/export_info_s3-mysql.json" in keys
    assert f"exports/s3-mysql/{db}/{db}.t/1/_SUCCESS" in keys
    assert any(k.startswith(f"exports/s3-mysql/{db}/{db}.t/1/part-00000-") for k in keys)


def test_an_unreachable_server_fails_the_task_naming_it(tmp_path):
    url = "mysql://root:secret@127.0.0.1:1/nothing"
    task = run_export(
        validate_request(
            StartExportTaskRequest(export_task_identifier="down", source_arn=url, s3_bucket_name=tmp_path.as_uri())
        ),
        url,
    )
    assert task.status == Status.FAILED
    assert task.failure_cause is not None
    assert task.failure_cause.startswith("Cannot connect to the MySQL server at 127.0.0.1:1/nothing: ")
    assert "secret" not in task.failure_cause and "secret" not in task.source_arn


# --- selection --------------------------------------------------------------------------------------------


@pytest.fixture
def two_tables(mysql_source: str) -> str:
    mysql_execute(
        mysql_source,
        "CREATE TABLE a (id int PRIMARY KEY)",
        "INSERT INTO a VALUES (1)",
        "CREATE TABLE b (id int PRIMARY KEY)",
        "INSERT INTO b VALUES (2)",
        "CREATE VIEW v AS SELECT * FROM a",
    )
    return mysql_source


def test_export_only_names_a_database_or_a_table(two_tables, tmp_path):
    db = database_of(two_tables)
    server = with_database(two_tables, "")
    task = export(server, tmp_path / "table", export_only=[f"{db}.b"])
    assert task.status == Status.COMPLETE, task.failure_cause
    assert list(tables_info(tmp_path / "table")) == [f"{db}.b"]

    task = export(server, tmp_path / "db", export_only=[db])
    assert task.status == Status.COMPLETE, task.failure_cause
    assert sorted(tables_info(tmp_path / "db")) == [f"{db}.a", f"{db}.b"]  # the view is not a table


def test_a_view_named_in_export_only_is_a_skipped_objective(two_tables, tmp_path):
    db = database_of(two_tables)
    task = export(two_tables, tmp_path, export_only=[f"{db}.a", f"{db}.v"])
    assert task.status == Status.COMPLETE, task.failure_cause
    warning = json.loads(task.warning_message or "{}")
    assert warning["skippedObjectives"] == [
        {"objective": f"{db}.v", "reason": "It is a view; only tables are exported."}
    ]
    assert list(tables_info(tmp_path)) == [f"{db}.a"]


def test_a_schema_form_is_invalid_for_mysql_and_a_missing_table_fails_the_task(two_tables, tmp_path):
    db = database_of(two_tables)
    with pytest.raises(InvalidExportOnly, match="database or database.table.*MySQL has no schemas"):
        export(two_tables, tmp_path, export_only=[f"{db}.{db}.a"])
    task = export(two_tables, tmp_path, export_only=[f"{db}.nope"])
    assert task.status == Status.FAILED
    assert task.failure_cause == (
        f"ExportOnly names {db}.nope, which the source cluster does not have. "
        "Check the names (they are case-sensitive) and retry the export."
    )


# --- skip rules and names ---------------------------------------------------------------------------------


def test_the_anchors_skip_rules_and_names_that_look_like_sql(mysql_source, tmp_path):
    mysql_execute(
        mysql_source,
        "CREATE TABLE `bad col` (`a b` int, ok int)",
        "CREATE TABLE `paren` (`f(x)` int)",
        "CREATE TABLE `a/b` (id int)",
        # Quotes, backticks, semicolons and SQL in names are data: they export under their own names.
        'CREATE TABLE `x``; DROP TABLE t; --` (`it\'s` int PRIMARY KEY, `sel``ect` varchar(5), `"q"` int)',
        "INSERT INTO `x``; DROP TABLE t; --` VALUES (1, 'one', 7), (2, NULL, NULL)",
        "CREATE TABLE t (id int)",
        # pymysql formats statements with %: a % in a name stays a %.
        "CREATE TABLE `50%_off%s` (`pct%` int PRIMARY KEY, `%x%s` varchar(3))",
        "INSERT INTO `50%_off%s` VALUES (1, '%s'), (2, NULL)",
    )
    task = export(mysql_source, tmp_path, settings=SMALL_PARTITIONS)
    assert task.status == Status.COMPLETE, task.failure_cause
    db = database_of(mysql_source)
    skipped = json.loads(task.warning_message or "{}")["skippedTables"]
    assert sorted((s["table"], s["reason"]) for s in skipped) == [
        ("a/b", "TABLE_NAME_HAS_SLASH"),
        ("bad col", "COLUMN_NAME_HAS_UNSUPPORTED_CHARACTERS"),
        ("paren", "COLUMN_NAME_HAS_UNSUPPORTED_CHARACTERS"),
    ]
    info = tables_info(tmp_path)
    assert info[f"{db}.a/b"]["status"] == "SKIPPED"
    odd = read_table(tmp_path, "test-export", db, db, "x`; DROP TABLE t; --").sort_by("it's")
    assert odd.to_pylist() == [{"it's": 1, "sel`ect": "one", '"q"': 7}, {"it's": 2, "sel`ect": None, '"q"': None}]
    # The folder cleans the name as the anchor does.
    assert (tmp_path / "test-export" / db / f"{db}.x_;_DROP_TABLE_t;_--").is_dir()
    assert mysql_query(mysql_source, "SELECT COUNT(*) FROM t") == [(0,)]  # still there
    percent = read_table(tmp_path, "test-export", db, db, "50%_off%s").sort_by("pct%")
    assert percent.to_pylist() == [{"pct%": 1, "%x%s": "%s"}, {"pct%": 2, "%x%s": None}]


@pytest.fixture
def limited_user(mysql_source: str, mysql_url: str):
    """A user who may read table `readable` only and write `writable`, without RELOAD; dropped afterwards."""
    name = f"dbx_{uuid.uuid4().hex[:8]}"
    db = database_of(mysql_source)
    mysql_execute(
        mysql_source,
        "CREATE TABLE readable (id int PRIMARY KEY)",
        "INSERT INTO readable VALUES (1), (2)",
        "CREATE TABLE writable (id int PRIMARY KEY)",
        f"CREATE USER '{name}'@'%' IDENTIFIED BY 'pw'",
        f"GRANT SELECT ON `{db}`.`readable` TO '{name}'@'%'",
        f"GRANT INSERT ON `{db}`.`writable` TO '{name}'@'%'",
    )
    host = mysql_url.split("@", 1)[1].split("/", 1)[0]
    try:
        yield f"mysql://{name}:pw@{host}/{db}"
    finally:
        mysql_execute(mysql_url, f"DROP USER IF EXISTS '{name}'@'%'")


def test_a_table_the_user_cannot_read_is_skipped_and_snapshots_without_reload_are_said_unsynchronized(
    limited_user, tmp_path
):
    task = export(limited_user, tmp_path, settings=SMALL_PARTITIONS)
    assert task.status == Status.COMPLETE, task.failure_cause
    db = database_of(limited_user)
    warning = json.loads(task.warning_message or "{}")
    assert [(s["table"], s["reason"]) for s in warning["skippedTables"]] == [("writable", "PERMISSIONS_DO_NOT_EXIST")]
    (general,) = warning["general"]
    assert "FLUSH TABLES WITH READ LOCK" in general["reason"] and "RELOAD" in general["reason"]
    assert sorted(read_table(tmp_path, "test-export", db, db, "readable").column("id").to_pylist()) == [1, 2]


# --- partitions -------------------------------------------------------------------------------------------


def export_rows(url: str, out: Path, create: str, rows: list[tuple[Any, ...]], *keys: str) -> tuple[list[str], Counter]:
    """Create table t, fill it, export it in small partitions: its partition folders, and its exported `keys`."""
    mysql_execute(url, create)
    if rows:
        fill(url, f"INSERT INTO t VALUES ({', '.join(['%s'] * len(rows[0]))})", rows)
    task = export(url, out, settings=SMALL_PARTITIONS)
    assert task.status == Status.COMPLETE, task.failure_cause
    db = database_of(url)
    exported = read_table(out, "test-export", db, db, "t")
    return partition_folders(out, db, "t"), Counter(zip(*(exported.column(k).to_pylist() for k in keys), strict=True))


def test_integer_keys_split_into_ranges_that_lose_and_repeat_no_row(mysql_source, tmp_path):
    ids = [*range(-10000, 0), *range(1, 20001)]  # negative keys, dense: even ranges of the values
    create = "CREATE TABLE t (id bigint PRIMARY KEY, pad char(40))"
    folders, exported = export_rows(mysql_source, tmp_path, create, [(i, "x" * 40) for i in ids], "id")
    assert len(folders) > 2
    assert exported == Counter((i,) for i in ids)
    assert max(rows_per_partition(tmp_path, database_of(mysql_source)).values()) < len(ids) / 2


def test_skewed_integer_keys_split_at_sampled_keys(mysql_source, tmp_path):
    # A hole, and outliers at both ends of bigint's range: even ranges of the values would hold nearly every row
    # in one or two partitions.
    ids = [*range(-20000, -10000), *range(10000, 20000), -(2**63), 2**63 - 1]
    create = "CREATE TABLE t (id bigint PRIMARY KEY, pad char(40))"
    folders, exported = export_rows(mysql_source, tmp_path, create, [(i, "x" * 40) for i in ids], "id")
    assert len(folders) > 2
    assert exported == Counter((i,) for i in ids)
    assert max(rows_per_partition(tmp_path, database_of(mysql_source)).values()) < len(ids) / 2


def rows_per_partition(out: Path, db: str) -> dict[str, int]:
    folder = out / "test-export" / db / f"{db}.t"
    return {p.name: ds.dataset(p, format="parquet").count_rows() for p in folder.iterdir()}


def test_the_first_integer_column_of_a_composite_key_splits_it(mysql_source, tmp_path):
    rows = [(i // 10, i % 10, "y" * 30) for i in range(30000)]
    create = "CREATE TABLE t (a int, b int, pad varchar(40), PRIMARY KEY (a, b))"
    folders, exported = export_rows(mysql_source, tmp_path, create, rows, "a", "b")
    assert len(folders) > 1
    assert exported == Counter((a, b) for a, b, _ in rows)
    assert max(rows_per_partition(tmp_path, database_of(mysql_source)).values()) < len(rows) / 2


def test_text_first_composite_keys_split_by_key_tuples_in_the_columns_collation(mysql_source, tmp_path):
    # Case-insensitive collation, accents, trailing spaces, multibyte text: the server's order decides.
    names = ["Zebra", "apple", "Äpfel", "ápple ", "naïve", "日本", "b", "😀", "", "a b"]
    rows = [(f"{names[i % len(names)]}{i // len(names)}", i % 3, "z" * 30) for i in range(30000)]
    create = (
        "CREATE TABLE t (name varchar(40) COLLATE utf8mb4_general_ci, n int, pad varchar(40), PRIMARY KEY (name, n))"
    )
    folders, exported = export_rows(mysql_source, tmp_path, create, rows, "name", "n")
    assert len(folders) > 1
    assert exported == Counter((name, n) for name, n, _ in rows)
    assert max(rows_per_partition(tmp_path, database_of(mysql_source)).values()) < len(rows) / 2


def test_a_table_without_a_usable_key_is_one_partition_with_its_nulls(mysql_source, tmp_path):
    # A unique index over a nullable column repeats NULLs: it can't split the table.
    rows = [(None if i % 5 == 0 else i, "w" * 30) for i in range(20000)]
    create = "CREATE TABLE t (u int NULL UNIQUE, pad varchar(40))"
    folders, exported = export_rows(mysql_source, tmp_path, create, rows, "u")
    assert folders == ["1"]
    assert exported == Counter((u,) for u, _ in rows)


# --- consistency ------------------------------------------------------------------------------------------


def test_rows_written_during_the_export_never_appear(mysql_source, tmp_path):
    mysql_execute(
        mysql_source,
        "CREATE TABLE accounts (id bigint PRIMARY KEY, balance int NOT NULL, pad char(40))",
        "CREATE TABLE ledger (entry varchar(36) PRIMARY KEY, amount int, pad char(40))",
    )
    fill(mysql_source, "INSERT INTO accounts VALUES (%s, %s, %s)", [(i, 100, "p") for i in range(1, 30001)])
    fill(mysql_source, "INSERT INTO ledger VALUES (%s, %s, %s)", [(str(uuid.uuid4()), 1, "p") for _ in range(30000)])

    def write(writes: int) -> None:
        mysql_execute(
            mysql_source,
            f"INSERT INTO accounts VALUES ({100000 + writes}, 1, 'p'), ({-writes}, 1, 'p')",
            "UPDATE accounts SET balance = -1 WHERE id % 7 = 0",
            "DELETE FROM accounts WHERE id % 11 = 0",
            f"INSERT INTO ledger VALUES ('{uuid.uuid4()}', 2, 'p'), ('{uuid.uuid4()}', 2, 'p')",
            "DELETE FROM ledger WHERE entry < '4'",
        )

    request = StartExportTaskRequest(
        export_task_identifier="consistent", source_arn=mysql_source, s3_bucket_name=tmp_path.as_uri()
    )
    writes = WritesDuringExport(write)
    task = run_export(validate_request(request), mysql_source, SMALL_PARTITIONS, on_update=writes)

    assert task.status == Status.COMPLETE, task.failure_cause
    assert task.warning_message is None  # root may lock: the workers' snapshots are synchronized
    assert writes.count >= 2, "the test must write while partitions are still being exported"
    db = database_of(mysql_source)
    accounts = read_table(tmp_path, "consistent", db, db, "accounts")
    assert sorted(accounts.column("id").to_pylist()) == list(range(1, 30001))
    assert set(accounts.column("balance").to_pylist()) == {100}
    ledger = read_table(tmp_path, "consistent", db, db, "ledger")
    assert ledger.num_rows == 30000
    assert set(ledger.column("amount").to_pylist()) == {1}
    # Both tables were read in several partitions, by both workers.
    assert len(partition_folders(tmp_path, db, "accounts", "consistent")) > 1
    assert len(partition_folders(tmp_path, db, "ledger", "consistent")) > 1
    assert mysql_query(mysql_source, "SELECT COUNT(*) > 0 FROM accounts WHERE balance = -1") == [(1,)]


def test_a_lock_that_would_stall_the_source_is_given_up_and_the_task_says_so(mysql_source, tmp_path, monkeypatch):
    monkeypatch.setattr(snapshot, "LOCK_WAIT_SECONDS", 1)
    mysql_execute(mysql_source, "CREATE TABLE t (id int PRIMARY KEY)", "INSERT INTO t VALUES (1), (2)")
    # Another session's long write: FLUSH TABLES WITH READ LOCK would wait for it, holding every write back.
    with mysql_connect(mysql_source) as holder, ThreadPoolExecutor(1) as pool:
        running = pool.submit(lambda: holder.cursor().execute("UPDATE t SET id = id + SLEEP(2)"))
        time.sleep(0.5)
        task = export(mysql_source, tmp_path, settings=SMALL_PARTITIONS)
        assert not running.done(), "the export must overlap the long query"
        running.result()
    assert task.status == Status.COMPLETE, task.failure_cause
    (general,) = json.loads(task.warning_message or "{}")["general"]
    assert general["reason"].startswith("FLUSH TABLES WITH READ LOCK waited more than 1 s")
    db = database_of(mysql_source)
    assert sorted(read_table(tmp_path, "test-export", db, db, "t").column("id").to_pylist()) == [1, 2]


def test_datetime_first_keys_split_by_key_tuples(mysql_source, tmp_path):
    # Time series keyed by (when, sensor): bounds travel as MySQL's text of the datetime, microseconds included.
    rows = [(f"2024-01-01 00:00:{i // 1000 % 60:02d}.{i % 1000:06d}", i // 60000, "s" * 30) for i in range(30000)]
    create = "CREATE TABLE t (at datetime(6), sensor int, pad varchar(40), PRIMARY KEY (at, sensor))"
    folders, exported = export_rows(mysql_source, tmp_path, create, rows, "at", "sensor")
    assert len(folders) > 1
    assert exported == Counter((datetime.fromisoformat(at), sensor) for at, sensor, _ in rows)
    assert max(rows_per_partition(tmp_path, database_of(mysql_source)).values()) < len(rows) / 2


def test_a_key_column_named_like_the_row_numbering_still_splits(mysql_source, tmp_path):
    """Key boundaries are numbered by the server under a name of their own, never a key column's."""
    rows = [(f"k{i:05d}", i % 7, "p" * 30) for i in range(30000)]
    create = (
        "CREATE TABLE t (DBEXPORT_ROW varchar(20), dbexport_row_ int, pad varchar(40),"
        " PRIMARY KEY (DBEXPORT_ROW, dbexport_row_))"
    )
    folders, exported = export_rows(mysql_source, tmp_path, create, rows, "DBEXPORT_ROW", "dbexport_row_")
    assert len(folders) > 1
    assert exported == Counter((key, n) for key, n, _ in rows)
    assert max(rows_per_partition(tmp_path, database_of(mysql_source)).values()) < len(rows) / 2


@pytest.fixture
def odd_server_defaults(mysql_url: str) -> Iterator[None]:
    """Server defaults that would change values if a session inherited them; restored afterwards."""
    ((zone, mode),) = mysql_query(mysql_url, "SELECT @@GLOBAL.time_zone, @@GLOBAL.sql_mode")
    mysql_execute(
        mysql_url,
        "SET GLOBAL time_zone = '+09:00'",
        "SET GLOBAL sql_mode = 'PAD_CHAR_TO_FULL_LENGTH,NO_BACKSLASH_ESCAPES,ANSI_QUOTES'",
    )
    try:
        yield
    finally:
        mysql_execute(mysql_url, f"SET GLOBAL time_zone = '{zone}'", f"SET GLOBAL sql_mode = '{mode}'")


def test_values_never_depend_on_the_servers_defaults(mysql_source, odd_server_defaults, tmp_path):
    # Backslashes and quotes in text keys: the bounds of key-tuple partitions are parameters.
    rows = [(f"k\\'{i:05d}\"", "ab", "2024-06-01 12:00:00") for i in range(20000)]
    with mysql_connect(mysql_source) as conn, conn.cursor() as cur:
        cur.execute("SET SESSION sql_mode = '', time_zone = '+00:00'")
        cur.execute("CREATE TABLE t (k varchar(20) PRIMARY KEY, c char(5), ts timestamp NULL)")
        cur.executemany("INSERT INTO t VALUES (%s, %s, %s)", rows)
        cur.execute("ANALYZE TABLE t")
    folders, exported = export_rows(mysql_source, tmp_path, "DO 0", [], "k", "c", "ts")
    assert len(folders) > 1
    utc = datetime(2024, 6, 1, 12, tzinfo=UTC)
    assert exported == Counter((k, "ab", utc) for k, _, _ in rows)  # char(5) unpadded, the timestamp in UTC
