"""Hostile requests, generated: each is refused clearly (our error, its code, a message naming what is wrong) or
becomes a task that keeps no secret and writes nowhere but under its destination. Pure: no server is asked.

The exports of hostile names themselves are tests/integration/test_hostile_inputs.py.
"""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import quote

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from dbexport.destinations import export_root
from dbexport.errors import InvalidExportOnly, InvalidParameterValue, InvalidS3BucketFault, RdsError
from dbexport.models import MAX_WORKERS, ExportSettings, StartExportTaskRequest
from dbexport.urls import source_identity
from dbexport.validation import parse_export_only, validate_request

# Pieces that have broken quoting, paths, URLs or parsers somewhere: quotes, escapes, separators, SQL, Unicode
# that reads right to left, joins, normalizes or changes length when its case changes.
PIECES = [
    "'", '"', "`", "%", "%25", "%2F", "%2e%2e", "%00", "..", ".", "/", "\\", " ", "\t", "\n", ";", ",", "=", "(", ")",
    "{", "}", "--", "/*", "*/", "$", "_", "@", ":", "?", "#", "[", "]", "DROP TABLE t;", "SELECT", "NULL", "é", "名前",
    "🦆", "\u202e", "\u200b", "e\u0301", "ǅ", "İ", "ß", "\x00", "\x7f",
]  # fmt: skip
hostile = st.lists(st.one_of(st.sampled_from(PIECES), st.text(min_size=1, max_size=4)), min_size=1, max_size=8).map(
    "".join
)
plain = st.from_regex(r"[A-Za-z0-9_$]{1,12}", fullmatch=True)
names = st.one_of(hostile, plain, st.text(min_size=61, max_size=300))
# A marker no other generated part holds, around printable characters (as tests/unit/test_urls.py).
passwords = st.text(st.characters(min_codepoint=33, max_codepoint=0x2FF), max_size=16).map(lambda s: f"Zq9{s}Xw7")

ARN = "arn:aws:rds:us-east-1:123456789012:cluster:sales"
_EXPORT_ONLY_NAME = re.compile(r"[A-Za-z0-9_$]+")
_IDENTIFIER = re.compile(r"[A-Za-z][A-Za-z0-9-]{0,59}")


def request(**fields: object) -> StartExportTaskRequest:
    values: dict[str, object] = {
        "export_task_identifier": "hostile",
        "source_arn": "postgresql://exporter@db.internal:5432/",
        "s3_bucket_name": "export-bucket",
    }
    return StartExportTaskRequest(**(values | fields))  # type: ignore[arg-type]


def outcome(req: StartExportTaskRequest, runtime: str = "local") -> RdsError | None:
    """The refusal, or None for a request that became a task; any other exception fails the test as it is."""
    try:
        validate_request(req, runtime=runtime)  # type: ignore[arg-type]
    except RdsError as refusal:
        assert refusal.message.strip() and refusal.code in str(refusal), refusal
        return refusal
    return None


# --- ExportOnly ----------------------------------------------------------------------------------------------


def export_only_fits(item: str, schemas: bool) -> bool:
    parts = item.split(".")
    return all(_EXPORT_ONLY_NAME.fullmatch(p) for p in parts) and len(parts) <= (3 if schemas else 2)


@settings(max_examples=120)
@given(
    items=st.lists(st.lists(names, min_size=1, max_size=4).map(".".join), min_size=1, max_size=5),
    scheme=st.sampled_from(["postgresql", "mysql"]),
)
@example(items=["sales.public.t", "sales.`t`"], scheme="mysql")
@example(items=["db.schema.t.x"], scheme="postgresql")
def test_export_only_is_refused_naming_the_value_or_parsed_as_given(items: list[str], scheme: str) -> None:
    refusal = outcome(request(export_only=items, source_arn=f"{scheme}://exporter@db.internal/"))
    schemas = scheme == "postgresql"
    misfits = [item for item in items if not export_only_fits(item, schemas)]
    if misfits:
        assert isinstance(refusal, InvalidExportOnly), refusal
        assert repr(misfits[0]) in refusal.message
    else:
        assert refusal is None
        # MySQL holds `database.table` as (database, database, table): ExportOnly's name has the database twice.
        held = {i if schemas or "." not in i else "{0}.{0}.{1}".format(*i.split(".")) for i in items}
        assert parse_export_only(items, scheme).names() == sorted(held)


def test_export_only_over_200_kb_is_refused() -> None:
    refusal = outcome(request(export_only=["a" * 1000] * 205))
    assert isinstance(refusal, InvalidExportOnly) and "200 KB" in refusal.message


# --- Identifiers, prefixes, buckets --------------------------------------------------------------------------


