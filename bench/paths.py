"""The paths compared, each run as its own process, timed and measured (peak RSS) from the outside.

`python -m bench.paths connectorx|adbc DSN TABLE OUT CODEC PARTITION_ON PARTITIONS` is the child process of
the two peer paths; psql and the dbexport CLI are run as they are.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from subprocess import DEVNULL

from bench.dataset import TABLES, dsn

ROOT = Path(__file__).resolve().parent.parent
PATHS = ("copy", "connectorx", "adbc", "dbexport")
CODECS = ("zstd", "gzip", "snappy", "none")
# dbexport writes gzip at level 1 (pyarrow's default level is ~15x slower): the peers get the same.
LEVELS = {"gzip": 1}


@dataclass(frozen=True)
class Case:
    """One thing to measure: a path on one table of one database, with its settings."""

    path: str
    table: str
    database: str
    codec: str
    workers: int  # ConnectorX partitions, dbexport workers; not used by copy and adbc
    mapping: str = "aurora"  # dbexport only
    # dbexport only: another checkout's dbexport package (its parent directory) instead of this one's, to
    # compare two versions in one run (see --baseline)
    baseline: str = ""

    @property
    def label(self) -> str:
        if self.path == "copy":
            return "COPY binary > /dev/null (psql)"
        if self.path == "connectorx":
            if TABLES[self.table].partition_on is None:
                return "ConnectorX, unpartitioned (uuid key)"
            return f"ConnectorX, {self.workers} partitions"
        if self.path == "adbc":
            return "ADBC, streamed"
        label = f"dbexport {self.mapping}, {self.workers} worker{'s' if self.workers > 1 else ''}, {self.codec}"
        return f"{label} [baseline]" if self.baseline else label


@dataclass
class Run:
    seconds: float
    peak_rss_bytes: int
    output_bytes: int | None  # Parquet bytes written; None for COPY into /dev/null
    error: str | None = None


def command(case: Case, out: Path, partition_mb: int) -> list[str]:
    url = dsn(case.database)
    if case.path == "copy":
        return [
            "psql",
            "-X",
            "-q",
            "-v",
            "ON_ERROR_STOP=1",
            "-d",
            url,
            "-c",
            f"COPY {case.table} TO STDOUT (FORMAT binary)",
        ]
    if case.path in ("connectorx", "adbc"):
        partition_on = TABLES[case.table].partition_on or ""
        return [sys.executable, "-m", "bench.paths", case.path, url, case.table, str(out / "part.parquet")] + [
            case.codec,
            partition_on,
            str(case.workers),
        ]
    identifier = f"bench-{time.time_ns()}"
    # The baseline's package comes first on PYTHONPATH (see measure), ahead of this checkout's editable install.
    program = (
        [sys.executable, "-m", "dbexport.cli"] if case.baseline else [str(Path(sys.executable).with_name("dbexport"))]
    )
    return [
        *program,
        "start-export-task",
        "--export-task-identifier",
        identifier,
        "--source-arn",
        url,
        "--s3-bucket-name",
        out.as_uri(),
        "--export-only",
        f"{case.database}.public.{case.table}",
        "--wait",
        "--compression",
        case.codec,
        "--type-mapping",
        case.mapping,
        "--workers",
        str(case.workers),
        "--partition-size-mb",
        str(partition_mb),
    ]


# GNU time reports the peak RSS of the command it runs (and of the descendants that command waited for).
# Without it, wait4()'s own figure is used, but that one also counts the benchmark's own resident set
# (~40 MB): a child forked from it inherits that high-water mark before it execs.
GNU_TIME = Path("/usr/bin/time")
RSS_SOURCE = "/usr/bin/time -f %M" if GNU_TIME.exists() else "wait4 ru_maxrss (includes the benchmark's own RSS)"


def measure(case: Case, partition_mb: int) -> Run:
    """Run the case once as a child process: wall time, peak RSS from the kernel, Parquet bytes written.

    The peak RSS is the kernel's ru_maxrss of the path's process tree: the largest resident set of the
    process and of every descendant it waited for (a worker process counts; processes are not summed).
    """
    with tempfile.TemporaryDirectory(prefix="dbexport-bench-") as tmp, tempfile.TemporaryFile() as stderr:
        out, state, rss = Path(tmp) / "out", Path(tmp) / "state", Path(tmp) / "rss"
        out.mkdir()
        env = {**os.environ, "DBEXPORT_STATE_DIR": str(state)}
        if case.baseline:
            # PYTHONSAFEPATH: `-m` must not put the working directory (this checkout) ahead of the baseline.
            env |= {
                "PYTHONPATH": os.pathsep.join(filter(None, [case.baseline, env.get("PYTHONPATH")])),
                "PYTHONSAFEPATH": "1",
            }
        argv = command(case, out, partition_mb)
        if GNU_TIME.exists():
            argv = [str(GNU_TIME), "-f", "%M", "-o", str(rss), *argv]
        started = time.perf_counter()
        child = subprocess.Popen(argv, stdin=DEVNULL, stdout=DEVNULL, stderr=stderr, cwd=ROOT, env=env)
        _, status, usage = os.wait4(child.pid, 0)
        seconds = time.perf_counter() - started
        child.returncode = os.waitstatus_to_exitcode(status)
        # GNU time's last line is %M in KiB (after "Command exited with non-zero status N" on failure).
        peak_kib = int(rss.read_text().split()[-1]) if GNU_TIME.exists() else usage.ru_maxrss
        error = None
        if child.returncode != 0:
            stderr.seek(0)
            lines = stderr.read().decode(errors="replace").strip().splitlines()
            error = f"exit {child.returncode}: " + " | ".join(lines[-3:])
        written = None if case.path == "copy" else sum(p.stat().st_size for p in out.rglob("*.parquet"))
        return Run(seconds, peak_kib * 1024, written, error)


# The peer paths, as child processes.


def connectorx_to_parquet(url: str, table: str, out: str, codec: str, partition_on: str, partitions: int) -> None:
    """ConnectorX reads the whole table into Arrow (split on a numeric column), then pyarrow writes it."""
    import connectorx as cx
    import pyarrow.parquet as pq

    query = f"SELECT * FROM {table}"
    if partition_on:
        data = cx.read_sql(url, query, return_type="arrow", partition_on=partition_on, partition_num=partitions)
    else:  # ConnectorX splits on numeric columns only: a uuid-keyed table is read by one thread
        data = cx.read_sql(url, query, return_type="arrow")
    pq.write_table(data, out, compression=codec, compression_level=LEVELS.get(codec))


def adbc_to_parquet(url: str, table: str, out: str, codec: str) -> None:
    """The ADBC PostgreSQL driver's record batches streamed into one ParquetWriter."""
    import adbc_driver_postgresql.dbapi as adbc
    import pyarrow.parquet as pq

    with adbc.connect(url) as conn, conn.cursor() as cursor:
        cursor.execute(f"SELECT * FROM {table}")
        reader = cursor.fetch_record_batch()
        with pq.ParquetWriter(out, reader.schema, compression=codec, compression_level=LEVELS.get(codec)) as writer:
            for batch in reader:
                writer.write_batch(batch)


def main(argv: list[str]) -> None:
    path, url, table, out, codec, partition_on, partitions = argv
    if path == "connectorx":
        connectorx_to_parquet(url, table, out, codec, partition_on, int(partitions))
    elif path == "adbc":
        adbc_to_parquet(url, table, out, codec)
    else:
        raise SystemExit(f"unknown path {path!r}")


if __name__ == "__main__":
    main(sys.argv[1:])
