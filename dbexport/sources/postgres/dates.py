"""PostgreSQL's dates as date_out prints them, from the driver's date32 (which wraps beyond its range)."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

# The driver turns PostgreSQL's dates (days since 2000-01-01, int32) into Arrow's (days since 1970-01-01) by
# adding this in 32-bit arithmetic, which wraps for 'infinity' and dates near the end of PostgreSQL's range.
_DRIVER_DATE_OFFSET = 10_957
_POSTGRES_EPOCH_JDATE = 2_451_545  # the Julian day of 2000-01-01
_DATE_NOBEGIN, _DATE_NOEND = -(2**31), 2**31 - 1  # -infinity, infinity
# Arrow prints the dates of these years as PostgreSQL does (ISO, four digits, no era); the others are printed here.
_ARROW_DATE_RANGE = (-719_162, 2_932_896)  # 0001-01-01 and 9999-12-31, in days since 1970-01-01


def date_text(array: pa.Array) -> pa.Array:
    """date32 from the driver -> the text of PostgreSQL's date_out under DateStyle ISO, byte for byte.

    Each distinct date of the batch is formatted once (a batch holds a few thousand at most, typically).
    """
    encoded = pc.dictionary_encode(array)
    days = encoded.dictionary.view(pa.int32())
    outside = pc.or_(pc.less(days, _ARROW_DATE_RANGE[0]), pc.greater(days, _ARROW_DATE_RANGE[1]))
    if pc.any(outside).as_py():
        texts = pc.if_else(outside, pa.scalar(0, pa.int32()), days).view(pa.date32()).cast(pa.string())
        exotic = [_postgres_date(d) for d in days.filter(outside).to_pylist()]
        texts = pc.replace_with_mask(texts, outside, pa.array(exotic, pa.string()))
    else:
        texts = days.view(pa.date32()).cast(pa.string())
    return pc.take(texts, encoded.indices)


def _postgres_date(driver_days: int) -> str:
    """One date as date_out prints it (ISO), from the driver's days since 1970-01-01."""
    days = (driver_days - _DRIVER_DATE_OFFSET + 2**31) % 2**32 - 2**31  # undo the driver's wrapping addition
    if days == _DATE_NOEND:
        return "infinity"
    if days == _DATE_NOBEGIN:
        return "-infinity"
    year, month, day = _j2date(days + _POSTGRES_EPOCH_JDATE)
    # Years before 1 AD are printed as their BC year (year 0 is 1 BC), four digits at least.
    text = f"{year if year > 0 else 1 - year:04d}-{month:02d}-{day:02d}"
    return f"{text} BC" if year <= 0 else text


def _j2date(julian_day: int) -> tuple[int, int, int]:
    """PostgreSQL's j2date (datetime.c): a Julian day -> (year, month, day), year 0 being 1 BC."""
    julian = julian_day + 32044
    quad = julian // 146097
    extra = (julian - quad * 146097) * 4 + 3
    julian += 60 + quad * 3 + extra // 146097
    quad = julian // 1461
    julian -= quad * 1461
    y = julian * 4 // 1461
    julian = ((julian + 305) % 365 if y != 0 else (julian + 306) % 366) + 123
    y += quad * 4
    quad = julian * 2141 // 65536
    return y - 4800, (quad + 10) % 12 + 1, julian - 7834 * quad // 256
