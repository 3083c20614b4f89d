"""The benchmark's report judges each target from the medians it measured (no timing here: figures are given)."""

from __future__ import annotations

from bench.paths import Case, Run
from bench.report import Bench, Line, render

ENV = {
    "codec": "zstd",
    "workers": 2,
    "scale": 1,
    "date": "2026-12-02",
    "commit": "0" * 40,
    "dirty": False,
    "nproc": 2,
    "postgres": "15",
    "runs": 3,
    "partition_size_mb": 256,
    "rss": "/usr/bin/time",
}
MB = 1024 * 1024


def bench_with(seconds: dict[tuple[str, str, str, str], float], rss_mb: float = 250) -> Bench:
    """A Bench whose every case ran three times in the given seconds (path, table, codec, section)."""
    bench = Bench(ENV, [])
    for (path, table, codec, section), value in seconds.items():
        database = "db3" if section == "sizes-3x" else "db"
        case = Case(path, table, database, codec, 2)
        rows = 6_000_000 if table == "lineitem" else 1_000_000
        size = "3x" if section == "sizes-3x" else "1x"
        if section.startswith("sizes"):
            rows *= 3 if size == "3x" else 1
        bench.lines.append(Line(section.split("-")[0], case, rows, 900 * MB, size))
        peak = rss_mb * (1.5 if section == "sizes-3x" else 1)
        bench.runs[case] = [Run(value + d, int(peak * MB), 1) for d in (-0.1, 0, 0.1)]
    return bench


def test_each_target_is_judged_from_the_medians():
    bench = bench_with(
        {
            ("copy", "lineitem", "zstd", "paths"): 8.0,
            ("connectorx", "lineitem", "zstd", "paths"): 14.0,
            ("dbexport", "lineitem", "zstd", "paths"): 11.0,
            ("dbexport", "lineitem", "gzip", "paths"): 13.2,
            ("copy", "wide", "zstd", "paths"): 2.0,
            ("dbexport", "wide", "zstd", "paths"): 3.0,
            ("dbexport", "wide", "gzip", "paths"): 4.5,
            ("dbexport", "lineitem", "zstd", "sizes-1x"): 11.0,
            ("dbexport", "lineitem", "zstd", "sizes-3x"): 33.0,
        }
    )
    targets = {t.name: (round(t.value, 3), t.met) for t in bench.targets() if t.value is not None}
    assert targets["lineitem: dbexport ÷ ConnectorX"] == (round(11 / 14, 3), True)
    assert targets["lineitem: dbexport ÷ COPY limit"] == (1.375, True)
    assert targets["wide: lineitem's rows/s ÷ wide's"] == (round((6e6 / 11) / (1e6 / 3), 3), False)
    assert targets["wide: its ÷COPY over lineitem's ÷COPY (rows/s relative to each table's limit)"] == (
        round(1.5 / 1.375, 3),
        True,
    )
    assert targets["lineitem: gzip ÷ zstd end to end"] == (1.2, True)
    assert targets["wide: gzip ÷ zstd end to end"] == (1.5, False)
    assert targets["lineitem: peak RSS at 3x ÷ at 1x"] == (1.5, False)
    assert targets["peak RSS MB, dbexport aurora, 2 workers, every table and size"] == (375.0, False)
    text = render(bench)
    assert "  met    lineitem: dbexport ÷ COPY limit: 1.38 (limit 1.5)" in text
    assert "  MISSED wide: gzip ÷ zstd end to end: 1.50 (limit 1.3)" in text


def test_targets_not_measured_are_left_out():
    bench = bench_with({("dbexport", "lineitem", "zstd", "paths"): 11.0})
    assert [t.name for t in bench.targets()] == ["peak RSS MB, dbexport aurora, 2 workers, every table and size"]
