"""The `dbexport` command: argument parsing and printing only."""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sys
import time
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tqdm import tqdm

from dbexport.errors import InvalidParameterValue, RdsError
from dbexport.models import MIB, ExportSettings, StartExportTaskRequest, Status
from dbexport.runner import SOURCE_URL_ENV, StateDir, default_state_dir, end_dead_runners, run_task, spawn_runner
from dbexport.tasks.lifecycle import DEFAULT_MAX_UNFINISHED, FINISHED, decode_marker, make_query
from dbexport.validation import validate_request

if TYPE_CHECKING:
    from collections.abc import Sequence

    from dbexport.models import ExportTask
    from dbexport.tasks import TaskStore
    from dbexport.tasks.sqlite import SqliteTaskStore

# How often `start-export-task --wait` asks a deployed stack how its task is doing.
AWS_POLL_SECONDS = 10.0
# The AWS CLI's exit code for an error returned by the service.
SERVICE_ERROR_EXIT = 254


class ProgressBar:
    """Tables, rows, bytes and ETA on a terminal, driven by the local runtime."""

    def __init__(self) -> None:
        self.bar: tqdm[Any] | None = None
        self.tables_done = self.tables = self.row_count = 0

    def begin(self, tables: int, estimated_bytes: int) -> None:
        self.tables = tables
        # A terminal that reports no size (a bare pty) would get an invisible bar: fall back to 80x24.
        size = shutil.get_terminal_size()
        self.bar = tqdm(
            total=estimated_bytes,
            unit="B",
            unit_scale=True,
            desc="exporting",
            file=sys.stderr,
            ncols=size.columns,
            nrows=size.lines,
        )
        self._describe()

    def rows(self, count: int) -> None:
        self.row_count += count
        self._describe()

    def partition_done(self, estimated_bytes: int, bytes_written: int, table_done: bool) -> None:
        self.tables_done += table_done
        assert self.bar is not None
        self.bar.update(estimated_bytes)
        self._describe()

    def _describe(self) -> None:
        if self.bar is not None:
            self.bar.set_postfix_str(f"tables {self.tables_done}/{self.tables}, rows {self.row_count:,}", refresh=False)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def print_json(value: dict[str, Any]) -> None:
    print(json.dumps(value, indent=4))


def _settings(args: argparse.Namespace) -> ExportSettings:
    return ExportSettings(
        type_mapping=args.type_mapping,
        compression=args.compression,
        workers=args.workers,
        partition_target_bytes=args.partition_size_mb * MIB,
        max_file_bytes=args.max_file_size_mb * MIB,
    )


def _state(args: argparse.Namespace) -> tuple[StateDir, SqliteTaskStore]:
    """The state directory and its task store, with tasks of dead runners ended first."""
    state = StateDir(Path(args.state_dir))
    store = state.store(args.max_unfinished_tasks)
    end_dead_runners(state, store)
    return state, store


def _store(args: argparse.Namespace) -> TaskStore:
    """The deployed stack's task table with --stack-name, else the local state directory's."""
    if args.stack_name:
        from dbexport.remote import DeployedStack

        return DeployedStack.named(args.stack_name).store()
    return _state(args)[1]


def _start(args: argparse.Namespace, request: StartExportTaskRequest, wait: bool) -> ExportTask:
    """Register the task, then run it here (wait) or in a detached runner (return at once)."""
    if args.stack_name:
        return _start_in_aws(args, request, wait)
    state, store = _state(args)
    task = store.create(validate_request(request), _settings(args))
    if not wait:
        spawn_runner(state, task.export_task_identifier, request.source_arn, args.endpoint_url)
        return task
    bar = ProgressBar() if sys.stderr.isatty() else None
    try:
        return run_task(store, state, task.export_task_identifier, request.source_arn, args.endpoint_url, bar)
    finally:
        if bar:
            bar.close()


def _start_in_aws(args: argparse.Namespace, request: StartExportTaskRequest, wait: bool) -> ExportTask:
    """Start the stack's state machine; with --wait, follow the task until it ends."""
    from dbexport.remote import DeployedStack, start

    stack = DeployedStack.named(args.stack_name)
    task = start(stack, request, _settings(args))
    store = stack.store()
    while wait and task.status not in FINISHED:
        time.sleep(AWS_POLL_SECONDS)
        task = store.get(task.export_task_identifier)
        print(f"{task.status.value} {task.percent_progress}%", file=sys.stderr)
    return task


