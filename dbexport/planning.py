"""Split a table into partitions of about a target size (pure)."""

from __future__ import annotations

from dbexport.models import Partition


def partition_count(estimated_bytes: int, target_bytes: int) -> int:
    """How many partitions a table of this size gets; small tables get one."""
    if target_bytes <= 0:
        raise ValueError(f"the partition target size must be positive, not {target_bytes}")
    # Integer ceiling: a float division rounds sizes of many terabytes.
    return max(1, -(-estimated_bytes // target_bytes))


def quantile_fractions(count: int) -> list[float]:
    """The inner cut points that split a distribution into `count` equal parts."""
    return [i / count for i in range(1, count)]


def split_by_key(key: str, boundaries: list[int], estimated_bytes: int) -> list[Partition]:
    """Key ranges cut at the given boundaries; the first and last ranges are open.

    Open ends mean a stale or sampled distribution can unbalance partitions but
    never lose a row.
    """
    cuts = sorted(set(boundaries))
    if not cuts:
        return [Partition(index="1", estimated_bytes=estimated_bytes)]
    bounds: list[int | None] = [None, *cuts, None]
    share = estimated_bytes // (len(bounds) - 1)
    return [
        Partition(index=str(i + 1), kind="key", key=key, lower=lo, upper=hi, estimated_bytes=share)
        for i, (lo, hi) in enumerate(zip(bounds, bounds[1:], strict=False))
    ]


def split_by_pages(pages: int, estimated_bytes: int, target_bytes: int) -> list[Partition]:
    """Ranges of heap pages (read by ctid), the last one open so pages added since are read too."""
    count = min(partition_count(estimated_bytes, target_bytes), max(pages, 1))
    if count == 1:
        return [Partition(index="1", estimated_bytes=estimated_bytes)]
    cuts = [round(pages * f) for f in quantile_fractions(count)]
    bounds: list[int | None] = [0, *cuts, None]
    share = estimated_bytes // count
    return [
        Partition(index=str(i + 1), kind="pages", lower=lo, upper=hi, estimated_bytes=share)
        for i, (lo, hi) in enumerate(zip(bounds, bounds[1:], strict=False))
    ]


def even_cuts(lowest: int, highest: int, count: int) -> list[int]:
    """Inner cut points that split [lowest, highest] into `count` ranges of equal width (for dense keys)."""
    return sorted({lowest + (highest - lowest) * i // count for i in range(1, count)} - {lowest})


def split_by_tuples(
    keys: list[str], boundaries: list[list[int | float | str]], estimated_bytes: int
) -> list[Partition]:
    """Ranges of key tuples cut at the given boundaries, which must ascend in the source's own order.

    Each row's key compares with one boundary after the other, so it falls in exactly one range: the first
    and last are open, and each inner bound is the upper bound of one range and the lower of the next.
    """
    if not boundaries:
        return [Partition(index="1", estimated_bytes=estimated_bytes)]
    bounds: list[list[int | float | str] | None] = [None, *boundaries, None]
    share = estimated_bytes // (len(bounds) - 1)
    return [
        Partition(index=str(i + 1), kind="tuple", keys=keys, lower_tuple=lo, upper_tuple=hi, estimated_bytes=share)
        for i, (lo, hi) in enumerate(zip(bounds, bounds[1:], strict=False))
    ]
