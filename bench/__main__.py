"""`python -m bench`: dbexport against the COPY limit, ConnectorX and ADBC, on a generated dataset.

Every path runs --runs times, as a separate process each time, the paths taking turns run by run so the
machine's drift hits them all alike.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path

from bench import dataset, report
from bench.paths import CODECS, PATHS, ROOT, RSS_SOURCE, Case, measure

SIZES = (0.1, 1.0, 3.0)  # --scaling: table sizes relative to --scale


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--tables", nargs="+", choices=list(dataset.TABLES), default=list(dataset.TABLES))
    parser.add_argument("--paths", nargs="+", choices=PATHS, default=list(PATHS))
    parser.add_argument("--runs", type=int, default=3, help="runs of each path (default 3); the median is reported")
    parser.add_argument("--scale", type=float, default=1.0, help="1 = 6M lineitem rows and 1M wide rows (default 1)")
    parser.add_argument("--codec", choices=CODECS, default="zstd", help="Parquet codec of every path (default zstd)")
    parser.add_argument(
        "--workers",
        nargs="+",
        type=int,
        default=[1, 2, 4],
        help="dbexport --workers values to sweep on lineitem (default 1 2 4); the comparison itself uses nproc",
    )
    parser.add_argument(
        "--scaling", action="store_true", help=f"also dbexport at {', '.join(f'{s:g}x' for s in SIZES)} the scale"
    )
    parser.add_argument("--json", type=Path, metavar="PATH", help="write every figure here")
    parser.add_argument(
        "--baseline",
        type=Path,
        metavar="DIR",
        help="also run the dbexport package found in DIR (e.g. `git archive REV dbexport | tar -x -C DIR`), "
        "taking turns with this checkout's, to compare two versions under the same conditions",
    )
    return parser.parse_args(argv)


def environment(args: argparse.Namespace, workers: int, partition_mb: int) -> dict[str, object]:
    def git(*command: str) -> str:
        return subprocess.run(["git", *command], cwd=ROOT, capture_output=True, text=True).stdout.strip()

    return {
        "commit": git("rev-parse", "HEAD") or "unknown",
        "dirty": bool(git("status", "--porcelain", "--", "dbexport", "pyproject.toml")),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "nproc": os.cpu_count(),
        "postgres": dataset.server_version(),
        "versions": {p: version(p) for p in ("pyarrow", "connectorx", "adbc-driver-postgresql", "dbexport")},
        "scale": args.scale,
        "runs": args.runs,
        "codec": args.codec,
        "workers": workers,
        "partition_size_mb": partition_mb,
        "rss": RSS_SOURCE,
    }


def plan(args: argparse.Namespace, workers: int) -> list[report.Line]:
    """The report's lines, in order; the same case may appear in several sections (it is run once)."""
    tables = [dataset.TABLES[name] for name in args.tables]
    databases = {1.0: dataset.ensure(args.scale, tables)}
    if args.scaling and "dbexport" in args.paths:
        databases |= {size: dataset.ensure(args.scale * size, tables) for size in SIZES if size != 1.0}
    heap = {(db, t.name): dataset.heap_bytes(db, t) for db in databases.values() for t in tables}

    def line(section: str, case: Case, size: float = 1.0) -> report.Line:
        rows = dataset.TABLES[case.table].rows(args.scale * size)
        return report.Line(section, case, rows, heap[case.database, case.table], f"{size:g}x")

    main = databases[1.0]
    other_codec = "zstd" if args.codec == "gzip" else "gzip"
    lines = []
    for table in args.tables:
        for path in args.paths:
            if path != "dbexport":
                lines.append(line("paths", Case(path, table, main, args.codec, workers)))
                continue
            variants = [""] + ([str(args.baseline.resolve())] if args.baseline else [])
            for baseline in variants:
                lines.append(line("paths", Case(path, table, main, args.codec, workers, baseline=baseline)))
                lines.append(line("paths", Case(path, table, main, args.codec, workers, "typed", baseline)))
                lines.append(line("paths", Case(path, table, main, other_codec, workers, baseline=baseline)))
    if "dbexport" in args.paths and "lineitem" in args.tables:
        lines += [line("workers", Case("dbexport", "lineitem", main, args.codec, n)) for n in args.workers]
        if args.baseline:
            baseline = str(args.baseline.resolve())
            lines += [
                line("workers", Case("dbexport", "lineitem", main, args.codec, n, baseline=baseline))
                for n in args.workers
            ]
    if args.scaling and "dbexport" in args.paths:
        for table in args.tables:
            for size, database in sorted(databases.items()):
                lines.append(line("sizes", Case("dbexport", table, database, args.codec, workers), size))
    return lines


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    workers = os.cpu_count() or 2
    # dbexport's 256 MB partitions, scaled: a quick run splits its tables into as many partitions as scale 1.
    partition_mb = max(1, round(256 * args.scale))
    lines = plan(args, workers)
    bench = report.Bench(environment(args, workers, partition_mb), lines)
    cases = list(dict.fromkeys(line.case for line in lines))

    # One unmeasured COPY of each table first, so no path pays for a cold cache.
    for database, table in dict.fromkeys((c.database, c.table) for c in cases):
        measure(Case("copy", table, database, args.codec, workers), partition_mb)

    total = args.runs * len(cases)
    for run in range(args.runs):
        turn = run % len(cases)
        for i, case in enumerate(cases[turn:] + cases[:turn]):
            result = measure(case, partition_mb)
            bench.runs.setdefault(case, []).append(result)
            outcome = result.error or f"{result.seconds:.2f} s, {result.peak_rss_bytes / report.MB:.0f} MB RSS"
            done = run * len(cases) + i + 1
            print(
                f"[{done}/{total}] {case.database}.{case.table}: {case.label}: {outcome}", file=sys.stderr, flush=True
            )

    print(report.render(bench))
    if args.json:
        report.write_json(bench, args.json)
    failed = any(r.error for runs in bench.runs.values() for r in runs)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
