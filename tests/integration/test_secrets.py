"""A source's password never leaves the process: not on stdout or stderr, not in the state directory (task
records, events, runner logs), not in any exported object, whatever form the source URL gives it in."""

from __future__ import annotations

import uuid
from pathlib import Path
from urllib.parse import quote, urlsplit

import pytest

from tests.helpers import cli, describe_task, mysql_execute, start_task, wait_until_finished

# Every character a generated password may hold that a URL must escape, around a marker found nowhere else.
PASSWORD = "Zq9/#?@%:[x]Xw7"
ENCODED = quote(PASSWORD, safe="")


def _with_password(url: str, user: str, password: str, *, scheme: str | None = None) -> str:
    parts = urlsplit(url)
    netloc = f"{user}:{password}@{parts.hostname}:{parts.port}"
    return parts._replace(scheme=scheme or parts.scheme, netloc=netloc).geturl()


def _assert_nowhere(result, *places: Path) -> None:
    texts = [result.stdout.encode(), result.stderr.encode()]
    texts += [p.read_bytes() for place in places for p in place.rglob("*") if p.is_file()]
    for form in {PASSWORD, ENCODED, quote(PASSWORD), PASSWORD.replace("%", "%25")}:
        assert not any(form.encode() in text for text in texts), form


def _pg_sources(source: str) -> dict[str, str]:
    # The test server trusts every local connection: any password connects, so every form can export.
    return {
        "userinfo": _with_password(source, "postgres", ENCODED),
        "upper-case scheme": _with_password(source, "postgres", ENCODED, scheme="POSTGRESQL"),
        "query": f"{source}?password={ENCODED}",
        "sslpassword query": f"{source}?sslpassword={ENCODED}&application_name=x",
    }


@pytest.mark.parametrize("form", ["userinfo", "upper-case scheme", "query", "sslpassword query"])
def test_a_postgres_export_keeps_the_password_in_every_url_form(form, source, tmp_path, state_dir):
    url = _pg_sources(source)[form]
    out = tmp_path / "out"
    result = start_task("secret-pg", url, out.as_uri(), "--wait")
    assert result.returncode == 0, result.stderr
    assert describe_task("secret-pg")["Status"] == "COMPLETE"
    _assert_nowhere(result, out, state_dir)


def test_a_background_mysql_export_keeps_the_password(mysql_url, mysql_source, tmp_path, state_dir):
    user = f"dbx_{uuid.uuid4().hex[:8]}"
    db = urlsplit(mysql_source).path.strip("/")
    mysql_execute(
        mysql_url,
        *(f"CREATE USER '{user}'@'{h}' IDENTIFIED BY '{PASSWORD}'" for h in ("%", "localhost")),
        *(f"GRANT ALL ON `{db}`.* TO '{user}'@'{h}'" for h in ("%", "localhost")),
    )
    mysql_execute(mysql_source, "CREATE TABLE t (id int PRIMARY KEY)", "INSERT INTO t VALUES (1), (2)")
    out = tmp_path / "out"
    try:
        for identifier, scheme in (("secret-my", "mysql"), ("secret-my-upper", "MARIADB")):
            result = start_task(identifier, _with_password(mysql_source, user, ENCODED, scheme=scheme), out.as_uri())
            assert result.returncode == 0, result.stderr
            assert wait_until_finished(identifier)["Status"] == "COMPLETE"
            _assert_nowhere(result, out, state_dir)
    finally:
        mysql_execute(mysql_url, *(f"DROP USER IF EXISTS '{user}'@'{h}'" for h in ("%", "localhost")))


@pytest.mark.parametrize(
    ("source", "says"),
    [
        (f"postgresql://postgres:{PASSWORD}@127.0.0.1:5432/x", "percent-encode"),
        (f"mysql://root:{PASSWORD}@127.0.0.1:3306/", "percent-encode"),
        (f"postgresql://postgres:{ENCODED}%zz@127.0.0.1:5432/x", "must start an escape"),
        (f"host=127.0.0.1 password={ENCODED} dbname=x", "not a URL"),
        (f"oracle://u:{ENCODED}@h/x", "not supported"),
    ],
)
def test_a_malformed_source_is_refused_without_quoting_its_password(source, says, tmp_path, state_dir):
    result = start_task("refused", source, (tmp_path / "out").as_uri())
    assert result.returncode == 254, result.stdout
    assert "InvalidParameterValue" in result.stderr and says in result.stderr
    assert "Traceback" not in result.stderr
    _assert_nowhere(result, tmp_path, state_dir)
    assert cli("describe-export-tasks").stdout.count("refused") == 0
