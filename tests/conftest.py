"""Shared fixtures: real PostgreSQL and MySQL/MariaDB servers, a database per test, moto's S3 server over HTTP."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import boto3
import psycopg
import pymysql
import pytest
from moto.server import ThreadedMotoServer
from psycopg import sql

from tests import mariadb
from tests.helpers import mysql_connect, with_database

DEFAULT_PG = "postgresql://postgres@127.0.0.1:5432/postgres"
DEFAULT_MYSQL = "mysql://root@127.0.0.1:3306/"


@pytest.fixture(scope="session")
def pg_dsn() -> str:
    """The server under test: DBEXPORT_TEST_PG_DSN, the local one, or an embedded one started for the run."""
    from dbexport.server import ensure_postgres

    return ensure_postgres(os.environ.get("DBEXPORT_TEST_PG_DSN", DEFAULT_PG))


@pytest.fixture(autouse=True)
def state_dir(tmp_path_factory, monkeypatch) -> Path:
    """Each test keeps its task records, events and runner logs apart (the CLI reads DBEXPORT_STATE_DIR)."""
    path = tmp_path_factory.mktemp("state")
    monkeypatch.setenv("DBEXPORT_STATE_DIR", str(path))
    return path


@pytest.fixture
def source(pg_dsn: str) -> Iterator[str]:
    """A fresh, uniquely named database; yields its URL and drops it afterwards."""
    name = f"dbexport_test_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(pg_dsn, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    url = with_database(pg_dsn, name)
    try:
        yield url
    finally:
        with psycopg.connect(pg_dsn, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture(scope="session")
def mysql_url(tmp_path_factory) -> Iterator[str]:
    """The MySQL/MariaDB server under test: DBEXPORT_TEST_MYSQL_URL, the local one, or a private one.

    The private server is started from the installed MariaDB binaries when nothing answers on 127.0.0.1:3306.
    Without binaries either, the MySQL tests skip, saying why; under CI=true they fail instead, since a run
    that skips them proves nothing about the MySQL path.
    """
    url = os.environ.get("DBEXPORT_TEST_MYSQL_URL", DEFAULT_MYSQL)
    try:
        mysql_connect(url).close()
    except pymysql.MySQLError as exc:
        reason = f"No MySQL/MariaDB server answers at {urlsplit(url).netloc} ({exc.args[-1]})"
    else:
        yield url
        return
    if "DBEXPORT_TEST_MYSQL_URL" not in os.environ and mariadb.binaries() is not None:
        server = mariadb.PrivateServer(tmp_path_factory.mktemp("mariadb"))
        try:
            yield server.url
        finally:
            server.stop()
        return
    reason += ": install one (apt-get install mariadb-server; scripts/test does) or set DBEXPORT_TEST_MYSQL_URL"
    if os.environ.get("CI") == "true":
        pytest.fail(reason)
    pytest.skip(reason)


@pytest.fixture
def mysql_source(mysql_url: str) -> Iterator[str]:
    """A fresh, uniquely named MySQL database; yields its URL and drops it afterwards."""
    name = f"dbexport_test_{uuid.uuid4().hex[:10]}"
    with mysql_connect(mysql_url) as admin, admin.cursor() as cur:
        cur.execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4")
    try:
        yield with_database(mysql_url, name)
    finally:
        with mysql_connect(mysql_url) as admin, admin.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS `{name}`")


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """moto's S3 (and KMS, STS, IAM) over real HTTP, so boto3 and pyarrow both reach it."""
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def bucket(s3_endpoint: str) -> str:
    name = f"bucket-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=s3_endpoint).create_bucket(Bucket=name)
    return name
