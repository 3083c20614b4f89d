"""The `dbexport` command: argument parsing and printing only; task operations go through dbexport.api."""

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

from dbexport.api import DescribeRequest
from dbexport.errors import DbExportError, InvalidParameterValue, RdsError
from dbexport.local_api import LocalApi
from dbexport.models import MIB, StartExportTaskRequest, Status
from dbexport.outcomes import UNKNOWN_ERROR
from dbexport.validation import export_settings

if TYPE_CHECKING:
    from collections.abc import Sequence

    from dbexport.api import ExportApi
    from dbexport.models import ExportSettings, ExportTask

# The AWS CLI's exit code for an error returned by the service.
SERVICE_ERROR_EXIT = 254


class WaitDisplay:
    """What `--wait` shows on stderr: a bar of tables, rows, bytes and ETA on a terminal, or a deployed stack's
    status and percentage each time it is asked."""

    def __init__(self, terminal: bool) -> None:
        self.terminal = terminal
        self.bar: tqdm[Any] | None = None
        self.tables_done = self.tables = self.row_count = 0

    def begin(self, tables: int, estimated_bytes: int) -> None:
        self.tables = tables
        if not self.terminal:
            return
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
        if self.bar is not None:
            self.bar.update(estimated_bytes)
        self._describe()

    def polled(self, task: ExportTask) -> None:
        print(f"{task.status.value} {task.percent_progress}%", file=sys.stderr)

    def _describe(self) -> None:
        if self.bar is not None:
            self.bar.set_postfix_str(f"tables {self.tables_done}/{self.tables}, rows {self.row_count:,}", refresh=False)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def print_json(value: dict[str, Any]) -> None:
    print(json.dumps(value, indent=4))


# The settings' names as the options that give them.
_SETTING_OPTIONS = {
    "workers": "--workers",
    "partition_target_bytes": "--partition-size-mb (in bytes)",
    "max_file_bytes": "--max-file-size-mb (in bytes)",
}


def _settings(args: argparse.Namespace) -> ExportSettings:
    values = {
        "type_mapping": args.type_mapping,
        "compression": args.compression,
        "workers": args.workers,
        "partition_target_bytes": args.partition_size_mb * MIB,
        "max_file_bytes": args.max_file_size_mb * MIB,
    }
    return export_settings(values, _SETTING_OPTIONS)


def _local(args: argparse.Namespace, endpoint_url: str | None = None) -> LocalApi:
    state_dir = Path(args.state_dir) if args.state_dir is not None else None
    return LocalApi(state_dir, args.max_unfinished_tasks, endpoint_url)


def _api(args: argparse.Namespace, endpoint_url: str | None = None) -> ExportApi:
    """The deployed stack with --stack-name, else this machine."""
    if args.stack_name:
        from dbexport.remote import DeployedStack  # boto3: not loaded for local tasks

        return DeployedStack.named(args.stack_name)
    return _local(args, endpoint_url)


def _start(
    args: argparse.Namespace, request: StartExportTaskRequest, wait: bool, endpoint_url: str | None = None
) -> ExportTask:
    api = _api(args, endpoint_url)
    display = WaitDisplay(terminal=sys.stderr.isatty()) if wait else None
    try:
        return api.start_export_task(request, _settings(args), wait=wait, display=display)
    finally:
        if display:
            display.close()


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
    task = _start(args, request, args.wait, args.endpoint_url)
    print_json(task.to_rds())
    if args.wait and task.status != Status.COMPLETE:
        cause = f": {task.failure_cause}" if task.failure_cause else ""  # a canceled task has none
        print(f"Export task {task.export_task_identifier} {task.status.value}{cause}", file=sys.stderr)
        return 1
    return 0


def describe_export_tasks(args: argparse.Namespace) -> int:
    api = _api(args)
    request = DescribeRequest(
        identifier=args.export_task_identifier,
        source_arn=args.source_arn,
        source_type=args.source_type,
        filters=[f for text in args.filters for f in parse_filters(text)],
        max_records=args.max_records,
        marker=args.marker,
    )
    page = api.describe_export_tasks(request)
    tasks = list(page.tasks)
    # Like the AWS CLI: all pages unless the caller pages by hand with --max-records or --marker.
    while page.marker is not None and args.max_records is None and args.marker is None:
        page = api.describe_export_tasks(replace(request, marker=page.marker))
        tasks += page.tasks
    output: dict[str, Any] = {"ExportTasks": [t.to_rds() for t in tasks]}
    if page.marker is not None:
        output["Marker"] = page.marker
    print_json(output)
    return 0


def cancel_export_task(args: argparse.Namespace) -> int:
    print_json(_api(args).cancel_export_task(args.export_task_identifier).to_rds())
    return 0


def run_task_command(args: argparse.Namespace) -> int:
    """The detached runner's entry point (not for users)."""
    task = _local(args).run_spawned_task(args.identifier)
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


