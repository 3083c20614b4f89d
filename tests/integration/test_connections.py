"""Workers reuse their connections from one partition to the next, and an export lets go of them at the end."""

from __future__ import annotations

import adbc_driver_postgresql.dbapi as adbc
import psycopg
import pytest

from dbexport.models import ExportSettings, Status
from dbexport.sources import postgres
from tests.helpers import database_of, execute, export, read_table, wait_for

TABLES = 12


@pytest.fixture
def many_tables(source: str) -> str:
    execute(
        source,
        "".join(
            f"CREATE TABLE t{i} (id int PRIMARY KEY, name text);"
            f"INSERT INTO t{i} SELECT g, 'row ' || g FROM generate_series(1, {100 * (i + 1)}) g;"
            for i in range(TABLES)
        )
        + "ANALYZE;",
    )
    return source


def backends(url: str) -> int:
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
        ).fetchone()
    assert row is not None
    return int(row[0])


def test_partitions_reuse_connections_and_none_is_left_open(many_tables, tmp_path, monkeypatch):
    opened = []
    connect = adbc.connect

    def counting_connect(*args, **kwargs):  # the real driver, counted
        opened.append(args[0])
        return connect(*args, **kwargs)

    monkeypatch.setattr(adbc, "connect", counting_connect)
    task = export(many_tables, tmp_path, settings=ExportSettings(workers=2))
    assert task.status == Status.COMPLETE, task.failure_cause
    # One connection per worker at most (a worker may start its next partition before its last one's connection
    # is back), never one per partition.
    assert 1 <= len(opened) <= 4 < TABLES
    wait_for(lambda: backends(many_tables) == 0, what="every connection closed")
    for i in range(TABLES):
        table = read_table(tmp_path, "test-export", database_of(many_tables), "public", f"t{i}")
        assert sorted(table.column("id").to_pylist()) == list(range(1, 100 * (i + 1) + 1))


def test_an_idle_connection_the_server_closed_is_replaced(many_tables):
    """The AWS runtime keeps a connection between invocations; the server may have closed it meanwhile."""
    dsn = postgres.database_dsn(many_tables, database_of(many_tables))
    plan = _plan_of(many_tables, "t3")
    with postgres.connections_reused([dsn]):
        first = list(postgres.read_partition(dsn, None, plan, plan.partitions[0]))
        assert backends(many_tables) == 1  # left idle for the next partition
        with psycopg.connect(many_tables, autocommit=True) as admin:
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
        second = list(postgres.read_partition(dsn, None, plan, plan.partitions[0]))
    assert sum(b.num_rows for b in first) == sum(b.num_rows for b in second) == 400
    wait_for(lambda: backends(many_tables) == 0, what="every connection closed")


def _plan_of(url: str, table: str):
    from contextlib import ExitStack

    from dbexport import steps
    from dbexport.validation import parse_export_only

    selection = parse_export_only([f"{database_of(url)}.public.{table}"])
    with ExitStack() as stack:
        ((database, snapshot),) = steps.open_snapshots(url, selection, stack).items()
        (plan,) = steps.plan_database(snapshot, database, selection, ExportSettings()).tables
    return plan
