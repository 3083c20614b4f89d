"""Tables split into partitions: key ranges, page ranges, partitioned tables and inheritance, row counts."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import psycopg
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from dbexport.models import ExportSettings, Status
from tests.helpers import database_of, execute, export, read_table

EXPORT_ID = "test-export"
# Small enough that a table of a few hundred kB splits into several partitions.
SMALL_PARTITIONS = ExportSettings(partition_target_bytes=64 * 1024)


def _query(url: str, statement: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(url, autocommit=True) as conn:
        return conn.execute(statement).fetchall()


def _table_folder(out: Path, url: str, schema: str, table: str) -> Path:
    return out / EXPORT_ID / database_of(url) / f"{schema}.{table}"


def _partition_rows(folder: Path) -> dict[str, int]:
    """Rows per partition folder, read from the Parquet files a user would find there."""
    counts = {}
    for partition in sorted(p for p in folder.iterdir() if p.is_dir()):
        files = sorted(partition.glob("*.parquet"))
        counts[partition.name] = sum(pq.ParquetFile(f).metadata.num_rows for f in files)
    return counts


def _table_statuses(out: Path) -> dict[str, dict[str, Any]]:
    """export_tables_info's perTableStatus entries, by target."""
    files = sorted((out / EXPORT_ID).glob(f"export_tables_info_{EXPORT_ID}_from_*_to_*.json"))
    assert files, "no export_tables_info file"
    entries = [e for f in files for e in json.loads(f.read_text())["perTableStatus"]]
    return {e["target"]: e for e in entries if "status" in e}


def _ids(url: str, table: str, column: str = "id") -> list[Any]:
    return sorted(r[0] for r in _query(url, f"SELECT {column} FROM {table}"))


def _exported_ids(out: Path, url: str, table: str, column: str = "id", schema: str = "public") -> list[Any]:
    return sorted(read_table(out, EXPORT_ID, database_of(url), schema, table).column(column).to_pylist())


def _assert_split(out: Path, url: str, table: str, minimum: int = 2) -> dict[str, int]:
    """The table's folder holds partitions 1..k, k >= minimum, and the metadata agrees."""
    counts = _partition_rows(_table_folder(out, url, "public", table))
    assert len(counts) >= minimum, counts
    assert set(counts) == {str(i) for i in range(1, len(counts) + 1)}
    for index in counts:
        assert (_table_folder(out, url, "public", table) / index / "_SUCCESS").exists()
    status = _table_statuses(out)[f"{database_of(url)}.public.{table}"]
    assert status["status"] == "COMPLETE"
    assert status["tableStatistics"]["partitioningInfo"] == {
        "numberOfPartitions": len(counts),
        "numberOfCompletedPartitions": len(counts),
    }
    return counts


def test_skewed_bigint_keys_split_into_balanced_key_ranges(source: str, tmp_path: Path) -> None:
    execute(
        source,
        """
        CREATE TABLE skewed (id bigint PRIMARY KEY, payload text NOT NULL);
        INSERT INTO skewed SELECT i, repeat(md5(i::text), 3) FROM generate_series(1, 3000) i;
        INSERT INTO skewed SELECT 4611686018427387904 + i, 'far' FROM generate_series(-20, 20) i;
        INSERT INTO skewed SELECT -i, 'negative' FROM generate_series(1, 40) i;
        INSERT INTO skewed VALUES (-9223372036854775808, 'min'), (9223372036854775807, 'max'), (0, 'zero');
        ANALYZE skewed;
        """,
    )
    task = export(source, tmp_path, settings=SMALL_PARTITIONS)
    assert task.status == Status.COMPLETE, task.failure_cause

    counts = _assert_split(tmp_path, source, "skewed", minimum=4)
    # No row lost or doubled at a boundary, even the extreme keys.
    exported = _exported_ids(tmp_path, source, "skewed")
    assert exported == _ids(source, "skewed")
    assert len(exported) == len(set(exported)) == 3084
    # The cuts follow the keys' distribution, not their range: no partition is much bigger than the rest.
    average = sum(counts.values()) / len(counts)
    assert max(counts.values()) <= 3 * average, counts
    # Key ranges in key order: the lowest keys in the first partition, the highest in the last.
    folder = _table_folder(tmp_path, source, "public", "skewed")
    first = ds.dataset(folder / "1", format="parquet").to_table().column("id").to_pylist()
    last = ds.dataset(folder / str(len(counts)), format="parquet").to_table().column("id").to_pylist()
    assert min(first) == -(2**63)
    assert max(last) == 2**63 - 1
    assert max(first) < min(last)


