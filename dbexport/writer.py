"""Arrow batches -> Parquet objects in the anchor's layout, on a destination (dbexport.destinations)."""

from __future__ import annotations

import errno
import logging
import queue
import tempfile
import threading
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from dbexport.destinations import SUCCESS_MARKER, LocalDestination
from dbexport.errors import ExportCanceled, ExportFailed

if TYPE_CHECKING:
    from collections.abc import Callable, Generator, Iterable, Iterator

    from dbexport.destinations import Destination
    from dbexport.models import ExportSettings

log = logging.getLogger(__name__)

_SUFFIX = {"gzip": ".gz", "zstd": ".zstd", "snappy": ".snappy", "none": ""}
# pyarrow's default gzip level took 15x longer than level 1 for files 2% smaller.
_LEVEL = {"gzip": 1}
# Columns whose first row group has more distinct values than this share of its rows are written without a
# dictionary: Parquet's dictionary encoder would fill its page, fall back to plain encoding, and have cost
# time and bytes for nothing (lineitem, zstd: 18% less encoding time, 17% smaller files).
DICTIONARY_MAX_DISTINCT = 0.2
# Columns whose first row group the codec shrinks by less than this share are written uncompressed: random
# bytes (hashes, ciphertext, ids) cost gzip 0.9 s per 30 MB on the benchmark's wide table to save 6%.
COMPRESSION_MIN_SAVING = 0.1
_COMPRESSION_SAMPLE_BYTES = 256 * 1024
# Parquet keeps no min/max statistics of a column chunk whose min or max is longer than this (Arrow's
# max_statistics_size), yet computes them first: about six copies of each value (a 100 MB value cost 600 MB).
# A column that holds a longer value is written without statistics, which it would mostly lose anyway.
STATISTICS_MAX_VALUE_BYTES = 4096
# A value longer than a dictionary page (Parquet's default limit) makes the encoder give its dictionary up at once:
# such a column is written without one, and without counting its distinct values (a copy of each).
_DICTIONARY_PAGE_BYTES = 1024 * 1024


@dataclass(frozen=True)
class WrittenPartition:
    rows: int
    bytes_written: int
    objects: list[str]


class _RollingParquet:
    """The Parquet files of one partition attempt: spooled locally, uploaded whole, rolled over by size."""

    def __init__(self, destination: Destination, folder: str, schema: pa.Schema, settings: ExportSettings, spool: Path):
        self.destination, self.folder, self.schema, self.settings = destination, folder, schema, settings
        self.path = spool / "part.parquet"
        self.attempt = uuid.uuid4()
        self.writer: pq.ParquetWriter | None = None
        self.objects: list[str] = []
        self.bytes_written = 0
        self.layout: _Layout | None = None  # how each column is written, chosen from the first row group
        self.unstatistical: set[str] = set()  # columns that held a value too long for statistics

    def write(self, batch: pa.RecordBatch) -> None:
        # One row group per slice (a batch of the driver's is all in memory already: gathering several into one
        # row group would hold more); a file rolls over between row groups.
        for offset in range(0, batch.num_rows, self.settings.row_group_rows):
            group = batch.slice(offset, self.settings.row_group_rows)
            long_values = _long_value_columns(group) - self.unstatistical
            if long_values:
                # Statistics are chosen per file: the file so far keeps its own, the next goes without them.
                if self.writer is not None:
                    self._finish_file()
                self.unstatistical |= long_values
            self._writer(group).write_batch(group)
            if self.path.stat().st_size >= self.settings.max_file_bytes:
                self._finish_file()

    def close(self, write_empty: bool) -> None:
        if write_empty and not self.objects:
            self._writer(None)
        if self.writer is not None:
            self._finish_file()

    def _writer(self, group: pa.RecordBatch | None) -> pq.ParquetWriter:
        if self.writer is None:
            if self.layout is None and group is not None:
                self.layout = _Layout.of(group, self.settings.compression)
            layout = self.layout or _Layout.of(None, self.settings.compression)
            self.writer = pq.ParquetWriter(
                self.path,
                self.schema,
                compression=layout.compression,
                compression_level=layout.compression_level,
                use_dictionary=layout.dictionary,
                write_statistics=[f.name for f in self.schema if f.name not in self.unstatistical],
            )
        return self.writer

    def _finish_file(self) -> None:
        assert self.writer is not None
        self.writer.close()
        self.writer = None
        suffix = _SUFFIX[self.settings.compression]
        key = f"{self.folder}/part-00000-{self.attempt}-c{len(self.objects):03d}{suffix}.parquet"
        self.bytes_written += self.path.stat().st_size
        self.destination.put_file(self.path, key)
        self.objects.append(key)


