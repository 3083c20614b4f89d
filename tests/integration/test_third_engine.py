"""A third engine plugs in by registration alone: tests/sqlite_engine.py, exported end to end by the local runtime."""

from __future__ import annotations

import json
import sqlite3
from contextlib import closing
from typing import TYPE_CHECKING

import pytest

from dbexport import urls
from dbexport.models import ExportSettings, Status
from dbexport.sources import Engine, for_url
from tests import sqlite_engine
from tests.helpers import export, read_table

if TYPE_CHECKING:
    from pathlib import Path


@pytest.fixture
def sqlite_source(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A folder of two SQLite databases, as a sqlite:// URL the registry knows for this test only."""
    monkeypatch.setitem(urls.ENGINES, "sqlite", urls.Registered("tests.sqlite_engine", label="SQLite"))
    monkeypatch.setitem(urls.SCHEMES, "sqlite", "sqlite")
    folder = tmp_path / "source"
    folder.mkdir()
    with closing(sqlite3.connect(folder / "shop.db")) as conn, conn:
        conn.executescript(
            """
            CREATE TABLE orders (id INTEGER PRIMARY KEY, customer TEXT, amount REAL);
            WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 1000)
            INSERT INTO orders SELECT i, 'customer ' || (i % 7), i * 0.5 FROM n;
            CREATE TABLE "in/out" (id INTEGER);
            CREATE TABLE odd (id INTEGER, "a,b" TEXT);
            CREATE VIEW big_orders AS SELECT * FROM orders WHERE amount > 100;
            """
        )
    with closing(sqlite3.connect(folder / "empty.db")) as conn, conn:
        conn.execute("CREATE TABLE blank (id INTEGER)")
    return f"sqlite://{folder}"


def test_a_registered_engine_exports_end_to_end(sqlite_source: str, tmp_path: Path) -> None:
    engine: Engine = sqlite_engine  # mypy checks the module against the protocol
    assert for_url(sqlite_source) is engine
    out = tmp_path / "out"
    task = export(
        sqlite_source,
        out,
        "third-engine",
        ExportSettings(workers=2),
        export_only=["shop", "shop.main.big_orders", "empty.main.blank"],
    )
    assert task.status == Status.COMPLETE, task.failure_cause

    orders = read_table(out, "third-engine", "shop", "main", "orders")
    assert sorted(orders.column("id").to_pylist()) == list(range(1, 1001))
    assert orders.schema.field("amount").type == "double"
    assert sorted({p.parent.name for p in (out / "third-engine" / "shop" / "main.orders").rglob("*.parquet")}) == [
        "1",
        "2",
    ], "the engine's own partitions"
    assert read_table(out, "third-engine", "empty", "main", "blank").num_rows == 0

    # The shared rules apply to it as to every engine.
    warnings = json.loads(task.warning_message or "{}")
    assert sorted((s["table"], s["reason"]) for s in warnings["skippedTables"]) == [
        ("in/out", "TABLE_NAME_HAS_SLASH"),
        ("odd", "COLUMN_NAME_HAS_UNSUPPORTED_CHARACTERS"),
    ]
    assert "shop.main.big_orders" in json.dumps(warnings), "a view named in ExportOnly is not a table"
    (info,) = (out / "third-engine").glob("export_tables_info_*.json")
    assert {t["target"]: t["status"] for t in json.loads(info.read_text())["perTableStatus"]} == {
        "empty.main.blank": "COMPLETE",
        "shop.main.orders": "COMPLETE",
        "shop.main.in/out": "SKIPPED",
        "shop.main.odd": "SKIPPED",
    }


def test_a_registered_engine_refuses_names_that_do_not_exist(sqlite_source: str, tmp_path: Path) -> None:
    task = export(sqlite_source, tmp_path / "out", "third-missing", export_only=["shop.main.nope"])
    assert task.status == Status.FAILED
    assert task.failure_cause is not None and "shop.main.nope" in task.failure_cause
