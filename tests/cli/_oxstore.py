"""What the tests of oxstore share: events as oxd writes them, dates, and a test case
with a log directory and a real S3 API server (moto's) on a loopback port."""

import bz2
import datetime
import os
import socket

import msgpack
from twisted.trial.unittest import SynchronousTestCase

from blueox import wire
from tests import _s3server
from tests.cli._run import run_tool


HOST = socket.gethostname()


def event_bytes(*labels):
    """msgpack events as oxd writes them, one per label."""
    return b"".join(
        wire.encode_body({"id": label, "type": "request", "body": {"n": label}})
        for label in labels
    )


def timed_events(*items):
    """msgpack events with an ``end`` time: ``(label, "YYYYMMDD HH:MM:SS.f")`` pairs."""
    out = b""
    for label, when in items:
        end = datetime.datetime.strptime(when, "%Y%m%d %H:%M:%S.%f").replace(
            tzinfo=datetime.timezone.utc
        ).timestamp()
        out += wire.encode_body(
            {"id": label, "type": "request", "end": end, "body": {"n": label}}
        )
    return out


def _unpack(data):
    unpacker = msgpack.Unpacker(raw=False, strict_map_key=False)
    unpacker.feed(data)
    return list(unpacker)


def today():
    return datetime.datetime.now(datetime.timezone.utc).date()


def day_str(date):
    return date.strftime("%Y%m%d")


class OxstoreTestCase(SynchronousTestCase):
    def setUp(self):
        self.log_path = os.path.abspath(self.mktemp())
        os.makedirs(self.log_path)
        self.env = _s3server.s3_env()

    def write_log(self, name, data, zipped=False):
        """Write ``<log_path>/<date>/<name>`` (bz2-compressed when ``zipped``)."""
        folder = name.split("-")[-1][:8]
        path = os.path.join(self.log_path, folder, name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(bz2.compress(data) if zipped else data)
        return path

    def oxstore(self, *args, env=None, expect=0, **kwargs):
        result = run_tool("oxstore", *args, env=env or self.env, **kwargs)
        if expect is not None:
            self.assertEqual(
                result.returncode, expect,
                f"oxstore {args}: {result.stderr.decode(errors='replace')}",
            )
        return result

    def listing(self):
        out = []
        for dirpath, dirnames, filenames in os.walk(self.log_path):
            for filename in filenames:
                out.append(os.path.relpath(os.path.join(dirpath, filename), self.log_path))
        return sorted(out)

    def keys(self, bucket):
        return sorted(o.key for o in bucket.objects.all())
