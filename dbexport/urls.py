"""Source URLs and the engines they name: the registry, a URL's one canonical form, and its form without secrets.

Light: no driver imports. A password may reach us in the URL's user info or in its query (`password=`,
`sslpassword=`), percent-encoded or not, or in a keyword connection string: none of these forms may leave the
process, so nothing here ever quotes a secret back, not even in a refusal.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from urllib.parse import SplitResult, parse_qsl, quote, unquote, urlencode, urlsplit, urlunsplit

from dbexport.errors import InvalidParameterValue

# A registered engine's name: the key of ENGINES, held by each TablePlan and SkippedTable.
EngineName = str


@dataclass(frozen=True)
class Registered:
    """What the light core knows of an engine without loading its driver."""

    module: str  # the engine's module (see dbexport.sources.Engine), imported when first asked for
    # False where a table is named `database.table` (MySQL): ExportOnly's forms and export_tables_info follow.
    schemas: bool = True
    label: str = ""  # how messages name the engine
    default_port: int | None = None  # the port a URL without one connects to (the engine module's DEFAULT_PORT)


# Tests register an engine of their own by adding to both.
ENGINES: dict[EngineName, Registered] = {
    "postgresql": Registered("dbexport.sources.postgres", label="PostgreSQL", default_port=5432),
    "mysql": Registered("dbexport.sources.mysql", schemas=False, label="MySQL", default_port=3306),
}
SCHEMES: dict[str, EngineName] = {
    "postgresql": "postgresql",
    "postgres": "postgresql",
    "mysql": "mysql",
    "mariadb": "mysql",
}
# A query parameter whose name holds this carries a secret: libpq's and PyMySQL's `password`, `sslpassword` and
# `passwd` in any case, and whatever surrounds them (`??password=` where a `?` was left unencoded in the path).
_SECRET_PARAMETER = "passw"
# `password=...` in a keyword connection string, quoted or not.
_KEYWORD_SECRET = re.compile(r"""(?i)\b(password|sslpassword|passwd)\s*=\s*('(?:[^'\\]|\\.)*'?|\S*)""")
_BAD_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})")
EXAMPLES = "postgresql://user@host:5432/ or mysql://user@host:3306/"


def engine_of(source: str) -> EngineName | None:
    """The engine a source URL names by its scheme (in any case), or None when it names none."""
    return SCHEMES.get(source.partition("://")[0].lower()) if "://" in source else None


def has_schemas(engine: EngineName | None) -> bool:
    """Whether the engine's tables live in schemas; an engine not known yet (an Aurora ARN) may have them."""
    registered = ENGINES.get(engine) if engine is not None else None
    return registered is None or registered.schemas


def _unambiguous_parts(source: str) -> SplitResult | None:
    """The URL's parts when every parser reads them alike, else None.

    libpq takes the user info up to the first `@`, Python's parse up to the last; an unencoded `/`, `?` or `#`
    in a password ends it early; an unencoded `[` or `]` is taken for an IPv6 host; a `#` starts a fragment to
    Python only.
    """
    try:
        parts = urlsplit(source)
    except ValueError:
        return None
    scheme_length = len(source.partition("://")[0]) + 3
    if "@" in source[scheme_length + len(parts.netloc) :] or parts.netloc.count("@") > 1:
        return None
    if "#" in source:  # libpq reads no fragment: to it a `#` is part of the database name or of the query
        return None
    return parts


def redact(source: str) -> str:
    """The source without its password in any form: the only form that may appear in output, metadata or logs.

    A URL the standard parse can't split safely (an unencoded `@`, `/`, `?` or `#` in its password) loses
    everything before its last `@` but the user name: more than the password, never less.
    """
    scheme, separator, rest = source.partition("://")
    if not separator:  # a keyword connection string, say: nothing from its first secret keyword on is shown
        secret = _KEYWORD_SECRET.search(source)
        return source if secret is None else source[: secret.start()] + "..."
    parts = _unambiguous_parts(source)
    if parts is None:
        userinfo, _, location = rest.rpartition("@")
        user = userinfo.split(":", 1)[0].split("/", 1)[0]
        return _without_secret_parameters(f"{scheme.lower()}://{user}@{location}" if user else location)
    if parts.password is not None:
        user = parts.netloc.rsplit("@", 1)[0].split(":", 1)[0]
        host = parts.netloc.rsplit("@", 1)[1]
        parts = parts._replace(netloc=f"{user}@{host}" if user else host)
    return _without_secret_parameters(urlunsplit(parts))


