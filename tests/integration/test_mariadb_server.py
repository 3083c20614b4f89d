"""The tests' fallback when no MySQL/MariaDB server answers: a private MariaDB from the installed binaries."""

from __future__ import annotations

import pytest

from tests import mariadb
from tests.helpers import mysql_connect


@pytest.mark.skipif(mariadb.binaries() is None, reason="no MariaDB server binaries installed")
def test_a_private_server_starts_answers_as_root_and_stops(tmp_path):
    server = mariadb.PrivateServer(tmp_path)
    try:
        with mysql_connect(server.url) as conn, conn.cursor() as cur:
            cur.execute("SELECT CURRENT_USER(), @@port")
            assert cur.fetchone() == ("root@localhost", server.port)
    finally:
        server.stop()
    assert server.process.returncode is not None