@pytest.mark.parametrize(
    ("key", "ddl", "insert"),
    [
        (
            "uuid",
            "CREATE TABLE t (id uuid PRIMARY KEY, n int NOT NULL, payload text)",
            "INSERT INTO t SELECT md5(i::text)::uuid, i, repeat(md5(i::text), 3) FROM generate_series(1, 3000) i",
        ),
        (
            "composite",
            "CREATE TABLE t (a int, b int, n int NOT NULL, payload text, PRIMARY KEY (a, b))",
            "INSERT INTO t SELECT i % 7, i, i, repeat(md5(i::text), 3) FROM generate_series(1, 3000) i",
        ),
        (
            "text",
            "CREATE TABLE t (code text PRIMARY KEY, n int NOT NULL, payload text)",
            "INSERT INTO t SELECT 'k' || i, i, repeat(md5(i::text), 3) FROM generate_series(1, 3000) i",
        ),
        (
            "no key",
            "CREATE TABLE t (n int NOT NULL, payload text)",
            "INSERT INTO t SELECT i, repeat(md5(i::text), 3) FROM generate_series(1, 3000) i",
        ),
        (
            "nullable unique integer",
            "CREATE TABLE t (k int UNIQUE, n int NOT NULL, payload text)",
            "INSERT INTO t SELECT nullif(i, 1500), i, repeat(md5(i::text), 3) FROM generate_series(1, 3000) i",
        ),
    ],
)
def test_tables_without_an_integer_key_split_by_pages(
    source: str, tmp_path: Path, key: str, ddl: str, insert: str
) -> None:
    execute(source, f"{ddl}; {insert}; ANALYZE t;")
    task = export(source, tmp_path, settings=SMALL_PARTITIONS)
    assert task.status == Status.COMPLETE, task.failure_cause

    _assert_split(tmp_path, source, "t", minimum=3)
    exported = read_table(tmp_path, EXPORT_ID, database_of(source), "public", "t")
    assert exported.num_rows == 3000
    # Every row exactly once (n is 1..3000 in every variant, NULL keys included).
    assert sorted(exported.column("n").to_pylist()) == list(range(1, 3001))


def test_deleted_rows_and_holes(source: str, tmp_path: Path) -> None:
    execute(
        source,
        """
        CREATE TABLE holes_key (id int PRIMARY KEY, payload text);
        INSERT INTO holes_key SELECT i, repeat(md5(i::text), 3) FROM generate_series(1, 4000) i;
        DELETE FROM holes_key WHERE id BETWEEN 500 AND 1500 OR id % 3 = 0 OR id > 3900;
        CREATE TABLE holes_heap (n int, payload text);
        INSERT INTO holes_heap SELECT i, repeat(md5(i::text), 3) FROM generate_series(1, 4000) i;
        DELETE FROM holes_heap WHERE n BETWEEN 1000 AND 2500 OR n % 5 = 0;
        UPDATE holes_heap SET payload = 'moved' WHERE n % 7 = 0;
        """,
    )
    execute(source, "VACUUM holes_key")
    execute(source, "VACUUM holes_heap")
    task = export(source, tmp_path, settings=SMALL_PARTITIONS)
    assert task.status == Status.COMPLETE, task.failure_cause

    _assert_split(tmp_path, source, "holes_key")
    _assert_split(tmp_path, source, "holes_heap")
    assert _exported_ids(tmp_path, source, "holes_key") == _ids(source, "holes_key")
    assert _exported_ids(tmp_path, source, "holes_heap", "n") == _ids(source, "holes_heap", "n")
    moved = read_table(tmp_path, EXPORT_ID, database_of(source), "public", "holes_heap").to_pylist()
    assert sorted(r["n"] for r in moved if r["payload"] == "moved") == [
        n for n in range(1, 4001) if n % 7 == 0 and n % 5 != 0 and not 1000 <= n <= 2500
    ]