def start_export_task(args: argparse.Namespace) -> int:
    request = StartExportTaskRequest(
        export_task_identifier=args.export_task_identifier,
        source_arn=args.source_arn,
        s3_bucket_name=args.s3_bucket_name,
        iam_role_arn=args.iam_role_arn,
        kms_key_id=args.kms_key_id,
        s3_prefix=args.s3_prefix,
        export_only=args.export_only,
    )
    task = _start(args, request, args.wait)
    print_json(task.to_rds())
    if args.wait and task.status != Status.COMPLETE:
        print(f"Export task {task.export_task_identifier} {task.status.value}: {task.failure_cause}", file=sys.stderr)
        return 1
    return 0


def describe_export_tasks(args: argparse.Namespace) -> int:
    from dbexport.urls import redact

    store = _store(args)
    # Tasks keep their source without its password: the URL a task was started with finds it all the same.
    filters = [f for text in args.filters for f in parse_filters(text)]
    for item in filters:
        if isinstance(item, dict) and item.get("Name") == "source-arn" and isinstance(item.get("Values"), list):
            item["Values"] = [redact(v) if isinstance(v, str) else v for v in item["Values"]]
    query = make_query(
        identifier=args.export_task_identifier,
        source_arn=redact(args.source_arn) if args.source_arn else None,
        source_type=args.source_type,
        filters=filters,
        max_records=args.max_records,
        marker=args.marker,
    )
    tasks, marker = store.describe(query)
    # Like the AWS CLI: all pages unless the caller pages by hand with --max-records or --marker.
    while marker is not None and args.max_records is None and args.marker is None:
        more, marker = store.describe(replace(query, after=decode_marker(marker)))
        tasks += more
    output: dict[str, Any] = {"ExportTasks": [t.to_rds() for t in tasks]}
    if marker is not None:
        output["Marker"] = marker
    print_json(output)
    return 0


def cancel_export_task(args: argparse.Namespace) -> int:
    store = _store(args)
    print_json(store.cancel(args.export_task_identifier).to_rds())
    return 0


def run_task_command(args: argparse.Namespace) -> int:
    """The detached runner's entry point (not for users)."""
    state, store = _state(args)
    task = run_task(store, state, args.identifier, os.environ[SOURCE_URL_ENV], os.environ.get("AWS_ENDPOINT_URL"))
    return 0 if task.status == Status.COMPLETE else 1


def parse_filters(text: str) -> list[dict[str, Any]]:
    """`--filters` in the AWS CLI's forms: JSON, or shorthand `Name=status,Values=complete,failed`."""
    if text.lstrip().startswith(("[", "{")):
        try:
            value = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InvalidParameterValue(
                f"Cannot parse the filter {text!r} as JSON: {exc}.", "DescribeExportTasks"
            ) from exc
        return value if isinstance(value, list) else [value]
    name, _, values = text.partition(",Values=")
    if not name.startswith("Name=") or not values:
        raise InvalidParameterValue(
            f"Cannot parse the filter {text!r}: use Name=NAME,Values=V1,V2 or JSON.", "DescribeExportTasks"
        )
    return [{"Name": name.removeprefix("Name="), "Values": values.split(",")}]


def demo(args: argparse.Namespace) -> int:
    """Start PostgreSQL if needed, load the sample database, export it to a local directory."""
    from dbexport import server  # the demo's own dependencies stay out of the export path

    source = server.load_sample(server.ensure_postgres(args.dsn))
    output = Path(args.output).resolve()
    request = StartExportTaskRequest(
        export_task_identifier=f"demo-{datetime.now(UTC):%Y%m%d%H%M%S}",
        source_arn=source,
        s3_bucket_name=output.as_uri(),
    )
    args.endpoint_url = None
    started = time.monotonic()
    task = _start(args, request, wait=True)
    seconds = time.monotonic() - started
    print_json(task.to_rds())
    folder = output / task.export_task_identifier
    files = sorted(folder.rglob("*.parquet"))
    tables_info = [json.loads(p.read_text()) for p in folder.glob("export_tables_info_*.json")]
    exported = [t for info in tables_info for t in info["perTableStatus"] if t.get("status") == "COMPLETE"]
    rows = sum(t["tableStatistics"]["exportedRowCount"] for t in exported)
    print(
        f"\n{task.status.value}: exported {len(exported)} tables, {rows:,} rows, "
        f"{sum(f.stat().st_size for f in files):,} bytes in {len(files)} Parquet files, in {seconds:.1f} s.\n"
        f"Files: {folder}"
    )
    return 0 if task.status == Status.COMPLETE else 1


