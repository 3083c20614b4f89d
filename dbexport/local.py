"""The local runtime: one process, a coordinator holding each database's snapshot, and a worker pool."""

from __future__ import annotations

import logging
import random
import time
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from dbexport import outcomes, steps
from dbexport.destinations import S3Destination, open_destination
from dbexport.errors import DbExportError, ExportCanceled, ExportFailed, RetryableError
from dbexport.layout import settle_folders
from dbexport.leftovers import remove_staging
from dbexport.metadata import GB
from dbexport.models import ExportSettings, Status
from dbexport.outcomes import Failure, end_task
from dbexport.sources import for_url, with_application_name
from dbexport.tasks.lifecycle import percent_progress
from dbexport.urls import canonical, engine_of, scrub
from dbexport.validation import LOCAL_PREFIX, parse_export_only

if TYPE_CHECKING:
    from collections.abc import Callable

    from dbexport.api import Progress
    from dbexport.destinations import Destination
    from dbexport.models import ExportPlan, ExportTask, PartitionResult, PartitionWork

log = logging.getLogger(__name__)

# A partition whose read or write fails for a reason that may pass (RetryableError: a lost connection, S3
# throttling or 5xx) is exported again, up to this many attempts in all, after a backoff of
# RETRY_BASE_SECONDS * RETRY_BACKOFF_RATE ** (attempt - 1), at most RETRY_MAX_SECONDS, with full jitter: the
# AWS runtime's ExportPartition does the same through the ASL's Retry (statemachine/export.asl.json).
PARTITION_ATTEMPTS = 4
RETRY_BASE_SECONDS = 1.0
RETRY_BACKOFF_RATE = 2.0
RETRY_MAX_SECONDS = 20.0
# How often a backoff looks for a cancel.
_STOP_POLL_SECONDS = 0.1


@dataclass
class _Tracker:
    """Counts finished partitions per table and turns them into PercentProgress."""

    plans: list[ExportPlan]
    progress: Progress | None
    results: dict[str, list[PartitionResult]] = field(default_factory=dict)
    done_bytes: int = 0

    def __post_init__(self) -> None:
        self.total_bytes = sum(t.estimated_bytes for p in self.plans for t in p.tables) or 1
        if self.progress:
            self.progress.begin(sum(len(p.tables) for p in self.plans), self.total_bytes)

    def finished(self, work: PartitionWork, result: PartitionResult) -> None:
        table_results = self.results.setdefault(work.table.target, [])
        table_results.append(result)
        self.done_bytes += work.partition.estimated_bytes
        if self.progress:
            table_done = len(table_results) == len(work.table.partitions)
            self.progress.partition_done(work.partition.estimated_bytes, result.bytes_written, table_done)

    @property
    def percent(self) -> int:
        return percent_progress(self.done_bytes, self.total_bytes)

    @property
    def bytes_written(self) -> int:
        return sum(r.bytes_written for results in self.results.values() for r in results)


