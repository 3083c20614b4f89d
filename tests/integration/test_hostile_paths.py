"""Names that try to write outside their table's folder, or into another table's, on file:// and on S3."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from urllib.parse import urlsplit

import boto3
import pyarrow.dataset as ds
import pyarrow.fs as pafs
import pytest

from dbexport.local import run_export
from dbexport.models import ExportSettings, StartExportTaskRequest, Status
from dbexport.validation import validate_request
from tests.helpers import database_of, execute, export, mysql_connect, mysql_execute, read_table


def _fingerprint(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _skipped(task) -> dict[tuple[str, str], str]:
    assert task.warning_message is not None
    return {(s["schema"], s["table"]): s["reason"] for s in json.loads(task.warning_message)["skippedTables"]}


def test_a_schema_named_like_a_path_does_not_overwrite_an_earlier_export(pg_dsn, source, tmp_path):
    victim = database_of(source)
    execute(source, "CREATE TABLE public.t (id int); INSERT INTO public.t SELECT generate_series(1, 1000);")
    assert export(source, tmp_path, "victim1").status == Status.COMPLETE
    before = _fingerprint(tmp_path / "victim1")

    attacker = f"dbexport_test_{uuid.uuid4().hex[:10]}"
    execute(pg_dsn, f'CREATE DATABASE "{attacker}"')
    attacker_url = source.rsplit("/", 1)[0] + "/" + attacker
    try:
        execute(
            attacker_url,
            f"""
            CREATE SCHEMA "../../victim1/{victim}/public"; CREATE TABLE "../../victim1/{victim}/public".t (id int);
            INSERT INTO "../../victim1/{victim}/public".t VALUES (1), (2), (3);
            CREATE SCHEMA ".."; CREATE TABLE "..".t (id int); INSERT INTO "..".t VALUES (7);
            CREATE TABLE public.kept (id int); INSERT INTO public.kept VALUES (9);
            """,
        )
        task = export(attacker_url, tmp_path, "attacker")
    finally:
        execute(pg_dsn, f'DROP DATABASE "{attacker}" WITH (FORCE)')
    assert task.status == Status.COMPLETE, task.failure_cause
    assert _skipped(task) == {(f"../../victim1/{victim}/public", "t"): "SCHEMA_NAME_HAS_SLASH"}
    assert _fingerprint(tmp_path / "victim1") == before
    # `..` as a schema is no folder of its own: `...t` is one element, inside the attacker's export.
    assert read_table(tmp_path, "attacker", attacker, "..", "t").column("id").to_pylist() == [7]
    assert sorted(p.name for p in (tmp_path / "attacker" / attacker).iterdir()) == ["...t", "public.kept"]


def test_on_s3_no_key_has_a_dot_folder_and_path_names_are_skipped(source, s3_endpoint, bucket):
    execute(
        source,
        """
        CREATE SCHEMA "../x"; CREATE TABLE "../x".t (id int); INSERT INTO "../x".t VALUES (1);
        CREATE SCHEMA "a b"; CREATE TABLE "a b".t (id int); INSERT INTO "a b".t VALUES (2);
        CREATE SCHEMA a_b; CREATE TABLE a_b.t (id int); INSERT INTO a_b.t VALUES (3), (4);
        """,
    )
    task = validate_request(
        StartExportTaskRequest(export_task_identifier="s3-paths", source_arn=source, s3_bucket_name=bucket)
    )
    task = run_export(task, source, ExportSettings(), endpoint_url=s3_endpoint)
    assert task.status == Status.COMPLETE, task.failure_cause
    assert _skipped(task) == {("../x", "t"): "SCHEMA_NAME_HAS_SLASH", ("a b", "t"): "TABLE_PATH_CONFLICT"}
    keys = [o["Key"] for o in boto3.client("s3", endpoint_url=s3_endpoint).list_objects_v2(Bucket=bucket)["Contents"]]
    assert all(set(key.split("/")).isdisjoint({"", ".", ".."}) for key in keys), keys
    db = database_of(source)
    assert {k.split("/")[2] for k in keys if k.count("/") >= 3} == {"a_b.t"}
    s3 = pafs.S3FileSystem(endpoint_override=urlsplit(s3_endpoint).netloc, scheme="http")
    rows = ds.dataset(f"{bucket}/s3-paths/{db}/a_b.t", filesystem=s3, format="parquet").to_table()
    assert sorted(rows.column("id").to_pylist()) == [3, 4]


@pytest.fixture
def mysql_user_of_three_databases(mysql_url):
    """A MySQL user who sees only `c a`, `c_a` and `x/../../victim2/db`: its whole-server export is them."""
    suffix = uuid.uuid4().hex[:8]
    names = [f"c a{suffix}", f"c_a{suffix}", f"x/../../victim2/db{suffix}"]
    user = f"dbx_{suffix}"
    statements = [f"CREATE USER '{user}'@'%'", f"CREATE USER '{user}'@'localhost'"]
    for name in names:
        statements += [f"CREATE DATABASE `{name}`"]
        statements += [
            f"GRANT ALL ON `{name.replace('_', chr(92) + '_')}`.* TO '{user}'@'{h}'" for h in ("%", "localhost")
        ]
    mysql_execute(mysql_url, *statements)
    parts = urlsplit(mysql_url)
    url = parts._replace(netloc=f"{user}@{parts.hostname}:{parts.port or 3306}", path="/").geturl()
    try:
        yield url, names
    finally:
        with mysql_connect(mysql_url) as admin, admin.cursor() as cur:
            for name in names:
                cur.execute(f"DROP DATABASE IF EXISTS `{name}`")
            for host in ("%", "localhost"):
                cur.execute(f"DROP USER IF EXISTS '{user}'@'{host}'")


def test_mysql_databases_whose_folders_coincide_keep_their_own_rows(mysql_user_of_three_databases, mysql_url, tmp_path):
    url, (spaced, underscored, traversal) = mysql_user_of_three_databases
    for name, rows in ((spaced, 100), (underscored, 200), (traversal, 3)):
        mysql_execute(
            mysql_url,
            f"CREATE TABLE `{name}`.t (id int PRIMARY KEY)",
            f"INSERT INTO `{name}`.t VALUES " + ", ".join(f"({i})" for i in range(1, rows + 1)),
        )
    task = export(url, tmp_path, "cluster")
    assert task.status == Status.COMPLETE, task.failure_cause
    assert _skipped(task) == {(spaced, "t"): "TABLE_PATH_CONFLICT", (traversal, "t"): "DATABASE_NAME_HAS_SLASH"}
    assert sorted(p.name for p in (tmp_path / "cluster").iterdir() if p.is_dir()) == [underscored]
    table = ds.dataset(tmp_path / "cluster" / underscored / f"{underscored}.t", format="parquet").to_table()
    assert sorted(table.column("id").to_pylist()) == list(range(1, 201))
    assert not (tmp_path / "victim2").exists()
