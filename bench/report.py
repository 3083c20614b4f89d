"""Figures from the runs: one aligned table on stdout, and a JSON file for comparing commits."""

from __future__ import annotations

import json
import statistics
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from bench.paths import Case

if TYPE_CHECKING:
    from pathlib import Path

    from bench.paths import Run

MB = 1024 * 1024


@dataclass(frozen=True)
class Line:
    """One line of the report: a measured case, in a section, on a table of known size."""

    section: str  # "paths", "workers" or "sizes"
    case: Case
    rows: int
    heap_bytes: int
    size: str = "1x"  # the table's size relative to the chosen scale


@dataclass
class Bench:
    """Everything measured in one invocation."""

    environment: dict[str, Any]
    lines: list[Line]
    runs: dict[Case, list[Run]] = field(default_factory=dict)

    def median(self, case: Case | None) -> float | None:
        good = [r.seconds for r in self.runs.get(case, []) if r.error is None] if case else []
        return statistics.median(good) if good else None

    def figures(self, line: Line) -> dict[str, Any]:
        case = line.case
        runs = self.runs.get(case, [])
        good = [r for r in runs if r.error is None]
        seconds = self.median(case)
        codec, workers = self.environment["codec"], self.environment["workers"]
        copy = Case("copy", case.table, case.database, codec, workers)
        dbexport = Case("dbexport", case.table, case.database, codec, workers)
        copy_seconds, dbexport_seconds = self.median(copy), self.median(dbexport)
        outputs = [r.output_bytes for r in good if r.output_bytes is not None]
        return {
            "section": line.section,
            "table": case.table,
            "size": line.size,
            "label": case.label,
            **{k: v for k, v in asdict(case).items() if k != "table"},
            "rows": line.rows,
            "heap_bytes": line.heap_bytes,
            "median_seconds": seconds,
            "rows_per_second": line.rows / seconds if seconds else None,
            "heap_mb_per_second": line.heap_bytes / MB / seconds if seconds else None,
            "peak_rss_mb": max(r.peak_rss_bytes for r in good) / MB if good else None,
            "output_bytes": max(outputs) if outputs else None,
            "ratio_to_copy": seconds / copy_seconds if seconds and copy_seconds else None,
            "ratio_to_dbexport": seconds / dbexport_seconds if seconds and dbexport_seconds else None,
            "runs": [asdict(r) for r in runs],
        }

    def gzip_over_zstd(self) -> dict[str, float]:
        """dbexport (aurora) end to end with gzip, divided by the same with zstd, per table."""
        ratios = {}
        for line in self.lines:
            case = line.case
            if (
                line.section == "paths"
                and case.path == "dbexport"
                and case.mapping == "aurora"
                and case.codec == "gzip"
            ):
                zstd = Case("dbexport", case.table, case.database, "zstd", case.workers, baseline=case.baseline)
                gzip_seconds, zstd_seconds = self.median(case), self.median(zstd)
                if gzip_seconds and zstd_seconds:
                    ratios[case.table + (" [baseline]" if case.baseline else "")] = gzip_seconds / zstd_seconds
        return ratios

    def targets(self) -> list[Target]:
        """The project's speed and memory targets (issue 7), each as measured here, or absent if not measured."""
        codec, workers = self.environment["codec"], self.environment["workers"]
        by_case = {(line.section, line.case): line for line in self.lines}

        def line(table: str, path: str = "dbexport", section: str = "paths") -> Line | None:
            database = next((ln.case.database for ln in self.lines if ln.section == "paths"), "")
            return by_case.get((section, Case(path, table, database, codec, workers)))

        def seconds(table: str, path: str = "dbexport") -> float | None:
            found = line(table, path)
            return self.median(found.case) if found else None

        def ratio(a: float | None, b: float | None) -> float | None:
            return a / b if a and b else None

        found = [
            Target(
                "lineitem: dbexport ÷ ConnectorX", ratio(seconds("lineitem"), seconds("lineitem", "connectorx")), 0.9
            ),
            Target("lineitem: dbexport ÷ COPY limit", ratio(seconds("lineitem"), seconds("lineitem", "copy")), 1.5),
        ]
        lineitem, wide = line("lineitem"), line("wide")
        if lineitem and wide:
            rows_per_second = {ln.case.table: ratio(ln.rows, self.median(ln.case)) for ln in (lineitem, wide)}
            found.append(
                Target(
                    "wide: lineitem's rows/s ÷ wide's", ratio(rows_per_second["lineitem"], rows_per_second["wide"]), 1.2
                )
            )
            found.append(
                Target(
                    "wide: its ÷COPY over lineitem's ÷COPY (rows/s relative to each table's limit)",
                    ratio(
                        ratio(seconds("wide"), seconds("wide", "copy")),
                        ratio(seconds("lineitem"), seconds("lineitem", "copy")),
                    ),
                    1.2,
                )
            )
        dbexport_rss = [
            self.figures(ln)["peak_rss_mb"]
            for ln in self.lines
            if ln.case.path == "dbexport" and ln.case.workers == workers and ln.case.mapping == "aurora"
        ]
        if rss := [r for r in dbexport_rss if r is not None]:
            found.append(
                Target(f"peak RSS MB, dbexport aurora, {workers} workers, every table and size", max(rss), 300)
            )
        for table in ("lineitem", "wide"):
            sizes = sorted(
                (ln for ln in self.lines if ln.section == "sizes" and ln.case.table == table), key=lambda ln: ln.rows
            )
            base = next((ln for ln in sizes if ln.size == "1x"), None)
            if base is not None and sizes[-1] is not base:
                # "Flat as the table grows 3x": the largest size against the chosen scale itself.
                largest, at_base = (self.figures(ln)["peak_rss_mb"] for ln in (sizes[-1], base))
                found.append(Target(f"{table}: peak RSS at {sizes[-1].size} ÷ at 1x", ratio(largest, at_base), 1.1))
        found += [Target(f"{table}: gzip ÷ zstd end to end", r, 1.3) for table, r in self.gzip_over_zstd().items()]
        return [t for t in found if t.value is not None]


