"""Request contexts in Twisted code: inlineCallbacks handlers interleaved on Deferreds."""

from twisted.internet import defer
from twisted.trial import unittest

import blueox

from ._helpers import RecordingMixin

CONCURRENT = 50


class InlineCallbacksTests(RecordingMixin, unittest.TestCase):
    def test_overlapping_handlers_keep_their_ids(self):
        """50 interleaved inlineCallbacks handlers give 50 events whose '.db' sub-events carry their own id."""
        opened = [defer.Deferred() for _ in range(CONCURRENT)]
        queried = [defer.Deferred() for _ in range(CONCURRENT)]

        @defer.inlineCallbacks
        def handle(n):
            with blueox.Context("request"):
                blueox.set("n", n)
                yield opened[n]
                with blueox.Context(".db"):
                    blueox.set("n", n)
                    yield queried[n]
            return n

        results = [handle(n) for n in range(CONCURRENT)]
        self.assertIsNone(blueox.current_context())
        # Resume them in an order unlike the one they started in, twice.
        for n in reversed(range(CONCURRENT)):
            opened[n].callback(None)
        for n in [*range(0, CONCURRENT, 2), *range(1, CONCURRENT, 2)]:
            queried[n].callback(None)
        self.assertEqual([self.successResultOf(d) for d in results], list(range(CONCURRENT)))

        self.assert_own_ids(CONCURRENT)
        self.assertIsNone(blueox.current_context())