@settings(max_examples=60)
@given(identifier=st.one_of(names, st.from_regex(r"[A-Za-z][A-Za-z0-9-]{0,70}", fullmatch=True)))
def test_an_identifier_is_refused_naming_it_or_kept_as_given(identifier: str) -> None:
    refusal = outcome(request(export_task_identifier=identifier))
    if _IDENTIFIER.fullmatch(identifier) and "--" not in identifier and not identifier.endswith("-"):
        assert refusal is None
    else:
        assert isinstance(refusal, InvalidParameterValue) and repr(identifier) in refusal.message


segments = st.one_of(st.sampled_from(["", ".", "..", "...", ". .", "exports", "a:b", "..\\", "%2e%2e", "é"]), hostile)


@settings(max_examples=100)
@given(prefix=st.lists(segments, max_size=6).map("/".join))
@example(prefix="../../etc")
@example(prefix="exports/./x")
@example(prefix="exports/")
@example(prefix="/")
@example(prefix="a\x00b")
def test_a_prefix_is_refused_naming_it_or_keeps_the_export_under_its_destination(prefix: str) -> None:
    refusal = outcome(request(s3_prefix=prefix, s3_bucket_name="file:///srv/exports"))
    if ":" in prefix or {".", ".."} & set(prefix.split("/")) or re.search(r"[\x00-\x1f\x7f]", prefix):
        assert isinstance(refusal, InvalidParameterValue) and repr(prefix) in refusal.message
        return
    assert refusal is None
    task = validate_request(request(s3_prefix=prefix, s3_bucket_name="file:///srv/exports"))
    root = export_root(task)
    assert root.endswith("/hostile") or root == "hostile"
    assert not {"", ".", ".."} & set(root.split("/")), root
    destination = Path("/srv/exports")
    for key in (root, f"{root}/db/public.t/1/part-00000.parquet"):
        assert (destination / key).resolve().is_relative_to(destination)  # never outside