def run_export(
    task: ExportTask,
    source_url: str,
    settings: ExportSettings | None = None,
    *,
    destination: Destination | None = None,
    endpoint_url: str | None = None,
    progress: Progress | None = None,
    on_update: Callable[[ExportTask], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> ExportTask:
    """Run a validated task (see validation.validate_request) on this machine and return it finished.

    `source_url` is the source with its credentials; the task only ever holds the redacted form.
    A failure ends the task FAILED with a FailureCause instead of raising; when `should_stop`
    turns true, workers stop taking partitions and the task ends CANCELED, keeping what is written.
    """
    settings = settings or ExportSettings()
    source_url = with_application_name(canonical(source_url), task.export_task_identifier)
    selection = parse_export_only(task.export_only, engine_of(source_url))
    stop = should_stop or (lambda: False)

    def update(new: ExportTask | None = None, **changes: object) -> ExportTask:
        nonlocal task
        task = (new or task).model_copy(update=changes)
        if on_update:
            on_update(task)
        return task

    def checkpoint() -> None:
        if stop():
            raise ExportCanceled("The export task was canceled.")

    try:
        destination = destination or _checked_destination(task, endpoint_url)
        with ExitStack() as stack:
            snapshots = steps.open_snapshots(source_url, selection, stack, settings)
            update(snapshot_time=min((s.snapshot_time for s in snapshots.values()), default=None))
            outcomes.write_export_info(task, destination)
            checkpoint()
            plans = settle_folders(
                [steps.plan_database(snap, db, selection, settings) for db, snap in snapshots.items()]
            )
            checkpoint()
            update(status=Status.IN_PROGRESS)
            tracker = _Tracker(plans, progress)
            _export_partitions(source_url, task, plans, settings, destination, tracker, update, stop)
            verified = [
                steps.verify_table(plan, table, tracker.results.get(table.target, []), snapshots[plan.database].conn)
                for plan in plans
                for table in plan.tables
            ]
            update(steps.finalize(task, plans, verified, destination))
    except ExportCanceled:
        end_task(update, _opened(destination))
    except Exception as exc:
        # A driver may echo what it was given: the cause never holds the source's secrets.
        cause = scrub(outcomes.failure_cause(exc), source_url)
        end_task(update, _opened(destination), Failure(type(exc).__name__, cause))
    _remove_staging(task, destination)
    return task


def _remove_staging(task: ExportTask, destination: Destination | None) -> None:
    """The staging folder is empty now (every worker has stopped): no reader should find it, even empty."""
    if destination is None:
        return
    try:
        remove_staging(task, destination)
    except Exception as exc:  # the task has ended as it has; an empty folder left is no reason to change that
        log.warning("could not remove the staging folder of export %s: %s", task.export_task_identifier, exc)


def _checked_destination(task: ExportTask, endpoint_url: str | None) -> Destination:
    """The task's destination; on S3 with a role or a key, after the anchor's access preflight, as that role."""
    if task.s3_bucket.startswith(LOCAL_PREFIX) or not (task.iam_role_arn or task.kms_key_id):
        return open_destination(task.s3_bucket, task.kms_key_id, endpoint_url)
    from dbexport import preflight  # boto3: a tenth of a second to import, which a local directory never needs

    writer = preflight.run(preflight.target_for(task), endpoint_url=endpoint_url)
    return S3Destination(task.s3_bucket, task.kms_key_id, writer.client("s3"))


def _opened(destination: Destination | None) -> Callable[[ExportTask], Destination] | None:
    """The destination as end_task asks for it; None while none is opened."""
    return None if destination is None else lambda _task: destination


def _export_partitions(
    source: str,
    task: ExportTask,
    plans: list[ExportPlan],
    settings: ExportSettings,
    destination: Destination,
    tracker: _Tracker,
    update: Callable[..., ExportTask],
    should_stop: Callable[[], bool],
) -> None:
    """Export every partition on a pool of workers, largest first so the pool finishes together."""
    works = sorted(steps.partition_works(task, settings, plans), key=lambda w: -w.partition.estimated_bytes)
    engine = for_url(source)
    dsns = {plan.database: engine.database_dsn(source, plan.database) for plan in plans}
    on_rows = tracker.progress.rows if tracker.progress else None
    # The pool finishes first (the later context exits first), then the connections it left idle are closed.
    with (
        engine.connections_reused(dsns.values()),
        ThreadPoolExecutor(max_workers=settings.workers, thread_name_prefix="dbexport-worker") as pool,
    ):
        futures = {
            pool.submit(_export_with_retries, w, dsns[w.table.database], destination, on_rows, should_stop): w
            for w in works
        }
        pending = set(futures)
        failure: BaseException | None = None
        while pending:
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                if future.cancelled():
                    continue
                if (error := future.exception()) is None:
                    tracker.finished(futures[future], future.result())
                elif failure is None:
                    # Stop handing out partitions; those already running finish and count. The sources' errors
                    # name the table and partition.
                    failure = error
                    for other in pending:
                        other.cancel()
            update(percent_progress=tracker.percent, total_extracted_data_in_gb=tracker.bytes_written // GB)
        if failure is not None:
            raise failure


def _export_with_retries(
    work: PartitionWork,
    dsn: str,
    destination: Destination,
    on_rows: Callable[[int], None] | None,
    should_stop: Callable[[], bool],
) -> PartitionResult:
    """Export the partition; one that fails with a RetryableError is exported again after a backoff, up to
    PARTITION_ATTEMPTS in all (each attempt replaces the objects of the one before: the writer clears the folder)."""
    first_failure: RetryableError | None = None
    attempt = 1
    while True:
        counted: list[int] = []  # this attempt's rows, taken back from the count when it fails
        try:
            return _export_unless_stopped(work, dsn, destination, _counting(on_rows, counted), should_stop)
        except RetryableError as exc:
            if on_rows is not None and counted:
                on_rows(-sum(counted))
            if attempt == PARTITION_ATTEMPTS:
                raise
            first_failure = first_failure or exc
            delay = _backoff(attempt)
            log.warning(
                "%s partition %s, attempt %d of %d: %s; retrying in %.1f s",
                work.table.target, work.partition.index, attempt, PARTITION_ATTEMPTS, exc, delay,
            )  # fmt: skip
            _sleep_unless_stopped(delay, should_stop)
        except ExportCanceled:
            raise
        except DbExportError as exc:
            if first_failure is None:
                raise
            # The retry could not go on where the first attempt failed (a MySQL snapshot's lost connection can't be
            # replaced): the first failure is the cause, the retry's says why retrying did not help.
            raise ExportFailed(f"{first_failure} Retrying failed: {exc}") from exc
        attempt += 1


def _export_unless_stopped(
    work: PartitionWork,
    dsn: str,
    destination: Destination,
    on_rows: Callable[[int], None] | None,
    should_stop: Callable[[], bool],
) -> PartitionResult:
    if should_stop():
        raise ExportCanceled("The export task was canceled.")
    return steps.export_partition(work, dsn, destination, on_rows, should_stop)


def _counting(on_rows: Callable[[int], None] | None, counted: list[int]) -> Callable[[int], None] | None:
    """`on_rows`, also noting each count in `counted`."""
    if on_rows is None:
        return None

    def count(rows: int) -> None:
        counted.append(rows)
        on_rows(rows)

    return count


def _backoff(attempt: int) -> float:
    """Full jitter: a random wait up to the exponential backoff of this attempt."""
    return random.uniform(0, min(RETRY_MAX_SECONDS, RETRY_BASE_SECONDS * RETRY_BACKOFF_RATE ** (attempt - 1)))


def _sleep_unless_stopped(seconds: float, should_stop: Callable[[], bool]) -> None:
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        if should_stop():
            raise ExportCanceled("The export task was canceled.")
        time.sleep(min(left, _STOP_POLL_SECONDS))