def test_empty_table_is_one_file_with_its_schema(source: str, tmp_path: Path) -> None:
    execute(source, "CREATE TABLE empty (id bigint PRIMARY KEY, name text, amount double precision, flag boolean)")
    task = export(source, tmp_path, settings=SMALL_PARTITIONS)
    assert task.status == Status.COMPLETE, task.failure_cause

    folder = _table_folder(tmp_path, source, "public", "empty")
    assert sorted(p.name for p in folder.iterdir()) == ["1"]
    files = sorted((folder / "1").glob("*.parquet"))
    assert len(files) == 1
    table = pq.read_table(files[0])
    assert table.num_rows == 0
    assert table.schema.names == ["id", "name", "amount", "flag"]
    assert [f.type for f in table.schema] == [pa.int64(), pa.string(), pa.float64(), pa.bool_()]
    stats = _table_statuses(tmp_path)[f"{database_of(source)}.public.empty"]["tableStatistics"]
    assert stats["exportedRowCount"] == stats["sourceRowCount"] == 0
    assert stats["partitioningInfo"]["numberOfPartitions"] == 1


def test_partitioned_table_without_partitions_is_one_empty_file(source: str, tmp_path: Path) -> None:
    execute(source, "CREATE TABLE nothing_yet (id bigint PRIMARY KEY, at date) PARTITION BY RANGE (id)")
    task = export(source, tmp_path, settings=SMALL_PARTITIONS)
    assert task.status == Status.COMPLETE, task.failure_cause
    folder = _table_folder(tmp_path, source, "public", "nothing_yet")
    assert _partition_rows(folder) == {"1": 0}
    (file,) = (folder / "1").glob("*.parquet")
    assert pq.read_schema(file).names == ["id", "at"]


def test_small_table_is_one_partition(source: str, tmp_path: Path) -> None:
    execute(source, "CREATE TABLE small (id int PRIMARY KEY, v text); INSERT INTO small VALUES (1, 'a'), (2, 'b')")
    task = export(source, tmp_path)
    assert task.status == Status.COMPLETE, task.failure_cause
    assert _partition_rows(_table_folder(tmp_path, source, "public", "small")) == {"1": 2}
    assert _exported_ids(tmp_path, source, "small") == [1, 2]


PARTITIONED = """
    CREATE TABLE events (id bigint NOT NULL, region text NOT NULL, payload text, PRIMARY KEY (id, region))
        PARTITION BY RANGE (id);
    CREATE TABLE events_low PARTITION OF events FOR VALUES FROM (MINVALUE) TO (1000);
    CREATE TABLE events_mid PARTITION OF events FOR VALUES FROM (1000) TO (2000) PARTITION BY LIST (region);
    CREATE TABLE events_mid_eu PARTITION OF events_mid FOR VALUES IN ('eu');
    CREATE TABLE events_mid_other PARTITION OF events_mid DEFAULT;
    CREATE TABLE events_high PARTITION OF events FOR VALUES FROM (2000) TO (MAXVALUE);
    INSERT INTO events
        SELECT i, (ARRAY['eu', 'us', 'ap'])[1 + (i + 60) % 3], repeat(md5(i::text), 3)
        FROM generate_series(-50, 3000) i;
"""


def test_partitioned_table_exports_once_through_its_parent(source: str, tmp_path: Path) -> None:
    execute(source, PARTITIONED)
    task = export(source, tmp_path, settings=SMALL_PARTITIONS)
    assert task.status == Status.COMPLETE, task.failure_cause

    database = tmp_path / EXPORT_ID / database_of(source)
    assert sorted(p.name for p in database.iterdir()) == ["public.events"]
    _assert_split(tmp_path, source, "events")
    exported = _exported_ids(tmp_path, source, "events")
    assert exported == list(range(-50, 3001))
    statuses = _table_statuses(tmp_path)
    assert sorted(statuses) == [f"{database_of(source)}.public.events"]
    stats = statuses[f"{database_of(source)}.public.events"]["tableStatistics"]
    assert stats["exportedRowCount"] == stats["sourceRowCount"] == 3051


