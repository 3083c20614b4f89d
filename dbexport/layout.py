"""Where each table's data lands: the one place where names from the database become folders.

Names from a database are hostile data: each becomes exactly one path element (never empty, `.` or `..`, never
holding a separator), and no two tables of an export, in any of its databases, share a folder.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from dbexport.destinations import STAGING_FOLDER, export_root
from dbexport.models import ExportPlan, SkippedTable
from dbexport.validation import sanitize_path_element

if TYPE_CHECKING:
    from dbexport.models import ExportTask, TablePlan

log = logging.getLogger(__name__)

# The anchor skips a table whose name holds `/`; a schema or database name with one is skipped the same way,
# and so is a name that would make a folder of `.` or `..` (or none) and point elsewhere in the bucket.
_SLASH_REASON = {"database": "DATABASE_NAME_HAS_SLASH", "schema": "SCHEMA_NAME_HAS_SLASH"}
NOT_A_FOLDER = "NAME_IS_NOT_A_FOLDER"
# Two tables whose names clean to the same folder (`a b` and `a_b`, in one database or in two): one is skipped.
PATH_CONFLICT = "TABLE_PATH_CONFLICT"


def folder_element(name: str) -> str | None:
    """A name as one path element, cleaned as the anchor cleans S3 paths; None when it can't be one."""
    element = sanitize_path_element(name)
    # The staging folder lies beside the databases: a database of that name would be written into it.
    if "/" in element or element in ("", ".", "..", STAGING_FOLDER):
        return None
    return element


def table_elements(table: TablePlan) -> tuple[str, str]:
    """`<database>` and `<schema>.<table>`, the two folders a table's data goes under; refuses unsafe names."""
    database, folder = folder_element(table.database), folder_element(f"{table.schema_}.{table.table}")
    if database is None or folder is None:  # settle_folders skips these: reaching here is a bug, not bad input
        raise ValueError(f"the table {table.target!r} has no safe folder")
    return database, folder


def table_folder(task: ExportTask, table: TablePlan) -> str:
    """`<prefix>/<export-id>/<database>/<schema>.<table>`."""
    return "/".join((export_root(task), *table_elements(table)))


def settle_folders(plans: list[ExportPlan]) -> list[ExportPlan]:
    """The plans with every table that has no safe folder of its own skipped, with its reason, across all databases.

    Of tables whose folders coincide, the one whose names needed no cleaning is kept, else the first planned.
    """
    kept: dict[tuple[str, str], TablePlan] = {}
    skipped: dict[str, list[SkippedTable]] = {p.database: [] for p in plans}
    warnings: dict[str, list[str]] = {p.database: [] for p in plans}
    tables = [t for p in plans for t in p.tables]
    # Tables whose folders are their own names come first, so they win a conflict whatever the catalog order.
    for table in sorted(tables, key=lambda t: not _uncleaned(t)):
        reason = _unsafe_reason(table)
        folder = None if reason else table_elements(table)
        if folder is not None and folder in kept:
            reason = PATH_CONFLICT
            warnings[table.database].append(
                f"The table {table.target} is not exported: its folder {'/'.join(folder)} is the folder of "
                f"{kept[folder].target}."
            )
        if reason is not None:
            log.warning("skipping %s: %s", table.target, reason)
            skipped[table.database].append(
                SkippedTable(
                    database=table.database,
                    schema=table.schema_,
                    table=table.table,
                    reason=reason,
                    engine=table.engine,
                )
            )
        elif folder is not None:
            kept[folder] = table
    exported = {id(t) for t in kept.values()}
    return [
        p.model_copy(
            update={
                "tables": [t for t in p.tables if id(t) in exported],
                "skipped": p.skipped + skipped[p.database],
                "general_warnings": p.general_warnings + warnings[p.database],
            }
        )
        for p in plans
    ]


def _unsafe_reason(table: TablePlan) -> str | None:
    for kind, name in (("database", table.database), ("schema", table.schema_)):
        if "/" in name:
            return _SLASH_REASON[kind]
    if folder_element(table.database) is None or folder_element(f"{table.schema_}.{table.table}") is None:
        return NOT_A_FOLDER
    return None


def _uncleaned(table: TablePlan) -> bool:
    return (table.database, f"{table.schema_}.{table.table}") == (
        sanitize_path_element(table.database),
        sanitize_path_element(f"{table.schema_}.{table.table}"),
    )
