"""The light states start without the data path, and neither runtime imports the other."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

from dbexport.aws import contract

ROOT = Path(__file__).resolve().parents[2]
# The data path: Parquet and the database drivers, a second or so of a cold start.
HEAVY = ("pyarrow", "adbc_driver_manager", "adbc_driver_postgresql", "psycopg", "pymysql")
# The states that only touch the task record, the clone and the metadata objects.
LIGHT = (
    contract.VALIDATE,
    contract.CHECK_ACCESS,
    contract.PREPARE_SOURCE,
    contract.SOURCE_READY,
    contract.RECORD_FAILURE,
    contract.CLEANUP,
)


@pytest.mark.parametrize("handler", LIGHT)
def test_a_light_handler_imports_no_data_path(handler: str) -> None:
    # A fresh interpreter: this one has loaded everything already.
    script = f"import json, sys, lambdas.{handler}; print(json.dumps(sorted(sys.modules)))"
    run = subprocess.run([sys.executable, "-c", script], cwd=ROOT, check=True, capture_output=True)
    loaded = json.loads(run.stdout)
    assert [m for m in loaded if m.split(".")[0] in HEAVY] == []


def imported_modules(path: Path) -> set[str]:
    """Every module a source file imports, at its top or inside a function."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found |= {node.module} | {f"{node.module}.{alias.name}" for alias in node.names}
    return found


def test_neither_runtime_imports_the_other() -> None:
    aws = sorted((ROOT / "dbexport" / "aws").glob("*.py"))
    local = [ROOT / "dbexport" / "local.py", ROOT / "dbexport" / "runner.py"]
    for path in aws:
        assert {"dbexport.local", "dbexport.runner"} & imported_modules(path) == set(), path.name
    for path in local:
        assert not [m for m in imported_modules(path) if m.startswith("dbexport.aws")], path.name