DESCRIPTION = """\
Export the data of a live PostgreSQL or MySQL/MariaDB cluster to Amazon S3,
or to a local directory, as Parquet: the way Amazon Aurora's "Export DB
cluster data to Amazon S3" does, with the same commands, options, task fields,
statuses, error codes and files as `aws rds`.

Three commands, as in the AWS CLI: start-export-task starts an export,
describe-export-tasks follows it, cancel-export-task stops it. Exports run on
this machine, in the background, unless --stack-name names a deployed dbexport
stack, which runs them in AWS."""

EPILOG = """\
Local exports keep their task records, events (events.jsonl) and logs (logs/)
in the state directory: --state-dir, else $DBEXPORT_STATE_DIR, else
$XDG_STATE_HOME/dbexport, else ~/.local/state/dbexport.

Run `dbexport COMMAND --help` for a command's options. The README tells the
rest: the output layout, type mappings, MySQL, deploying to AWS."""

START_DESCRIPTION = """\
Starts an export task: the data of a cluster, or of the databases, schemas and
tables named by --export-only, written to an S3 bucket (or a local directory)
as Parquet, in Aurora's layout.

Prints the export task as `aws rds start-export-task` does and returns at
once: the export runs in a background process, logging to
<state dir>/logs/<identifier>.log. With --wait it runs here instead and the
finished task is printed; the exit status is then 1 unless the task is
COMPLETE. A refused request prints the AWS CLI's error and exits 254."""

DESCRIBE_DESCRIPTION = """\
Describes export tasks: their status, progress, and why one failed. Prints the
ExportTasks as `aws rds describe-export-tasks` does: every task, unless
--max-records or --marker pages by hand."""

CANCEL_DESCRIPTION = """\
Cancels an export task: it moves to CANCELING, its runner stops taking
partitions, and it ends CANCELED. Partitions already written stay in the
bucket. Prints the task as `aws rds cancel-export-task` does."""

DEMO_DESCRIPTION = """\
Loads a sample database into PostgreSQL (starting a server when none answers
at --dsn), exports it to a local directory with a progress bar, then says what
was written where."""


def _add_settings(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--type-mapping",
        choices=["aurora", "typed"],
        default="aurora",
        help="How columns become Parquet types: aurora, Aurora's conversions (the default); typed, with "
        "DECIMAL, DATE, TIMESTAMP and LIST columns.",
    )
    parser.add_argument(
        "--compression",
        choices=["gzip", "zstd", "snappy", "none"],
        default="gzip",
        help="The Parquet files' compression (default: gzip).",
    )
    parser.add_argument(
        "--workers", type=int, default=2, metavar="N", help="How many partitions are exported at once (default: 2)."
    )
    parser.add_argument(
        "--partition-size-mb",
        type=int,
        default=256,
        metavar="MB",
        help="The size of table heap that one partition aims at (default: 256).",
    )
    parser.add_argument(
        "--max-file-size-mb",
        type=int,
        default=20_000,
        metavar="MB",
        help="A Parquet file rolls over to the next one past this size (default: 20000).",
    )