def test_partitioned_table_with_an_integer_key_splits_by_key(source: str, tmp_path: Path) -> None:
    execute(
        source,
        """
        CREATE TABLE measures (id bigint PRIMARY KEY, payload text) PARTITION BY RANGE (id);
        CREATE TABLE measures_a PARTITION OF measures FOR VALUES FROM (MINVALUE) TO (100);
        CREATE TABLE measures_b PARTITION OF measures FOR VALUES FROM (100) TO (MAXVALUE);
        INSERT INTO measures SELECT i, repeat(md5(i::text), 3) FROM generate_series(1, 3000) i;
        """,
    )
    task = export(source, tmp_path, settings=SMALL_PARTITIONS)
    assert task.status == Status.COMPLETE, task.failure_cause
    counts = _assert_split(tmp_path, source, "measures", minimum=3)
    assert _exported_ids(tmp_path, source, "measures") == list(range(1, 3001))
    assert max(counts.values()) <= 3 * sum(counts.values()) / len(counts), counts


def test_export_only_a_leaf_partition(source: str, tmp_path: Path) -> None:
    execute(source, PARTITIONED)
    db = database_of(source)
    task = export(source, tmp_path, export_only=[f"{db}.public.events_mid_eu"])
    assert task.status == Status.COMPLETE, task.failure_cause
    assert sorted(p.name for p in (tmp_path / EXPORT_ID / db).iterdir()) == ["public.events_mid_eu"]
    assert _exported_ids(tmp_path, source, "events_mid_eu") == _ids(source, "events_mid_eu")
    assert _exported_ids(tmp_path, source, "events_mid_eu") == [i for i in range(1000, 2000) if i % 3 == 0]


def test_export_only_a_sub_partitioned_table_and_its_leaf_exports_rows_once(source: str, tmp_path: Path) -> None:
    execute(source, PARTITIONED)
    db = database_of(source)
    task = export(source, tmp_path, export_only=[f"{db}.public.events_mid", f"{db}.public.events_mid_eu"])
    assert task.status == Status.COMPLETE, task.failure_cause
    # The leaf is read through the partitioned table named with it, as in a full export.
    assert sorted(p.name for p in (tmp_path / EXPORT_ID / db).iterdir()) == ["public.events_mid"]
    assert _exported_ids(tmp_path, source, "events_mid") == list(range(1000, 2000))


def test_export_only_a_schema_holding_leaves_of_a_table_elsewhere(source: str, tmp_path: Path) -> None:
    execute(
        source,
        """
        CREATE SCHEMA parts;
        CREATE TABLE public.logs (id int NOT NULL, kind text NOT NULL) PARTITION BY LIST (kind);
        CREATE TABLE parts.logs_web PARTITION OF public.logs FOR VALUES IN ('web') PARTITION BY RANGE (id);
        CREATE TABLE parts.logs_web_1 PARTITION OF parts.logs_web FOR VALUES FROM (0) TO (100);
        CREATE TABLE parts.logs_web_2 PARTITION OF parts.logs_web FOR VALUES FROM (100) TO (200);
        CREATE TABLE parts.logs_app PARTITION OF public.logs FOR VALUES IN ('app');
        INSERT INTO public.logs SELECT i, CASE WHEN i % 2 = 0 THEN 'web' ELSE 'app' END FROM generate_series(0, 199) i;
        """,
    )
    db = database_of(source)
    task = export(source, tmp_path, export_only=[f"{db}.parts"])
    assert task.status == Status.COMPLETE, task.failure_cause
    # The schema's topmost tables: logs_web (with its two leaves) and logs_app; no row twice.
    assert sorted(p.name for p in (tmp_path / EXPORT_ID / db).iterdir()) == ["parts.logs_app", "parts.logs_web"]
    assert _exported_ids(tmp_path, source, "logs_web", schema="parts") == list(range(0, 200, 2))
    assert _exported_ids(tmp_path, source, "logs_app", schema="parts") == list(range(1, 200, 2))