@dataclass(frozen=True)
class _Layout:
    """Per column: a dictionary or not, the codec or none (ParquetWriter's use_dictionary and compression)."""

    dictionary: list[str] | bool
    compression: dict[str, str] | str
    compression_level: dict[str, int] | None

    @classmethod
    def of(cls, group: pa.RecordBatch | None, codec: str) -> _Layout:
        """The layout for a partition whose first row group is `group` (None: an empty partition)."""
        if group is None:
            return cls(True, codec, None)
        dictionary, compression = [], {}
        too_long = _long_value_columns(group, _DICTIONARY_PAGE_BYTES)
        for spec, column in zip(group.schema, group.columns, strict=True):
            if isinstance(spec.type, pa.BaseExtensionType):  # uuid, json: what is encoded is their storage
                column = column.storage
            if pa.types.is_nested(column.type):
                compression[spec.name] = codec
                continue
            if spec.name not in too_long and _few_distinct(column):
                dictionary.append(spec.name)
                compression[spec.name] = codec
            else:
                compression[spec.name] = codec if _compressible(column, codec) else "none"
        levels = {name: _LEVEL[c] for name, c in compression.items() if c in _LEVEL}
        return cls(dictionary, compression, levels or None)


def _long_value_columns(group: pa.RecordBatch, longest_kept: int = STATISTICS_MAX_VALUE_BYTES) -> set[str]:
    """The string and binary columns of the group holding a value longer than `longest_kept` bytes."""
    found = set()
    for spec, column in zip(group.schema, group.columns, strict=True):
        if isinstance(column.type, pa.BaseExtensionType):
            column = column.storage
        if _variable_length(column.type) and len(column):
            longest = pc.max(pc.binary_length(column)).as_py()
            if longest is not None and longest > longest_kept:
                found.add(spec.name)
    return found


def _variable_length(kind: pa.DataType) -> bool:
    return bool(
        pa.types.is_string(kind)
        or pa.types.is_large_string(kind)
        or pa.types.is_binary(kind)
        or pa.types.is_large_binary(kind)
    )


def _few_distinct(column: pa.Array) -> bool:
    """Few enough distinct values to be worth a dictionary."""
    return bool(pc.count_distinct(column, mode="all").as_py() <= DICTIONARY_MAX_DISTINCT * len(column))


def _compressible(column: pa.Array, codec: str) -> bool:
    """Whether the codec saves at least COMPRESSION_MIN_SAVING on a sample of the column's values."""
    if codec == "none" or len(column) == 0:
        return True
    values = column.buffers()[-1]  # the values (binary and string: their bytes), without validity or offsets
    if values is None or values.size < 4096:  # too little to judge, and too little to matter
        return True
    sample = values.slice(0, min(values.size, _COMPRESSION_SAMPLE_BYTES))
    compressed = pa.Codec(codec, _LEVEL.get(codec)).compress(sample)
    return bool(compressed.size <= (1 - COMPRESSION_MIN_SAVING) * sample.size)