def _command(commands: Any, name: str, summary: str, description: str) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = commands.add_parser(
        name, help=summary, description=description, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    return parser


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dbexport",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--debug", action="store_true", help="Log what happens to stderr, with the traceback of an unexpected error."
    )
    parser.add_argument(
        "--state-dir",
        metavar="DIR",
        help="The local exports' state directory (default: $DBEXPORT_STATE_DIR, else $XDG_STATE_HOME/dbexport, "
        "else ~/.local/state/dbexport).",
    )
    parser.add_argument(
        "--stack-name",
        metavar="NAME",
        default=os.environ.get("DBEXPORT_STACK_NAME"),
        help="Run the command in AWS, through this deployed dbexport stack (default: $DBEXPORT_STACK_NAME).",
    )
    parser.add_argument(
        "--max-unfinished-tasks",
        type=int,
        metavar="N",
        help="How many local export tasks may be unfinished at once (default: 5).",
    )
    # The metavar keeps the internal run-task command out of the usage line.
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", title="commands")

    start = _command(commands, "start-export-task", "Export a cluster to S3 or a local directory.", START_DESCRIPTION)
    start.add_argument(
        "--export-task-identifier",
        required=True,
        metavar="ID",
        help="A unique identifier for the export task: 1 to 60 letters, digits and hyphens, starting with a "
        "letter. It is never reused, and it names the export's folder.",
    )
    start.add_argument(
        "--source-arn",
        required=True,
        metavar="SOURCE",
        help="The cluster to export: postgresql://user@host:5432/[database] or mysql://user@host:3306/[database] "
        "(or mariadb://); without a database, every database of the cluster. A password in the URL is used "
        "to connect and never shown. With --stack-name, the Amazon Resource Name (ARN) of the Aurora cluster.",
    )
    start.add_argument(
        "--s3-bucket-name",
        required=True,
        metavar="BUCKET",
        help="The name of the Amazon S3 bucket to export the data to, or file:///path for a local directory.",
    )
    start.add_argument(
        "--iam-role-arn",
        metavar="ARN",
        help="The IAM role to write to the bucket as. Its access is checked before anything is written.",
    )
    start.add_argument(
        "--kms-key-id",
        metavar="KEY",
        help="The AWS KMS key that encrypts the exported data (SSE-KMS): its ARN, key ID, alias name or alias "
        "ARN. Its access is checked before anything is written.",
    )
    start.add_argument(
        "--s3-prefix",
        default="",
        metavar="PREFIX",
        help="The Amazon S3 bucket prefix to use as the file name and path of the exported data.",
    )
    start.add_argument(
        "--export-only",
        nargs="+",
        default=[],
        metavar="NAME",
        help="The data to export; all of it when not given. PostgreSQL: database, database.schema or "
        "database.schema.table; MySQL: database or database.table.",
    )
    start.add_argument(
        "--endpoint-url",
        metavar="URL",
        help="An S3-compatible endpoint to write to instead of Amazon S3 (default: $AWS_ENDPOINT_URL).",
    )
    start.add_argument(
        "--wait",
        action="store_true",
        help="Return when the task has ended, and print it finished. Locally, the export runs in this process, "
        "with a progress bar on a terminal; with --stack-name, its status is printed as it goes.",
    )
    _add_settings(start)
    start.set_defaults(run=start_export_task)

    describe = _command(
        commands, "describe-export-tasks", "List export tasks and their progress.", DESCRIBE_DESCRIPTION
    )
    describe.add_argument(
        "--export-task-identifier", metavar="ID", help="The identifier of the export task to describe."
    )
    describe.add_argument(
        "--source-arn",
        metavar="SOURCE",
        help="Only the tasks exporting this source: its URL, with or without its password (with --stack-name, "
        "the cluster's ARN).",
    )
    describe.add_argument(
        "--source-type", choices=["SNAPSHOT", "CLUSTER"], help="Only the tasks exporting this type of source."
    )
    describe.add_argument(
        "--filters",
        nargs="+",
        default=[],
        metavar="FILTER",
        help="Only the tasks that match every filter, in the AWS CLI's shorthand Name=status,Values=complete,failed "
        "or as JSON. Names: export-task-identifier, s3-bucket, source-arn, source-type and status (starting, "
        "in_progress, canceling, canceled, complete, failed). Names and values are case-sensitive.",
    )
    describe.add_argument(
        "--max-records",
        type=int,
        metavar="N",
        help="The most tasks to print, 20 to 100. When more exist, a Marker follows them.",
    )
    describe.add_argument(
        "--marker", help="The Marker a previous describe-export-tasks printed: the tasks after it are printed."
    )
    describe.set_defaults(run=describe_export_tasks)

    cancel = _command(commands, "cancel-export-task", "Stop an export; what it wrote stays.", CANCEL_DESCRIPTION)
    cancel.add_argument(
        "--export-task-identifier", required=True, metavar="ID", help="The identifier of the export task to cancel."
    )
    cancel.set_defaults(run=cancel_export_task)

    sample = _command(commands, "demo", "Export a sample database to a local directory.", DEMO_DESCRIPTION)
    sample.add_argument(
        "--dsn",
        default="postgresql://postgres@127.0.0.1:5432/postgres",
        help="The PostgreSQL server to load the sample into; one is started when none answers here "
        "(default: %(default)s).",
    )
    sample.add_argument(
        "--output",
        default="dbexport-demo-output",
        metavar="DIR",
        help="The directory to export to (default: %(default)s).",
    )
    _add_settings(sample)
    sample.set_defaults(run=demo)

    # The detached runner that start-export-task spawns: a description but no help, so it is not listed.
    runner = commands.add_parser("run-task", description="Runs a started export task; start-export-task uses it.")
    runner.add_argument("identifier")
    runner.set_defaults(run=run_task_command)
    return parser


class _WithoutTraceback(logging.Formatter):
    """One line per record on a user's terminal: tracebacks go to the task's log, or to stderr with --debug."""

    def format(self, record: logging.LogRecord) -> str:
        # A copy: the log file's handler may have formatted (and cached) the traceback on the record itself.
        plain = logging.makeLogRecord({**record.__dict__, "exc_info": None, "exc_text": None, "stack_info": None})
        return super().format(plain)


def _log_to_stderr(args: argparse.Namespace) -> None:
    # The detached runner's stderr is its log file: it keeps tracebacks.
    full = args.debug or args.command == "run-task"
    handler = logging.StreamHandler()
    handler.setFormatter((logging.Formatter if full else _WithoutTraceback)("%(levelname)s %(name)s %(message)s"))
    logging.basicConfig(level=logging.INFO if args.debug else logging.WARNING, handlers=[handler])


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _log_to_stderr(args)
    try:
        result: int = args.run(args)
    except RdsError as exc:
        print(f"\n{exc}", file=sys.stderr)
        return SERVICE_ERROR_EXIT
    except DbExportError as exc:  # ours: the message says what failed and what to check
        print(f"dbexport: {exc}", file=sys.stderr)
        return 1
    except Exception:
        if args.debug:
            raise  # the traceback, for a bug report
        print(f"dbexport: {UNKNOWN_ERROR} Run the command again with --debug to see where.", file=sys.stderr)
        return 1
    return result


if __name__ == "__main__":
    sys.exit(main())
