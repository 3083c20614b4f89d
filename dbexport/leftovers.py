"""What an export leaves that no reader may see: its spool, its staging folder, half partitions of a dead runner.

Light (no pyarrow): every local command runs end_dead_runners, which calls this for the tasks it ends.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from dbexport.destinations import STAGING_FOLDER, SUCCESS_MARKER, export_root, open_destination, staging_root
from dbexport.outcomes import write_export_info

if TYPE_CHECKING:
    from dbexport.destinations import Destination
    from dbexport.models import ExportTask

log = logging.getLogger(__name__)

# `<database>/<schema>.<table>/<partition>/<object>` below the export root: how deep a partition's objects lie.
_PARTITION_OBJECT_DEPTH = 4


def spool_folder(identifier: str) -> Path:
    """Where the task's Parquet files are spooled before they reach the destination: named so it can be found."""
    return Path(tempfile.gettempdir()) / f"dbexport-spool-{identifier}"


def remove_spool(identifier: str) -> None:
    shutil.rmtree(spool_folder(identifier), ignore_errors=True)


def remove_staging(task: ExportTask, destination: Destination) -> None:
    """The staging folder of a local export, empty once every partition was renamed into place or removed."""
    destination.delete_prefix(staging_root(task) + "/")


def remove_half_partitions(task: ExportTask, destination: Destination) -> list[str]:
    """Delete the task's partition folders that hold objects but no `_SUCCESS`, and its staging; returns them."""
    root = export_root(task) + "/"
    folders: dict[str, set[str]] = {}
    for key in destination.keys(root):
        *parents, name = key.removeprefix(root).split("/")
        # Only the task's own partition folders: an export under a longer prefix may lie below this root.
        if len(parents) + 1 == _PARTITION_OBJECT_DEPTH and parents[0] != STAGING_FOLDER:
            folders.setdefault(root + "/".join(parents), set()).add(name)
    half = sorted(folder for folder, names in folders.items() if SUCCESS_MARKER not in names)
    for folder in half:
        destination.delete_prefix(folder + "/")
    remove_staging(task, destination)
    return half


def clean_after_dead_runner(task: ExportTask, endpoint_url: str | None = None) -> None:
    """Remove what a runner that died midway left, and rewrite export_info with the task's final status.

    Quiet: a destination that can't be reached now is logged, and the task stays ended as it is.
    """
    remove_spool(task.export_task_identifier)
    if task.snapshot_time is None:  # the runner writes nothing before its snapshot is taken
        return
    try:
        destination = open_destination(task.s3_bucket, task.kms_key_id, endpoint_url)
        for folder in remove_half_partitions(task, destination):
            log.info("removed the half-written partition %s of export task %s", folder, task.export_task_identifier)
        write_export_info(task, destination)
    except Exception as exc:  # whatever it is, the command that noticed the dead runner goes on
        log.warning("could not clean up after export task %s: %s", task.export_task_identifier, exc)
        log.debug("cleanup failure", exc_info=True)