class _Prefetched:
    """Batches pulled from `source` by a thread of its own, up to `depth` ahead of the consumer.

    The driver reads and decodes the next batch (and the server produces it) while this thread
    encodes and compresses the last one: pyarrow and the driver release the GIL while they work.
    """

    _END = object()

    def __init__(self, source: Iterable[pa.RecordBatch], depth: int = 1):
        self.source = source
        self.queue: queue.Queue[Any] = queue.Queue(maxsize=depth)
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._run, name=f"{threading.current_thread().name}-reader", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        iterator = iter(self.source)
        try:
            for batch in iterator:
                if not self._put(batch):
                    return
                del batch  # not held while the next is read
            self._put(self._END)
        except BaseException as exc:  # handed to the consumer, which raises it
            self._put(exc)
        finally:
            close = getattr(iterator, "close", None)
            if close is not None:
                close()  # in this thread, the one that used the source's connection

    def _put(self, item: object) -> bool:
        while not self.stopped.is_set():
            try:
                self.queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def __iter__(self) -> Iterator[pa.RecordBatch]:
        while True:
            item = self.queue.get()
            if item is self._END:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
            del item  # not held while the next is read

    def close(self) -> None:
        """Stop the reader (if it still runs) and wait for it to let go of its source."""
        self.stopped.set()
        while self.thread.is_alive():
            try:
                self.queue.get(timeout=0.1)
            except queue.Empty:
                pass
        self.thread.join()


def write_partition(
    batches: Iterable[pa.RecordBatch],
    schema: pa.Schema,
    destination: Destination,
    folder: str,
    settings: ExportSettings,
    write_empty: bool,
    on_batch: Callable[[int], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    staging: str | None = None,
    spool: Path | None = None,
) -> WrittenPartition:
    """Write one partition's folder: Parquet files rolled over at the size limit, then `_SUCCESS`.

    A retry replaces the folder's objects, never adds a second copy; a partition that fails or is
    canceled midway leaves no objects behind. On a local destination with a `staging` folder, the
    partition is written there and renamed into place whole. Files are spooled under `spool` (the
    temporary directory without it). An empty partition writes no file unless `write_empty` (so an
    empty table still has one file carrying its schema).
    """
    staged = _staged_folder(destination, folder, staging)
    destination.delete_prefix(staged + "/")
    rows = 0
    reader = _Prefetched(batches)
    try:
        with _spool(spool) as spooled:
            files = _RollingParquet(destination, staged, schema, settings, Path(spooled))
            for batch in reader:
                if should_stop is not None and should_stop():
                    raise ExportCanceled("The export task was canceled.")
                files.write(batch)
                rows += batch.num_rows
                if on_batch is not None:
                    on_batch(batch.num_rows)
                del batch  # not held while the next is read
            files.close(write_empty)
        destination.put_bytes(b"", f"{staged}/{SUCCESS_MARKER}")
        objects = _publish(destination, staged, folder, files.objects)
    except BaseException:
        reader.close()
        destination.delete_prefix(staged + "/")
        raise
    reader.close()
    return WrittenPartition(rows, files.bytes_written, objects)


def _staged_folder(destination: Destination, folder: str, staging: str | None) -> str:
    """Where the partition is written: a folder of its own under `staging` on a local destination, else the folder.

    S3 has no rename: there the folder is whole once it holds `_SUCCESS`, and a dead runner's half folder is
    removed by the next command (dbexport.leftovers).
    """
    if staging is None or not isinstance(destination, LocalDestination):
        return folder
    return f"{staging}/{uuid.uuid4()}"


def _publish(destination: Destination, staged: str, folder: str, objects: list[str]) -> list[str]:
    """Move a staged partition into its folder; returns its objects' keys there."""
    if staged == folder:
        return objects
    assert isinstance(destination, LocalDestination)
    destination.replace_folder(staged, folder)
    return [folder + key.removeprefix(staged) for key in objects]


# The spool's file system refused: full, or not writable. Sources and destinations raise only the project's errors.
_SPOOL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EACCES, errno.EPERM, errno.EROFS})


@contextmanager
def _spool(parent: Path | None) -> Generator[str]:
    """A temporary folder for a partition's files, under `parent`; its file system's refusals name it."""
    try:
        if parent is not None:
            parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix="dbexport-", dir=parent) as spool:
            yield spool
    except OSError as exc:
        if exc.errno not in _SPOOL_ERRNOS:
            raise
        raise ExportFailed(
            f"Writing a partition's Parquet files in the temporary folder {tempfile.gettempdir()} failed "
            f"({exc.strerror or exc}): free some space there, or set TMPDIR to a folder that has room."
        ) from exc
