"""An export's connections name it and are bounded, and a large value round-trips byte for byte."""

from __future__ import annotations

import os

import psycopg
import pymysql

from dbexport.local import run_export
from dbexport.models import MAX_WORKERS, ExportSettings, StartExportTaskRequest, Status
from dbexport.validation import validate_request
from tests.helpers import database_of, execute, export, mysql_connect, mysql_execute, read_table

# Longer than Parquet keeps statistics for (writer.STATISTICS_MAX_VALUE_BYTES) and than a batch's target
# (8 MB, 2 MB for MySQL); a MySQL statement, escaped, must fit in max_allowed_packet (16 MB by default).
LARGE = 12 * 1024 * 1024
LARGE_MYSQL = 6 * 1024 * 1024


def application_names(url: str) -> set[str]:
    with psycopg.connect(url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT application_name FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        ).fetchall()
    return {row[0] for row in rows}


def test_every_postgresql_connection_of_an_export_names_its_task(source, tmp_path):
    execute(
        source,
        "CREATE TABLE a (id int PRIMARY KEY); INSERT INTO a SELECT generate_series(1, 100);"
        "CREATE TABLE b (id int PRIMARY KEY); INSERT INTO b SELECT generate_series(1, 100);",
    )
    seen: list[set[str]] = []
    task = validate_request(
        StartExportTaskRequest(export_task_identifier="named-task", source_arn=source, s3_bucket_name=tmp_path.as_uri())
    )
    # Called as the export moves: with its snapshot open, then as partitions end (their connections idle).
    finished = run_export(
        task, source, ExportSettings(workers=2), on_update=lambda _task: seen.append(application_names(source))
    )
    assert finished.status == Status.COMPLETE, finished.failure_cause
    assert seen[0] and set().union(*seen) == {"dbexport/named-task"}


def test_mysql_connections_name_the_task_and_are_no_more_than_the_partitions(mysql_source, tmp_path, monkeypatch):
    mysql_execute(
        mysql_source,
        *(f"CREATE TABLE t{i} (id int PRIMARY KEY)" for i in range(3)),
        *(f"INSERT INTO t{i} VALUES (1), (2), (3)" for i in range(3)),
    )
    opened: list[str | None] = []
    connect = pymysql.connect

    def counting_connect(*args, **kwargs):  # the real driver, counted
        opened.append(kwargs.get("program_name"))
        return connect(*args, **kwargs)

    monkeypatch.setattr(pymysql, "connect", counting_connect)
    task = export(mysql_source, tmp_path, "many-workers", ExportSettings(workers=MAX_WORKERS))
    assert task.status == Status.COMPLETE, task.failure_cause
    assert set(opened) == {"dbexport/many-workers"}
    # Listing the databases, the coordinator, the lock, and one worker per partition (three tables of one each).
    assert len(opened) <= 3 + 3


def test_a_large_postgresql_value_round_trips_byte_for_byte(source, tmp_path):
    text = os.urandom(LARGE // 2).hex()
    data = os.urandom(LARGE)
    with psycopg.connect(source, autocommit=True) as conn:
        conn.execute("CREATE TABLE big (id int PRIMARY KEY, t text, b bytea)")
        conn.execute("INSERT INTO big VALUES (1, 'small', '\\x00'), (2, %s, %s), (3, NULL, NULL)", [text, data])
    task = export(source, tmp_path, "large-value")
    assert task.status == Status.COMPLETE, task.failure_cause
    table = read_table(tmp_path, "large-value", database_of(source), "public", "big").sort_by("id")
    assert table.column("t").to_pylist() == ["small", text, None]
    assert table.column("b").to_pylist() == [b"\x00", data, None]


def test_a_large_mysql_value_round_trips_byte_for_byte(mysql_source, tmp_path):
    data = os.urandom(LARGE_MYSQL)
    mysql_execute(mysql_source, "CREATE TABLE big (id int PRIMARY KEY, b LONGBLOB)")
    with mysql_connect(mysql_source) as conn, conn.cursor() as cur:
        cur.execute("INSERT INTO big VALUES (1, 'small'), (2, %s), (3, NULL)", [data])
        conn.commit()
    task = export(mysql_source, tmp_path, "large-blob")
    assert task.status == Status.COMPLETE, task.failure_cause
    db = database_of(mysql_source)
    assert read_table(tmp_path, "large-blob", db, db, "big").sort_by("id").column("b").to_pylist() == [
        b"small",
        data,
        None,
    ]
