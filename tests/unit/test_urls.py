"""A source's password never comes back out of dbexport.urls, in whatever form the source gives it."""

from __future__ import annotations

from urllib.parse import quote, unquote

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dbexport.errors import InvalidParameterValue
from dbexport.sources import for_name
from dbexport.urls import ENGINES, canonical, engine_of, redact, scrub, secrets_of, source_identity

# A marker no host, user or database name here contains, around any printable characters at all.
passwords = st.text(st.characters(min_codepoint=33, max_codepoint=0x2FF), min_size=0, max_size=16).map(
    lambda s: f"Zq9{s}Xw7"
)
FORMS = [
    "postgresql://exporter:{raw}@db.internal:5432/sales",
    "POSTGRESQL://exporter:{raw}@db.internal:5432/sales",
    "postgresql://exporter:{quoted}@db.internal/sales",
    "mysql://exporter:{raw}@db.internal:3306/",
    "MariaDB://exporter:{quoted}@db.internal:3306/x",
    "postgresql://db.internal/sales?password={quoted}",
    "postgresql://exporter@db.internal/sales?sslmode=require&PASSWORD={quoted}",
    "postgresql://db.internal/sales?sslpassword={quoted}&application_name=x",
    "mysql://exporter@db.internal/x?passwd={quoted}",
    "host=db.internal password={raw} dbname=sales",
    "host=db.internal password='{raw}' dbname=sales",
    "postgresql://exporter:{raw}@db.internal:port/sales",
    "postgresql://exporter:{raw}%zz@db.internal/sales",
    "oracle://exporter:{raw}@db.internal/sales",
]


@settings(max_examples=60)
@given(password=passwords, form=st.sampled_from(FORMS))
def test_no_form_of_a_source_shows_its_password(password: str, form: str) -> None:
    source = form.format(raw=password, quoted=quote(password, safe=""))
    shown = [redact(source)]
    try:
        shown.append(canonical(source))
    except InvalidParameterValue as refusal:
        shown.append(str(refusal))
    else:
        shown.pop()  # the canonical URL is what connects: it keeps the password
    for text in shown:
        assert password not in text and quote(password, safe="") not in text, text
    if "://" not in source:
        return  # a keyword string is refused, never connected with: nothing of it can be echoed later
    assert password in " ".join(secrets_of(source)) or quote(password, safe="") in secrets_of(source)
    echoed = scrub(f"the server said: bad password in {source} ({unquote(source)})", source)
    assert password not in echoed and quote(password, safe="") not in echoed, echoed


@pytest.mark.parametrize(
    ("source", "shown"),
    [
        ("postgresql://u:pw@h:5432/db", "postgresql://u@h:5432/db"),
        ("POSTGRESQL://u:pw@h/db", "postgresql://u@h/db"),
        ("postgresql://:pw@h/db", "postgresql://h/db"),
        ("postgresql://u:p/w#x?y@z@h/db", "postgresql://u@h/db"),
        ("postgresql://h/db?sslmode=require&password=pw", "postgresql://h/db?sslmode=require"),
        ("host=h password=pw dbname=d", "host=h ..."),
        ("postgresql://u:p@ss@h/db", "postgresql://u@h/db"),
        ("mysql://u@h:3306/", "mysql://u@h:3306/"),
    ],
)
def test_redacted_forms(source: str, shown: str) -> None:
    assert redact(source) == shown


def test_the_canonical_url_has_a_lower_case_scheme_and_keeps_the_rest() -> None:
    assert canonical("POSTGRESQL://u:p%40ss@h:5432/db") == "postgresql://u:p%40ss@h:5432/db"
    assert engine_of("MARIADB://h/") == "mysql"


@pytest.mark.parametrize(
    ("source", "says"),
    [
        ("postgresql://u:p@ss@h/db", "percent-encode"),
        ("postgresql://u:p/ss@h/db", "percent-encode"),
        ("postgresql://u:p%zzss@h/db", "must start an escape"),
        ("mysql://u@h:abc/", "port must be a number"),
        ("host=h password=pw", "not a URL"),
        ("oracle://u:pw@h/db", "not supported"),
    ],
)
def test_malformed_sources_are_refused_saying_why(source: str, says: str) -> None:
    with pytest.raises(InvalidParameterValue, match=says) as refusal:
        canonical(source)
    assert "pw" not in str(refusal.value).replace("password", "") and "ss@" not in str(refusal.value)


@pytest.mark.parametrize(
    ("source", "identity"),
    [
        ("postgres://u:pw@127.0.0.1/sales?sslmode=disable", "postgresql://localhost:5432"),
        ("postgresql://[::1]:5432/", "postgresql://localhost:5432"),
        ("postgresql:///sales", "postgresql://localhost:5432"),  # the local socket
        ("postgresql://%2Fvar%2Frun%2Fpostgresql/sales", "postgresql://localhost:5432"),
        ("postgresql://DB.Internal.:6432/", "postgresql://db.internal:6432"),
        ("postgresql://[2001:db8:0:0::1]/", "postgresql://[2001:db8::1]:5432"),
        ("mariadb://root@localhost/x", "mysql://localhost:3306"),
        ("MYSQL://root@127.0.0.2:3306/", "mysql://localhost:3306"),
        ("arn:aws:rds:us-east-1:123456789012:cluster:Sales", "arn:aws:rds:us-east-1:123456789012:cluster:sales"),
    ],
)
def test_a_source_identity_is_its_engine_host_and_port(source: str, identity: str) -> None:
    assert source_identity(source) == identity


@pytest.mark.parametrize("engine", sorted(ENGINES))
def test_the_registry_knows_each_engine_s_default_port(engine: str) -> None:
    assert ENGINES[engine].default_port == for_name(engine).DEFAULT_PORT