def _add_settings(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--type-mapping",
        choices=["aurora", "typed"],
        default="aurora",
        help="aurora: the anchor's conversions (default); typed: DECIMAL, DATE, TIMESTAMP, LIST, ...",
    )
    parser.add_argument("--compression", choices=["gzip", "zstd", "snappy", "none"], default="gzip")
    parser.add_argument("--workers", type=int, default=2, help="partitions exported at once (default 2)")
    parser.add_argument("--partition-size-mb", type=int, default=256, help="target heap size of one partition")
    parser.add_argument("--max-file-size-mb", type=int, default=20_000, help="a Parquet file rolls over past this")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dbexport", description=__doc__)
    parser.add_argument("--debug", action="store_true", help="log what happens to stderr")
    parser.add_argument(
        "--state-dir",
        default=str(default_state_dir()),
        help="task records, events and runner logs (default: $DBEXPORT_STATE_DIR or ~/.local/state/dbexport)",
    )
    parser.add_argument(
        "--stack-name",
        default=os.environ.get("DBEXPORT_STACK_NAME"),
        help="run in AWS, through this deployed dbexport stack (default: $DBEXPORT_STACK_NAME)",
    )
    parser.add_argument(
        "--max-unfinished-tasks",
        type=int,
        default=DEFAULT_MAX_UNFINISHED,
        help="unfinished export tasks allowed at once (default 5)",
    )
    commands = parser.add_subparsers(dest="command", required=True)

    start = commands.add_parser("start-export-task", help="export a cluster to S3 or a local directory")
    start.add_argument("--export-task-identifier", required=True)
    start.add_argument(
        "--source-arn",
        required=True,
        help="postgresql://user@host:5432/[database], mysql://user@host:3306/[database] (or mariadb://), "
        "or with --stack-name a cluster ARN",
    )
    start.add_argument("--s3-bucket-name", required=True, help="a bucket, or file:///path for a local directory")
    start.add_argument("--iam-role-arn")
    start.add_argument("--kms-key-id")
    start.add_argument("--s3-prefix", default="")
    start.add_argument("--export-only", nargs="+", default=[], metavar="NAME")
    start.add_argument("--endpoint-url", help="an S3-compatible endpoint (or set AWS_ENDPOINT_URL)")
    start.add_argument("--wait", action="store_true", help="run here with a progress bar; print the finished task")
    _add_settings(start)
    start.set_defaults(run=start_export_task)

    describe = commands.add_parser("describe-export-tasks", help="list export tasks and their progress")
    describe.add_argument("--export-task-identifier")
    describe.add_argument("--source-arn")
    describe.add_argument("--source-type", choices=["SNAPSHOT", "CLUSTER"])
    describe.add_argument(
        "--filters", nargs="+", default=[], metavar="FILTER", help="Name=status,Values=in_progress,starting ... or JSON"
    )
    describe.add_argument("--max-records", type=int)
    describe.add_argument("--marker")
    describe.set_defaults(run=describe_export_tasks)

    cancel = commands.add_parser("cancel-export-task", help="stop a running export; written data stays")
    cancel.add_argument("--export-task-identifier", required=True)
    cancel.set_defaults(run=cancel_export_task)

    sample = commands.add_parser("demo", help="export a sample database to a local directory")
    sample.add_argument(
        "--dsn",
        default="postgresql://postgres@127.0.0.1:5432/postgres",
        help="a server to load the sample into; one is started when none answers here",
    )
    sample.add_argument("--output", default="dbexport-demo-output")
    _add_settings(sample)
    sample.set_defaults(run=demo)

    runner = commands.add_parser("run-task")  # started by start-export-task, in the background
    runner.add_argument("identifier")
    runner.set_defaults(run=run_task_command)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.debug else logging.WARNING, format="%(levelname)s %(name)s %(message)s"
    )
    try:
        result: int = args.run(args)
    except RdsError as exc:
        print(f"\n{exc}", file=sys.stderr)
        return SERVICE_ERROR_EXIT
    return result


if __name__ == "__main__":
    sys.exit(main())
