"""Every worker reads the one snapshot the coordinator holds: writes during an export never show."""

from __future__ import annotations

import psycopg

from dbexport.local import run_export
from dbexport.models import ExportSettings, StartExportTaskRequest, Status
from dbexport.validation import validate_request
from tests.helpers import WritesDuringExport, database_of, execute, read_table


def test_rows_written_during_the_export_never_appear(source, tmp_path):
    execute(
        source,
        """
        CREATE TABLE accounts (id bigint PRIMARY KEY, balance int NOT NULL);
        INSERT INTO accounts SELECT i, 100 FROM generate_series(1, 30000) i;
        CREATE TABLE ledger (entry uuid PRIMARY KEY DEFAULT gen_random_uuid(), amount int);
        INSERT INTO ledger (amount) SELECT 1 FROM generate_series(1, 30000);
        ANALYZE;
        """,
    )

    def write(writes: int) -> None:
        with psycopg.connect(source, autocommit=True) as conn:
            conn.execute(
                "INSERT INTO accounts SELECT i, 1 FROM generate_series(100001 + %s * 100, 100050 + %s * 100) i",
                [writes, writes],
            )
            conn.execute("UPDATE accounts SET balance = -1 WHERE id % 7 = 0")
            conn.execute("DELETE FROM accounts WHERE id % 11 = 0")
            conn.execute("INSERT INTO ledger (amount) SELECT 2 FROM generate_series(1, 500)")
            conn.execute("DELETE FROM ledger WHERE amount = 1 AND entry < '40000000-0000-0000-0000-000000000000'")

    task = run_export(
        validate_request(
            StartExportTaskRequest(
                export_task_identifier="consistent", source_arn=source, s3_bucket_name=tmp_path.as_uri()
            )
        ),
        source,
        ExportSettings(partition_target_bytes=128 * 1024, workers=2),
        on_update=(writes := WritesDuringExport(write)),
    )

    assert task.status == Status.COMPLETE, task.failure_cause
    assert writes.count >= 2, "the test must write while partitions are still being exported"
    db = database_of(source)
    accounts = read_table(tmp_path, "consistent", db, "public", "accounts")
    assert sorted(accounts.column("id").to_pylist()) == list(range(1, 30001))
    assert set(accounts.column("balance").to_pylist()) == {100}
    ledger = read_table(tmp_path, "consistent", db, "public", "ledger")
    assert ledger.num_rows == 30000
    assert set(ledger.column("amount").to_pylist()) == {1}
    with psycopg.connect(source) as conn:
        assert conn.execute("SELECT count(*) FROM accounts WHERE balance = -1").fetchone()[0] > 0
