"""The `dbexport` command: argument parsing and printing only."""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tqdm import tqdm

from dbexport.errors import RdsError
from dbexport.local import run_export
from dbexport.models import MIB, ExportSettings, StartExportTaskRequest, Status

if TYPE_CHECKING:
    from collections.abc import Sequence

    from dbexport.models import ExportTask

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


def print_task(task: ExportTask) -> None:
    print(json.dumps(task.to_rds(), indent=4))


def _settings(args: argparse.Namespace) -> ExportSettings:
    return ExportSettings(
        type_mapping=args.type_mapping,
        compression=args.compression,
        workers=args.workers,
        partition_target_bytes=args.partition_size_mb * MIB,
        max_file_bytes=args.max_file_size_mb * MIB,
    )


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
    bar = ProgressBar() if args.wait and sys.stderr.isatty() else None
    printed_start = False

    def on_update(task: ExportTask) -> None:
        # Like the AWS CLI, answer with the task as soon as it exists; --wait answers again at the end.
        nonlocal printed_start
        if not printed_start and not args.wait:
            print_task(task)
            sys.stdout.flush()
        printed_start = True

    try:
        task = run_export(request, _settings(args), endpoint_url=args.endpoint_url, progress=bar, on_update=on_update)
    finally:
        if bar:
            bar.close()
    if args.wait:
        print_task(task)
    if task.status != Status.COMPLETE:
        print(f"Export task {task.export_task_identifier} {task.status.value}: {task.failure_cause}", file=sys.stderr)
        return 1
    return 0


def demo(args: argparse.Namespace) -> int:
    """Start PostgreSQL if needed, load the sample database, export it to a local directory."""
    from dbexport import server  # the demo's own dependencies stay out of the export path

    dsn = server.ensure_postgres(args.dsn)
    source = server.load_sample(dsn)
    output = Path(args.output).resolve()
    export_id = f"demo-{datetime.now(UTC):%Y%m%d%H%M%S}"
    request = StartExportTaskRequest(
        export_task_identifier=export_id,
        source_arn=source,
        s3_bucket_name=output.as_uri(),
    )
    bar = ProgressBar()
    started = time.monotonic()
    try:
        task = run_export(request, _settings(args), progress=bar)
    finally:
        bar.close()
    seconds = time.monotonic() - started
    print_task(task)
    files = sorted((output / export_id).rglob("*.parquet"))
    print(
        f"\n{task.status.value}: exported {bar.tables_done} tables, {bar.row_count:,} rows, "
        f"{sum(f.stat().st_size for f in files):,} bytes in {len(files)} Parquet files, in {seconds:.1f} s.\n"
        f"Files: {output / export_id}"
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
    commands = parser.add_subparsers(dest="command", required=True)

    start = commands.add_parser("start-export-task", help="export a cluster to S3 or a local directory")
    start.add_argument("--export-task-identifier", required=True)
    start.add_argument("--source-arn", required=True, help="postgresql://user@host:5432/[database]")
    start.add_argument("--s3-bucket-name", required=True, help="a bucket, or file:///path for a local directory")
    start.add_argument("--iam-role-arn")
    start.add_argument("--kms-key-id")
    start.add_argument("--s3-prefix", default="")
    start.add_argument("--export-only", nargs="+", default=[], metavar="NAME")
    start.add_argument("--endpoint-url", help="an S3-compatible endpoint (or set AWS_ENDPOINT_URL)")
    start.add_argument("--wait", action="store_true", help="show progress and print the finished task")
    _add_settings(start)
    start.set_defaults(run=start_export_task)

    sample = commands.add_parser("demo", help="export a sample database to a local directory")
    sample.add_argument(
        "--dsn",
        default="postgresql://postgres@127.0.0.1:5432/postgres",
        help="a server to load the sample into; one is started when none answers here",
    )
    sample.add_argument("--output", default="dbexport-demo-output")
    _add_settings(sample)
    sample.set_defaults(run=demo)
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
