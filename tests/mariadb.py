"""A private MariaDB server for the tests, from the installed server binaries, when no server answers.

Like the embedded PostgreSQL: a data directory of its own under a temporary directory, root without a password
on 127.0.0.1 and a free port, stopped when the test session ends. `scripts/test` installs Debian's
mariadb-server first where neither a server nor its binaries are there.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

# Where Debian puts the server (/usr/sbin is not on every PATH).
_SEARCH = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/usr/local/sbin"])
_START_TIMEOUT_S = 30


def binaries() -> tuple[str, str] | None:
    """(install-db, server) of the installed MariaDB or MySQL, or None."""
    install_db = shutil.which("mariadb-install-db", path=_SEARCH) or shutil.which("mysql_install_db", path=_SEARCH)
    server = shutil.which("mariadbd", path=_SEARCH) or shutil.which("mysqld", path=_SEARCH)
    return (install_db, server) if install_db and server else None


class PrivateServer:
    """One MariaDB server process with its own data directory."""

    def __init__(self, root: Path):
        found = binaries()
        if found is None:
            raise RuntimeError(
                "no MariaDB server binaries (mariadb-install-db, mariadbd): apt-get install mariadb-server"
            )
        install_db, server = found
        self.root = root
        data = root / "data"
        user = _user()
        subprocess.run(
            [install_db, "--no-defaults", f"--datadir={data}", "--auth-root-authentication-method=normal"]
            + ["--skip-test-db", f"--user={user}"],
            check=True,
            capture_output=True,
            timeout=120,
        )
        self.port = _free_port()
        self.log = root / "server.log"
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                [server, "--no-defaults", f"--datadir={data}", f"--port={self.port}", "--bind-address=127.0.0.1"]
                + [f"--socket={root / 'mysqld.sock'}", f"--pid-file={root / 'mysqld.pid'}", f"--user={user}"],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self._wait_until_listening()

    @property
    def url(self) -> str:
        return f"mysql://root@127.0.0.1:{self.port}/"

    def _wait_until_listening(self) -> None:
        deadline = time.monotonic() + _START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the private MariaDB server exited: {self.log.read_text()[-2000:]}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"the private MariaDB server did not start in {_START_TIMEOUT_S} s: {self.log}")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()


def _user() -> str:
    import pwd

    return pwd.getpwuid(os.getuid()).pw_name


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])
