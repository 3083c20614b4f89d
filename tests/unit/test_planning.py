"""Splitting a table into partitions: key ranges, page ranges and how many (pure)."""

from __future__ import annotations

import math

import pytest

from dbexport.models import Partition
from dbexport.planning import (
    even_cuts,
    partition_count,
    quantile_fractions,
    split_by_key,
    split_by_pages,
    split_by_tuples,
)


def _covers(partitions: list[Partition], value: int) -> list[str]:
    """The indexes of the partitions whose [lower, upper) range holds `value`."""
    return [
        p.index for p in partitions if (p.lower is None or p.lower <= value) and (p.upper is None or value < p.upper)
    ]


@pytest.mark.parametrize(
    ("estimated", "target", "expected"),
    [(0, 100, 1), (1, 100, 1), (100, 100, 1), (101, 100, 2), (250, 100, 3), (10**12, 256 * 2**20, 3726)],
)
def test_partition_count(estimated: int, target: int, expected: int) -> None:
    assert partition_count(estimated, target) == expected


def test_partition_count_refuses_a_target_that_is_not_positive() -> None:
    with pytest.raises(ValueError, match="positive"):
        partition_count(100, 0)


def test_quantile_fractions_are_the_inner_cuts() -> None:
    assert quantile_fractions(1) == []
    assert quantile_fractions(4) == [0.25, 0.5, 0.75]


def test_split_by_key_open_ends() -> None:
    parts = split_by_key("id", [10, 20], 300)
    assert [(p.index, p.kind, p.key, p.lower, p.upper) for p in parts] == [
        ("1", "key", "id", None, 10),
        ("2", "key", "id", 10, 20),
        ("3", "key", "id", 20, None),
    ]
    # Keys far outside the sampled range still land in exactly one partition.
    for value in (-(2**63), -1, 9, 10, 19, 20, 2**63 - 1):
        assert len(_covers(parts, value)) == 1, value
    assert sum(p.estimated_bytes for p in parts) <= 300


def test_split_by_key_dedups_and_sorts_boundaries() -> None:
    parts = split_by_key("id", [30, 10, 10, 30, 20], 400)
    assert [(p.lower, p.upper) for p in parts] == [(None, 10), (10, 20), (20, 30), (30, None)]
    assert [p.index for p in parts] == ["1", "2", "3", "4"]


def test_split_by_key_without_boundaries_is_one_partition() -> None:
    (only,) = split_by_key("id", [], 123)
    assert only.kind == "all"
    assert only.index == "1"
    assert only.estimated_bytes == 123


@pytest.mark.parametrize(
    ("pages", "estimated", "target"),
    [(1, 10, 1), (5, 500, 100), (7, 1000, 100), (10, 1000, 100), (1000, 10**6, 3000), (3, 10**9, 1)],
)
def test_split_by_pages_covers_every_page_once(pages: int, estimated: int, target: int) -> None:
    parts = split_by_pages(pages, estimated, target)
    assert [p.index for p in parts] == [str(i) for i in range(1, len(parts) + 1)]
    assert len(parts) <= max(pages, 1)
    if len(parts) == 1:
        assert parts[0].kind == "all"
        return
    assert all(p.kind == "pages" for p in parts)
    # [0, inf) without gaps or overlaps: each partition starts where the previous one ends.
    assert parts[0].lower == 0
    assert parts[-1].upper is None
    for before, after in zip(parts, parts[1:], strict=False):
        assert before.upper == after.lower
        assert before.lower is not None and before.upper is not None and before.lower < before.upper
    # Pages added after planning (and far beyond) are read by the last partition.
    for page in (0, pages - 1, pages, 10 * pages + 7):
        assert len(_covers(parts, page)) == 1, page


def test_split_by_pages_count_follows_the_target() -> None:
    parts = split_by_pages(1000, 1000, 250)
    assert len(parts) == 4
    assert [(p.lower, p.upper) for p in parts] == [(0, 250), (250, 500), (500, 750), (750, None)]
    assert all(math.isclose(p.estimated_bytes, 250) for p in parts)


def test_split_by_pages_small_or_empty_table_is_one_partition() -> None:
    assert [p.kind for p in split_by_pages(0, 0, 100)] == ["all"]
    assert [p.kind for p in split_by_pages(0, 10**6, 100)] == ["all"]
    assert [p.kind for p in split_by_pages(50, 99, 100)] == ["all"]


@pytest.mark.parametrize(
    ("lowest", "highest", "count", "expected"),
    [(0, 100, 4, [25, 50, 75]), (-10, 10, 2, [0]), (5, 5, 3, []), (0, 2, 4, [1]), (-(2**63), 2**63 - 1, 2, [-1])],
)
def test_even_cuts(lowest: int, highest: int, count: int, expected: list[int]) -> None:
    assert even_cuts(lowest, highest, count) == expected


def test_key_tuple_ranges_chain_each_bound_and_leave_both_ends_open() -> None:
    parts = split_by_tuples(["a", "b"], [["k", 1], ["m", 0]], 300)
    assert [(p.index, p.kind, p.keys, p.lower_tuple, p.upper_tuple) for p in parts] == [
        ("1", "tuple", ["a", "b"], None, ["k", 1]),
        ("2", "tuple", ["a", "b"], ["k", 1], ["m", 0]),
        ("3", "tuple", ["a", "b"], ["m", 0], None),
    ]
    assert [p.estimated_bytes for p in parts] == [100, 100, 100]
    assert split_by_tuples(["a"], [], 7) == [Partition(index="1", estimated_bytes=7)]
