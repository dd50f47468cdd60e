"""Where ``oxstore export`` puts its Parquet files, and how each part is made in bounded memory.

A `Parts` files rows by type and UTC day into
``type=<type>/date=<YYYY-MM-DD>/part-<NNNNN>.parquet`` under a destination:
a `LocalDestination` (a directory) or an `S3Destination` (a bucket and a
prefix). Rows are spooled to a temporary file as they come, with the kinds
of each field's values; when a part is full (``rows_per_file`` rows) or
the export ends, its column types are decided from every value it holds and
the spool is read back into row groups of at most ``row_group_size`` rows.
Memory holds one row group, whatever the size of a day; at most
``max_open`` parts are spooling at once (the least recently used one is
finished first). A part appears whole or not at all.

The first time a type and day is written, its existing part files are
removed with ``overwrite``, else refused with a `CommandError`. Part of
``oxstore export`` (`blueox.cli._oxstore_export`).
"""

import collections
import fnmatch
import os

import msgpack

from blueox.cli import CommandError, plural
from blueox.cli._oxstore_export_rows import record_batch, schema

__all__ = [
    "PART_PATTERN",
    "partition",
    "part_name",
    "LocalDestination",
    "S3Destination",
    "Parts",
]

PART_PATTERN = "part-*.parquet"
MAX_OPEN_PARTS = 16


def partition(type_name, date):
    """``type=<type>/date=<YYYY-MM-DD>``: the folder of a type's events of a day."""
    return f"type={type_name}/date={date.isoformat()}"


def part_name(number):
    """``part-00000.parquet``."""
    return f"part-{number:05d}.parquet"


class LocalDestination:
    """A local directory, made when missing; parts are spooled under it and
    renamed into place."""

    def __init__(self, root):
        self.root = root
        if os.path.exists(root) and not os.path.isdir(root):
            raise CommandError(f"--output {root} is not a directory")
        os.makedirs(root, exist_ok=True)
        self.work_parent = root

    def describe(self, path=""):
        return os.path.join(self.root, path) if path else self.root

    def parts(self, folder):
        """The names of the part files in ``folder`` (a `partition`)."""
        try:
            names = os.listdir(os.path.join(self.root, folder))
        except FileNotFoundError:
            return []
        return sorted(fnmatch.filter(names, PART_PATTERN))

    def remove(self, folder, names):
        for name in names:
            os.unlink(os.path.join(self.root, folder, name))

    def put(self, local_path, path):
        target = os.path.join(self.root, path)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        os.replace(local_path, target)


class S3Destination:
    """``s3://bucket/prefix``: parts are spooled in a local temporary folder
    and uploaded with boto3."""

    def __init__(self, bucket, prefix):
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.work_parent = None

    def key(self, path):
        return f"{self.prefix}/{path}" if self.prefix else path

    def describe(self, path=""):
        return f"s3://{self.bucket.name}/{self.key(path)}".rstrip("/")

    def parts(self, folder):
        prefix = self.key(folder) + "/"
        names = (summary.key[len(prefix):] for summary in self.bucket.objects.filter(Prefix=prefix))
        return sorted(name for name in names if "/" not in name and fnmatch.fnmatch(name, PART_PATTERN))

    def remove(self, folder, names):
        for name in names:
            self.bucket.Object(self.key(f"{folder}/{name}")).delete()

    def put(self, local_path, path):
        self.bucket.upload_file(local_path, self.key(path))
        os.unlink(local_path)


class _Part:
    """One part file being spooled."""

    __slots__ = ("folder", "number", "spool_path", "spool", "packer", "rows", "kinds")

    def __init__(self, folder, number, spool_path, field_count):
        self.folder = folder
        self.number = number
        self.spool_path = spool_path
        self.spool = open(spool_path, "wb")
        self.packer = msgpack.Packer(use_bin_type=True)
        self.rows = 0
        self.kinds = [0] * field_count

    def add(self, row, kinds):
        self.spool.write(self.packer.pack(row))
        self.rows += 1
        for index, kind in enumerate(kinds):
            self.kinds[index] |= kind


class Parts:
    """Rows filed into part files by type and day; see the module's docstring.

    ``arrow`` is ``(pyarrow, pyarrow.parquet)``. `written` counts, per type,
    the events and parts written and the days they are in.
    """

    def __init__(self, destination, fields, arrow, workdir, rows_per_file,
                 row_group_size, overwrite=False, max_open=MAX_OPEN_PARTS):
        self.destination = destination
        self.fields = list(fields)
        self.pa, self.pq = arrow
        self.workdir = workdir
        self.rows_per_file = rows_per_file
        self.row_group_size = min(row_group_size, rows_per_file)
        self.overwrite = overwrite
        self.max_open = max_open
        self.written = collections.defaultdict(
            lambda: {"events": 0, "parts": 0, "days": set()}
        )
        self._open = collections.OrderedDict()
        self._next_number = {}
        self._spools = 0

    def check_free(self, folder):
        """Refuse a folder that has part files, unless ``overwrite``."""
        existing = self.destination.parts(folder)
        if existing and not self.overwrite:
            raise CommandError(
                f"{self.destination.describe(folder)} already has "
                f"{plural(len(existing), 'part file')}: give --overwrite to replace "
                f"{'it' if len(existing) == 1 else 'them'}, or another --output"
            )
        return existing

    def add(self, type_name, date, row, kinds):
        """File one row of ``type_name`` under ``date`` (a `datetime.date`)."""
        key = (type_name, date)
        part = self._open.get(key)
        if part is None:
            part = self._start(key)
        else:
            self._open.move_to_end(key)
        part.add(row, kinds)
        if part.rows >= self.rows_per_file:
            self._finish(key)

    def _start(self, key):
        folder = partition(*key)
        number = self._next_number.get(key)
        if number is None:
            existing = self.check_free(folder)
            self.destination.remove(folder, existing)
            number = 0
        self._next_number[key] = number + 1
        while len(self._open) >= self.max_open:
            self._finish(next(iter(self._open)))
        self._spools += 1
        spool_path = os.path.join(self.workdir, f"spool-{self._spools}")
        part = self._open[key] = _Part(folder, number, spool_path, len(self.fields))
        return part

    def _finish(self, key):
        """Write a part's spool as a Parquet file and put it in place."""
        part = self._open.pop(key)
        part.spool.close()
        pa, pq = self.pa, self.pq
        file_schema = schema(pa, self.fields, part.kinds)
        local_path = os.path.join(self.workdir, part_name(part.number))
        with open(part.spool_path, "rb") as spool:
            unpacker = msgpack.Unpacker(spool, raw=False, strict_map_key=False)
            with pq.ParquetWriter(local_path, file_schema) as writer:
                rows = []
                for row in unpacker:
                    rows.append(row)
                    if len(rows) == self.row_group_size:
                        writer.write_batch(record_batch(pa, file_schema, rows))
                        rows = []
                if rows:
                    writer.write_batch(record_batch(pa, file_schema, rows))
        os.unlink(part.spool_path)
        self.destination.put(local_path, f"{part.folder}/{part_name(part.number)}")
        written = self.written[key[0]]
        written["events"] += part.rows
        written["parts"] += 1
        written["days"].add(key[1])

    def close(self):
        """Finish every part still spooling."""
        while self._open:
            self._finish(next(iter(self._open)))

    def discard(self):
        """Drop the parts still spooling (after a failure)."""
        for part in self._open.values():
            part.spool.close()
            os.unlink(part.spool_path)
        self._open.clear()
