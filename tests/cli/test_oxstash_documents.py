"""Tests for oxstash's documents: fields, daily indexes and stable ids."""

import datetime
import json

from twisted.trial.unittest import SynchronousTestCase

from blueox.cli import oxstash
from tests.cli._bulkserver import END, make_event


class DocumentTests(SynchronousTestCase):
    def test_fields_and_daily_index(self):
        """A document keeps the event, adds @timestamp and duration, and goes to the day's index."""
        doc = oxstash.build_document(make_event(0, note=b"\xffbytes"))
        self.assertEqual(doc.index, "blueox-2023.11.14")
        action, source, tail = doc.lines.split(b"\n")
        self.assertEqual(tail, b"")
        self.assertEqual(
            json.loads(action), {"create": {"_index": doc.index, "_id": doc.id}}
        )
        source = json.loads(source)
        self.assertEqual(source["@timestamp"], "2023-11-14T22:13:20.500Z")
        self.assertEqual(source["duration"], 0.25)
        self.assertEqual(source["type"], "request")
        self.assertEqual(source["body"], {"n": 0, "note": "\ufffdbytes"})

    def test_index_base_and_name(self):
        """--index-base changes the prefix; --index-name fixes one index."""
        self.assertEqual(
            oxstash.build_document(make_event(0), index_base="ox").index, "ox-2023.11.14"
        )
        self.assertEqual(
            oxstash.build_document(make_event(0), index_name="all").index, "all"
        )

    def test_event_without_times(self):
        """An event without an end is stamped with the current time and no duration."""
        now = datetime.datetime(2024, 2, 29, 1, 2, 3, tzinfo=datetime.timezone.utc)
        doc = oxstash.build_document({"data": "x"}, now=lambda: now)
        source = json.loads(doc.lines.split(b"\n")[1])
        self.assertEqual(doc.index, "blueox-2024.02.29")
        self.assertEqual(source, {"data": "x", "@timestamp": "2024-02-29T01:02:03.000Z"})

    def test_not_an_event(self):
        """Input that is not a map is refused with ValueError."""
        self.assertRaises(ValueError, oxstash.build_document, [1, 2])

    def test_stable_ids(self):
        """The same event always gets the same _id; sub-events sharing an id do not collide."""
        parent = make_event(0)
        child = dict(parent, type="request.db", end=END + 0.1)
        self.assertEqual(oxstash.document_id(parent), oxstash.document_id(dict(parent)))
        self.assertNotEqual(oxstash.document_id(parent), oxstash.document_id(child))
        self.assertEqual(
            oxstash.document_id({"data": "x"}), oxstash.document_id({"data": "x"})
        )