@dataclass(frozen=True)
class Target:
    """A figure and the most it may be."""

    name: str
    value: float | None
    limit: float

    @property
    def met(self) -> bool:
        return self.value is not None and self.value <= self.limit


def _number(value: float | None, digits: int = 2, thousands: bool = False) -> str:
    if value is None:
        return "-"
    return f"{value:,.0f}" if thousands else f"{value:.{digits}f}"


def render(bench: Bench) -> str:
    env = bench.environment
    modified = " (dbexport/ modified)" if env["dirty"] else ""
    head = [
        f"dbexport benchmark at scale {env['scale']:g}, {env['date']}, commit {env['commit'][:10]}{modified}, "
        f"{env['nproc']} CPUs, PostgreSQL {env['postgres']}",
        f"Median of {env['runs']} run(s); codec {env['codec']}; ConnectorX partitions and dbexport workers "
        f"{env['workers']}; dbexport --partition-size-mb {env['partition_size_mb']}.",
        "MB = 2^20 bytes. MB/s: of source heap (pg_table_size). Peak RSS: the path's largest process "
        f"({env['rss']}). ÷COPY, ÷dbexport: median time over the COPY limit's, over dbexport aurora's.",
    ]
    header = [
        "table",
        "size",
        "rows",
        "path",
        "seconds",
        "rows/s",
        "MB/s",
        "peak RSS MB",
        "output MB",
        "÷COPY",
        "÷dbexport",
    ]
    body: list[list[str] | None] = []
    section = None
    for line in bench.lines:
        if section is not None and line.section != section:
            body.append(None)  # a rule between sections
        section = line.section
        f = bench.figures(line)
        failed = f["median_seconds"] is None
        output = f["output_bytes"] / MB if f["output_bytes"] is not None else None
        body.append(
            [
                f["table"],
                f["size"],
                f"{f['rows']:,}",
                f["label"],
                "FAILED" if failed else _number(f["median_seconds"]),
                _number(f["rows_per_second"], thousands=True),
                _number(f["heap_mb_per_second"], 1),
                _number(f["peak_rss_mb"], 0),
                _number(output, 1),
                _number(f["ratio_to_copy"]),
                _number(f["ratio_to_dbexport"]),
            ]
        )
    widths = [max(len(r[i]) for r in [header, *[b for b in body if b]]) for i in range(len(header))]
    right = {2, 4, 5, 6, 7, 8, 9, 10}

    def fmt(row: list[str]) -> str:
        return "  ".join(
            c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True))
        )

    rule = "-" * len(fmt(header))
    table = [fmt(header), rule] + [fmt(r) if r else rule for r in body]
    tail = ["Targets (median figures; each must be at most its limit):"] + [
        f"  {'met   ' if t.met else 'MISSED'} {t.name}: {_number(t.value)} (limit {t.limit:g})" for t in bench.targets()
    ]
    errors = {line.case: r.error for line in bench.lines for r in bench.runs.get(line.case, []) if r.error}
    tail += [f"FAILED {case.table} / {case.label}: {error}" for case, error in errors.items()]
    return "\n".join(head + [""] + table + ([""] + tail if tail else []))


def write_json(bench: Bench, path: Path) -> None:
    document = {
        **bench.environment,
        "results": [bench.figures(line) for line in bench.lines],
        "gzip_over_zstd": bench.gzip_over_zstd(),
        "targets": [{**asdict(t), "met": t.met} for t in bench.targets()],
    }
    path.write_text(json.dumps(document, indent=2) + "\n")
