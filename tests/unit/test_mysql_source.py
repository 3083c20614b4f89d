"""The MySQL source's pure parts: URLs, quoting, partition queries (no server)."""

from __future__ import annotations

from dbexport.models import Column, Partition, TablePlan
from dbexport.sources import mysql
from dbexport.sources.mysql.connection import quote
from dbexport.sources.mysql.reading import partition_query
from dbexport.urls import engine_of


def test_urls_name_the_engine_and_keep_odd_database_names() -> None:
    assert [engine_of(u) for u in ("mysql://h/", "mariadb://h/", "postgresql://h/", "postgres://h/", "h")] == [
        "mysql",
        "mysql",
        "postgresql",
        "postgresql",
        None,
    ]
    url = mysql.database_dsn("mysql://u:p%40w@h:3306/", "a/b?c#d%e")
    assert url == "mysql://u:p%40w@h:3306/a%2Fb%3Fc%23d%25e"
    assert mysql.source_database(url) == "a/b?c#d%e"
    assert mysql.source_database("mysql://h:3306/") is None
    assert mysql.redact(url) == "mysql://u@h:3306/a%2Fb%3Fc%23d%25e"


def test_names_are_quoted_and_values_are_parameters() -> None:
    assert quote("a`b") == "`a``b`"
    assert quote("50%") == "`50%%`"  # every statement goes through pymysql's %-formatting
    table = TablePlan(
        database="d`b",
        schema="d`b",
        table="t; DROP TABLE x",
        engine="mysql",
        columns=[
            Column(name="k`", original_type="varchar", read_as="native", export_type="string"),
            Column(name="at", original_type="datetime", read_as="native", export_type="timestamp"),
            Column(name="u", original_type="bigint unsigned", read_as="text", export_type="decimal"),
            Column(name="g", original_type="point", read_as="native", export_type="binary"),
        ],
        partitions=[],
        estimated_bytes=0,
    )
    part = Partition(index="2", kind="tuple", keys=["k`", "at"], lower_tuple=["x'", 1], upper_tuple=None)
    query, params = partition_query(table, part)
    assert query == (
        "SELECT `k```, TIMESTAMPDIFF(MICROSECOND, '1970-01-01', `at`), CAST(`u` AS CHAR CHARACTER SET utf8mb4), "
        "ST_AsBinary(`g`) FROM `d``b`.`t; DROP TABLE x` WHERE (`k```, `at`) >= (%s, %s)"
    )
    assert params == ["x'", 1]
    query, params = partition_query(table, Partition(index="1", kind="key", key="id", lower=-5, upper=7))
    assert query.endswith(" WHERE `id` >= %s AND `id` < %s")
    assert params == [-5, 7]
