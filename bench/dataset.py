"""The benchmark's dataset: a TPC-H-like `lineitem` and a uuid-keyed `wide` table, generated in SQL.

Every value derives from md5 of the row number (no random()), so a given scale always yields the same
rows. A database that already holds the expected row counts (and this generator's version) is reused.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass

import psycopg
from psycopg import sql

SERVER = "postgresql://postgres@127.0.0.1:5432"
# Bump when the generated rows change, so older databases are regenerated.
VERSION = "dbexport-bench dataset v1"


@dataclass(frozen=True)
class Table:
    name: str
    rows_at_scale_1: int
    # A numeric column ConnectorX can split on; None when the key is not numeric (uuid).
    partition_on: str | None

    def rows(self, scale: float) -> int:
        return max(1, round(self.rows_at_scale_1 * scale))


LINEITEM = Table("lineitem", 6_000_000, "l_orderkey")
WIDE = Table("wide", 1_000_000, None)
TABLES = {t.name: t for t in (LINEITEM, WIDE)}


def database_name(scale: float) -> str:
    """`dbexport_bench_0_05` for scale 0.05: letters, digits and `_` only (dbexport's --export-only rule)."""
    return "dbexport_bench_" + f"{round(scale, 6):g}".replace(".", "_")


def dsn(database: str) -> str:
    return f"{SERVER}/{database}"


# Four independent 28-bit integers (a, b, c, d) and one 16-bit one (e) from md5 of the row number.
_HASHES = """
    SELECT i, ('x' || substr(h, 1, 7))::bit(28)::int AS a, ('x' || substr(h, 8, 7))::bit(28)::int AS b,
           ('x' || substr(h, 15, 7))::bit(28)::int AS c, ('x' || substr(h, 22, 7))::bit(28)::int AS d,
           ('x' || substr(h, 29, 4))::bit(16)::int AS e, h
    FROM (SELECT i, md5(i::text) AS h FROM generate_series(1, {rows}) AS i) AS s
"""

_WORDS = """ARRAY['furiously', 'carefully', 'blithely', 'quickly', 'slyly', 'final', 'special', 'regular',
    'express', 'ironic', 'pending', 'bold', 'even', 'silent', 'unusual', 'requests', 'deposits', 'packages',
    'accounts', 'instructions', 'theodolites', 'pinto', 'beans', 'foxes', 'ideas', 'asymptotes', 'dependencies',
    'platelets', 'sleep', 'wake', 'haggle', 'nag', 'cajole', 'boost', 'detect', 'integrate', 'among', 'above',
    'against', 'according']"""

LINEITEM_DDL = """
CREATE TABLE lineitem (
    l_orderkey bigint NOT NULL,
    l_partkey int NOT NULL,
    l_suppkey int NOT NULL,
    l_linenumber int NOT NULL,
    l_quantity numeric(15,2) NOT NULL,
    l_extendedprice numeric(15,2) NOT NULL,
    l_discount numeric(15,2) NOT NULL,
    l_tax numeric(15,2) NOT NULL,
    l_returnflag char(1) NOT NULL,
    l_linestatus char(1) NOT NULL,
    l_shipdate date NOT NULL,
    l_commitdate date NOT NULL,
    l_receiptdate date NOT NULL,
    l_shipinstruct char(25) NOT NULL,
    l_shipmode char(10) NOT NULL,
    l_comment varchar(44) NOT NULL
)"""

# Four lines per order; prices, flags and dates follow TPC-H's formulas (current date 1995-06-17).
LINEITEM_INSERT = f"""
INSERT INTO lineitem
SELECT (i - 1) / 4 + 1, partkey, 1 + b % {{suppliers}}, (i - 1) % 4 + 1,
       quantity, quantity * (90000 + (partkey / 10) % 20001 + 100 * (partkey % 1000)) / 100,
       (d % 11) / 100.0, (d / 11 % 9) / 100.0,
       CASE WHEN receiptdate <= date '1995-06-17' THEN (CASE WHEN c % 2 = 0 THEN 'R' ELSE 'A' END) ELSE 'N' END,
       CASE WHEN shipdate > date '1995-06-17' THEN 'O' ELSE 'F' END,
       shipdate, shipdate + (c / 64 % 61 - 30), receiptdate,
       (ARRAY['DELIVER IN PERSON', 'COLLECT COD', 'NONE', 'TAKE BACK RETURN'])[1 + a / 5 % 4],
       (ARRAY['REG AIR', 'AIR', 'RAIL', 'SHIP', 'TRUCK', 'MAIL', 'FOB'])[1 + b / 7 % 7],
       left(w[1 + a / 64 % 40] || ' ' || w[1 + b / 64 % 40] || ' ' || w[1 + c / 2048 % 40] || ' '
            || w[1 + d / 64 % 40] || ' ' || w[1 + e % 40] || ' ' || w[1 + a / 4096 % 40], 10 + e / 64 % 35)
FROM (
    SELECT *, 1 + a % {{parts}} AS partkey, (1 + c % 50)::numeric(15,2) AS quantity,
           date '1992-01-02' + b / 3 % 2526 AS shipdate,
           date '1992-01-02' + b / 3 % 2526 + 1 + d / 99 % 30 AS receiptdate,
           {_WORDS} AS w
    FROM ({_HASHES}) AS hashes
) AS x
"""

WIDE_DDL = """
CREATE TABLE wide (
    id uuid NOT NULL,
    name text NOT NULL,
    body text,
    attrs jsonb,
    created_at timestamptz NOT NULL,
    payload bytea,
    active boolean,
    score double precision,
    counts int[]
)"""

# Random-looking uuids (md5 of the row number), so the key's order is not the heap's order; some NULLs,
# and one body in a thousand long enough to be TOASTed.
WIDE_INSERT = f"""
INSERT INTO wide
SELECT h::uuid,
       'user-' || i || '-' || substr(h2, 1, 4 + a % 12),
       CASE WHEN i % 1000 = 0 THEN repeat(h2 || w[1 + b % 40], 100)
            WHEN i % 20 = 0 THEN NULL
            ELSE left(w[1 + a / 64 % 40] || ' ' || w[1 + b / 64 % 40] || ' ' || h2 || ' ' || w[1 + c / 64 % 40]
                      || ' ' || w[1 + d / 64 % 40] || ' ' || repeat(w[1 + e % 40] || ' ', 1 + e % 20), 20 + c % 300)
       END,
       CASE WHEN i % 50 = 0 THEN NULL ELSE jsonb_build_object(
           'plan', (ARRAY['free', 'pro', 'team', 'enterprise'])[1 + a % 4],
           'visits', b % 10000,
           'ratio', round((c % 1000) / 1000.0, 3),
           'tags', jsonb_build_array(w[1 + d % 40], w[1 + e % 40]),
           'ref', CASE WHEN d % 5 = 0 THEN NULL ELSE substr(h2, 1, 8) END) END,
       timestamptz '2020-01-01 00:00:00+00' + make_interval(secs => a % 157680000)
           + (b % 1000000) * interval '1 microsecond',
       CASE WHEN i % 10 = 0 THEN NULL ELSE decode(h || h2, 'hex') END,
       CASE WHEN i % 100 = 0 THEN NULL ELSE c % 3 <> 0 END,
       CASE WHEN e % 50 = 0 THEN NULL ELSE d::float8 / 268435456 * 1000 - 500 END,
       (ARRAY[a % 100, b % 1000, c % 10000, d % 100000, e])[1:e % 6]
FROM (SELECT *, md5('n' || i) AS h2, {_WORDS} AS w FROM ({_HASHES}) AS hashes) AS x
"""


def _load(conn: psycopg.Connection, table: Table, scale: float) -> None:
    rows = table.rows(scale)
    name = sql.Identifier(table.name)
    conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(name))
    if table is LINEITEM:
        conn.execute(LINEITEM_DDL)
        # TPC-H's part and supplier counts: 200,000 and 10,000 per scale factor.
        insert = sql.SQL(LINEITEM_INSERT).format(
            rows=rows, parts=max(1, round(200_000 * scale)), suppliers=max(1, round(10_000 * scale))
        )
        primary_key = "ALTER TABLE lineitem ADD PRIMARY KEY (l_orderkey, l_linenumber)"
    else:
        conn.execute(WIDE_DDL)
        insert = sql.SQL(WIDE_INSERT).format(rows=rows)
        primary_key = "ALTER TABLE wide ADD PRIMARY KEY (id)"
    conn.execute(insert)
    conn.execute(primary_key)
    conn.execute(sql.SQL("COMMENT ON TABLE {} IS {}").format(name, sql.Literal(f"{VERSION}, {rows} rows")))
    conn.execute(sql.SQL("VACUUM ANALYZE {}").format(name))