def test_inheritance_child_is_not_counted_in_its_parent(source: str, tmp_path: Path) -> None:
    execute(
        source,
        """
        CREATE TABLE animals (id int PRIMARY KEY, name text, payload text);
        CREATE TABLE dogs (breed text) INHERITS (animals);
        INSERT INTO animals SELECT i, 'animal ' || i, repeat(md5(i::text), 3) FROM generate_series(1, 1500) i;
        INSERT INTO dogs SELECT i, 'dog ' || i, repeat(md5(i::text), 3), 'terrier' FROM generate_series(2001, 3500) i;
        """,
    )
    task = export(source, tmp_path, settings=SMALL_PARTITIONS)
    assert task.status == Status.COMPLETE, task.failure_cause

    assert _exported_ids(tmp_path, source, "animals") == list(range(1, 1501))
    assert _exported_ids(tmp_path, source, "dogs") == list(range(2001, 3501))
    statuses = _table_statuses(tmp_path)
    db = database_of(source)
    for table, rows in (("animals", 1500), ("dogs", 1500)):
        stats = statuses[f"{db}.public.{table}"]["tableStatistics"]
        assert stats["exportedRowCount"] == stats["sourceRowCount"] == rows


def test_inheritance_child_with_large_rows_does_not_skip_its_parent(source: str, tmp_path: Path) -> None:
    execute(
        source,
        """
        CREATE TABLE docs (id int PRIMARY KEY, body bytea);
        CREATE TABLE big_docs () INHERITS (docs);
        ALTER TABLE docs ALTER COLUMN body SET STORAGE EXTERNAL;
        ALTER TABLE big_docs ALTER COLUMN body SET STORAGE EXTERNAL;
        -- The parent's own rows are toasted too (so they are measured), but each is well under the limit.
        INSERT INTO docs SELECT i, (SELECT decode(string_agg(md5(i::text || j::text), ''), 'hex')
                                    FROM generate_series(1, 3000) j) FROM generate_series(1, 10) i;
        INSERT INTO big_docs SELECT 100, decode(string_agg(md5(i::text), ''), 'hex') FROM generate_series(1, 20000) i;
        """,
    )
    settings = ExportSettings(max_row_bytes=200_000, max_value_bytes=1_000_000)
    task = export(source, tmp_path, settings=settings)
    assert task.status == Status.COMPLETE, task.failure_cause
    warning = json.loads(task.warning_message or "{}")
    assert [t["table"] for t in warning["skippedTables"]] == ["big_docs"]
    assert _exported_ids(tmp_path, source, "docs") == list(range(1, 11))


def test_row_counts_are_verified(source: str, tmp_path: Path) -> None:
    execute(
        source,
        """
        CREATE TABLE a (id int PRIMARY KEY, payload text);
        INSERT INTO a SELECT i, repeat(md5(i::text), 3) FROM generate_series(1, 2500) i;
        CREATE TABLE b (payload text);
        INSERT INTO b SELECT repeat(md5(i::text), 3) FROM generate_series(1, 2222) i;
        CREATE TABLE c (id int);
        """,
    )
    task = export(source, tmp_path, settings=SMALL_PARTITIONS)
    assert task.status == Status.COMPLETE, task.failure_cause
    db = database_of(source)
    statuses = _table_statuses(tmp_path)
    expected = {"a": 2500, "b": 2222, "c": 0}
    assert sorted(statuses) == sorted(f"{db}.public.{t}" for t in expected)
    for table, rows in expected.items():
        status = statuses[f"{db}.public.{table}"]
        assert status["status"] == "COMPLETE"
        assert status["tableStatistics"]["exportedRowCount"] == rows
        assert status["tableStatistics"]["sourceRowCount"] == rows
        # What is on disk agrees with what the metadata says.
        assert ds.dataset(_table_folder(tmp_path, source, "public", table), format="parquet").count_rows() == rows
    assert Counter(s["status"] for s in statuses.values()) == Counter({"COMPLETE": 3})