def _without_secret_parameters(url: str) -> str:
    url = url.split("#", 1)[0]  # what follows a `#` may be libpq's query: none of it is shown
    try:
        parts = urlsplit(url)
    except ValueError:  # no telling where its query is: none of it is shown
        return url.split("?", 1)[0]
    if not parts.query:
        return url
    kept = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if _SECRET_PARAMETER not in k.lower()]
    return urlunsplit(parts._replace(query=urlencode(kept)))


def canonical(source: str) -> str:
    """The source URL as the drivers need it (its scheme in lower case); a malformed one is refused.

    The refusal says what is wrong and never quotes the URL's secret parts.
    """
    scheme, separator, _ = source.partition("://")
    if not separator:
        raise InvalidParameterValue(
            f"The source {redact(source)!r} is not a URL: give a PostgreSQL or MySQL URL such as {EXAMPLES}."
        )
    if engine_of(source) is None:
        raise InvalidParameterValue(
            f"The source {redact(source)!r} is not supported: give a PostgreSQL or MySQL URL such as {EXAMPLES} "
            "(Aurora cluster ARNs are for the AWS runtime)."
        )
    parts = _unambiguous_parts(source)
    if parts is None:
        raise InvalidParameterValue(
            f"The source URL {redact(source)!r} is not valid: percent-encode the characters @ / ? # % [ ] in its "
            "user name, password and database name (for example @ as %40 and / as %2F)."
        )
    if _BAD_ESCAPE.search(parts.netloc) or _BAD_ESCAPE.search(parts.path):
        raise InvalidParameterValue(
            f"The source URL {redact(source)!r} is not valid: a % in its user name, password or database name "
            "must start an escape such as %25 (for % itself)."
        )
    try:
        parts.port  # noqa: B018 (parsing the port is the check)
    except ValueError:
        raise InvalidParameterValue(
            f"The source URL {redact(source)!r} is not valid: its port must be a number from 0 to 65535."
        ) from None
    # Otherwise as given: a round trip through urlunsplit would drop an empty host (sqlite:///path).
    return scheme.lower() + source[len(scheme) :]


def secrets_of(source: str) -> list[str]:
    """The secrets a source holds, in every form they may be echoed in (as given and percent-decoded)."""
    found = []
    scheme, separator, rest = source.partition("://")
    if separator:
        userinfo = rest.rpartition("@")[0] if "@" in rest else ""
        if ":" in userinfo:
            found.append(userinfo.split(":", 1)[1])
        query = source.partition("?")[2].partition("#")[0]
        found += [v for k, v in parse_qsl(query, keep_blank_values=True) if _SECRET_PARAMETER in k.lower()]
    else:
        found += [m.group(2).strip("'") for m in _KEYWORD_SECRET.finditer(source)]
    forms = {form for secret in found if secret for form in (secret, unquote(secret), quote(unquote(secret), safe=""))}
    return sorted(forms, key=len, reverse=True)


def scrub(text: str, source: str) -> str:
    """A message with every form of the source's secrets taken out (a driver may echo what it was given)."""
    for secret in secrets_of(source):  # the longest first: one form may hold another
        text = text.replace(secret, "***")
    return text


# How a source identity names this machine: `localhost`, any loopback address, and no host or a socket's folder.
LOCAL_HOST = "localhost"


def source_identity(source: str) -> str:
    """The server a source names however it is spelled: the one-unfinished-export-per-source rule compares these.

    A URL's identity is its engine, host and port: the scheme's alias, the user, the password, the query and
    the database play no part (as for the anchor, whose rule is per cluster, an export of one database and an
    export of the whole cluster are the same source); every name of this machine is one, and no port is the
    engine's default. Anything else (an Aurora cluster ARN) is its own identity, in lower case as RDS names are.
    """
    scheme, separator, _ = source.partition("://")
    parts = _unambiguous_parts(source) if separator else None
    if parts is None:
        return source.lower()
    engine = engine_of(source) or scheme.lower()
    try:
        port = parts.port
    except ValueError:  # never a task's (canonical refuses it): the port as written
        port = None
    registered = ENGINES.get(engine)
    port = port or (registered.default_port if registered else None)
    host = _host_identity(unquote(parts.hostname or ""))
    host = f"[{host}]" if ":" in host else host
    return f"{engine}://{host}" + (f":{port}" if port else "")


def _host_identity(host: str) -> str:
    """A host name in lower case without its trailing dot, an address in its one written form; this machine as one."""
    host = host.lower().rstrip(".")
    if host in ("", LOCAL_HOST) or host.startswith("/"):  # a path is the folder of a local socket
        return LOCAL_HOST
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    # 0.0.0.0 and :: reach this machine too, as a destination.
    return LOCAL_HOST if address.is_loopback or address.is_unspecified else address.compressed