def _is_loaded(conn: psycopg.Connection, table: Table, scale: float) -> bool:
    comment = conn.execute("SELECT obj_description(to_regclass(%s), 'pg_class')", [table.name]).fetchone()
    if comment is None or comment[0] != f"{VERSION}, {table.rows(scale)} rows":
        return False
    count = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table.name))).fetchone()
    return count is not None and count[0] == table.rows(scale)


def ensure(scale: float, tables: list[Table]) -> str:
    """Create (or reuse) the database for this scale with these tables loaded; return its name."""
    database = database_name(scale)
    with psycopg.connect(dsn("postgres"), autocommit=True) as conn:
        if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [database]).fetchone() is None:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database)))
    with psycopg.connect(dsn(database), autocommit=True) as conn:
        conn.execute("SET maintenance_work_mem = '512MB'")
        for table in tables:
            if _is_loaded(conn, table, scale):
                continue
            print(f"generating {database}.{table.name}: {table.rows(scale):,} rows ...", file=sys.stderr, flush=True)
            started = time.monotonic()
            _load(conn, table, scale)
            print(f"  done in {time.monotonic() - started:.1f} s", file=sys.stderr, flush=True)
    return database


def heap_bytes(database: str, table: Table) -> int:
    """pg_table_size: heap, TOAST, free space and visibility maps (no indexes)."""
    with psycopg.connect(dsn(database)) as conn:
        row = conn.execute("SELECT pg_table_size(to_regclass(%s))", [table.name]).fetchone()
    assert row is not None
    return int(row[0])


def server_version() -> str:
    with psycopg.connect(dsn("postgres")) as conn:
        row = conn.execute("SHOW server_version").fetchone()
    assert row is not None
    return str(row[0])