@settings(max_examples=40)
@given(bucket=st.one_of(names, st.from_regex(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]", fullmatch=True)))
def test_a_bucket_name_is_refused_naming_it_or_is_an_s3_name(bucket: str) -> None:
    refusal = outcome(request(s3_bucket_name=bucket))
    if refusal is None:
        assert re.fullmatch(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]", bucket) and ".." not in bucket
    else:
        assert isinstance(refusal, InvalidS3BucketFault) and bucket in refusal.message


# --- Source URLs: every password form ------------------------------------------------------------------------

FORMS = [
    "postgresql://{user}:{raw}@db.internal:5432/{db}",
    "POSTGRESQL://{user}:{raw}@db.internal:5432/{db}",
    "postgres://{user}:{quoted}@db.internal/{db}",
    "mysql://{user}:{raw}@db.internal:3306/{db}",
    "MariaDB://{user}:{quoted}@db.internal:3306/{db}",
    "postgresql://db.internal/{db}?password={quoted}",
    "postgresql://{user}@db.internal/{db}?sslmode=require&PASSWORD={quoted}",
    "postgresql://db.internal/{db}?sslpassword={quoted}&application_name=x",
    "mysql://{user}@db.internal/{db}?passwd={quoted}",
    "host=db.internal password={raw} dbname={db}",
    "host=db.internal password='{raw}' dbname={db}",
    "postgresql://{user}:{raw}@db.internal:port/{db}",
    "postgresql://{user}:{raw}%zz@db.internal/{db}",
    "postgresql://{user}:{raw}@[db.internal/{db}",
    "oracle://{user}:{raw}@db.internal/{db}",
]


@settings(max_examples=150)
@given(
    form=st.sampled_from(FORMS),
    password=passwords,
    user=st.one_of(plain, hostile.map(lambda s: quote(s, safe=""))),
    db=st.one_of(plain, hostile.map(lambda s: quote(s, safe="")), hostile),
)
def test_a_source_is_refused_or_a_task_without_its_password_in_every_form(
    form: str, password: str, user: str, db: str
) -> None:
    source = form.format(user=user, db=db, raw=password, quoted=quote(password, safe=""))
    refusal = outcome(request(source_arn=source))
    secrets = (password, quote(password, safe=""))
    if refusal is not None:
        assert isinstance(refusal, InvalidParameterValue), refusal
        assert not any(s in str(refusal) for s in secrets), refusal
        return
    task = validate_request(request(source_arn=source))
    for shown in (task.model_dump_json(), source_identity(source), source_identity(task.source_arn)):
        assert not any(s in shown for s in secrets), shown
    assert source_identity(task.source_arn) == source_identity(source)
    assert source_identity(source).endswith(("db.internal:5432", "db.internal:3306"))


# --- Settings ------------------------------------------------------------------------------------------------


@settings(max_examples=40)
@given(workers=st.integers(min_value=1, max_value=10**7))
@example(workers=MAX_WORKERS)
@example(workers=MAX_WORKERS + 1)
@example(workers=100_000)
def test_workers_beyond_the_bound_are_refused_naming_it(workers: int) -> None:
    try:
        ExportSettings(workers=workers)
    except ValidationError as refusal:
        assert workers > MAX_WORKERS
        assert f"less than or equal to {MAX_WORKERS}" in str(refusal) and "workers" in str(refusal)
    else:
        assert workers <= MAX_WORKERS


# --- Whole requests, any part hostile, both runtimes ---------------------------------------------------------

sources = st.one_of(
    st.sampled_from(FORMS).map(lambda f: f.format(user="u", db="d", raw="Zq9pw@/#?Xw7", quoted="Zq9pw%40Xw7")),
    st.sampled_from([ARN, ARN.replace("cluster:", "cluster:../"), "arn:aws:rds:us-east-1:1:cluster:x", ""]),
    names,
)


@settings(max_examples=150)
@given(
    identifier=st.one_of(names, st.just("hostile")),
    source=sources,
    bucket=st.one_of(names, st.just("export-bucket"), st.just("file:///srv/exports")),
    prefix=st.one_of(names, st.just("")),
    export_only=st.lists(st.one_of(names, plain), max_size=3),
    role=st.one_of(st.none(), names),
    key=st.one_of(st.none(), names),
    runtime=st.sampled_from(["local", "aws"]),
)
def test_any_request_is_a_refusal_or_a_task_never_a_traceback_or_a_leak(
    identifier: str,
    source: str,
    bucket: str,
    prefix: str,
    export_only: list[str],
    role: str | None,
    key: str | None,
    runtime: str,
) -> None:
    req = request(
        export_task_identifier=identifier,
        source_arn=source,
        s3_bucket_name=bucket,
        s3_prefix=prefix,
        export_only=export_only,
        iam_role_arn=role,
        kms_key_id=key,
    )
    refusal = outcome(req, runtime)
    shown = str(refusal) if refusal is not None else validate_request(req, runtime=runtime).model_dump_json()  # type: ignore[arg-type]
    assert "Zq9pw" not in shown, shown


# --- One source, however it is spelled ----------------------------------------------------------------------

LOOPBACK = ["localhost", "LocalHost", "127.0.0.1", "127.1.2.3", "[::1]", "[::ffff:127.0.0.1]", "", "localhost."]


@settings(max_examples=100)
@given(
    engine=st.sampled_from([("postgresql", "postgres", 5432), ("mysql", "mariadb", 3306)]),
    hosts=st.tuples(st.sampled_from(LOOPBACK), st.sampled_from(LOOPBACK)),
    ports=st.tuples(st.booleans(), st.booleans()),
    users=st.tuples(st.one_of(st.just(""), plain.map(lambda u: u + "@")), passwords),
    database=st.one_of(st.just(""), plain, hostile.map(lambda s: quote(s, safe=""))),
    query=st.sampled_from(["", "?sslmode=disable", "?application_name=x&connect_timeout=3"]),
)
def test_every_spelling_of_this_machine_s_server_is_one_source(engine, hosts, ports, users, database, query) -> None:
    name, alias, default = engine
    (first_host, second_host), (first_port, second_port) = hosts, ports
    user, password = users

    def spelled(scheme: str, host: str, port: int | None, userinfo: str) -> str:
        netloc = userinfo + host + (f":{port}" if port else "")
        return f"{scheme}://{netloc}/{database}{query}"

    first = spelled(name, first_host, first_port and default, user)
    second = spelled(alias.upper(), second_host, second_port and default, f"other:{quote(password, safe='')}@")
    assert source_identity(first) == source_identity(second) == f"{name}://localhost:{default}"
    assert source_identity(spelled(name, first_host, default + 1, user)) != source_identity(first)
    assert password not in source_identity(second)


@pytest.mark.parametrize(
    ("one", "other"),
    [
        ("postgresql://127.0.0.1:5432/", "postgresql://127.0.0.1:5433/"),
        ("postgresql://db.internal/", "postgresql://db2.internal/"),
        ("postgresql://127.0.0.1:3306/", "mysql://127.0.0.1:3306/"),
        ("postgresql://10.0.0.5/", "postgresql://10.0.0.6/"),
        (ARN, ARN + "2"),
    ],
)
def test_different_servers_are_different_sources(one: str, other: str) -> None:
    assert source_identity(one) != source_identity(other)
