"""``oxstash``: ship BlueOx events to Elasticsearch or OpenSearch.

Events come live from oxd (``-H host``, or when standard input is a
terminal) or as msgpack from standard input (a log file, ``oxstore cat``).
Each becomes a document in the daily index ``<index-base>-YYYY.MM.DD`` of its
end time (or ``--index-name``), with ``@timestamp`` and ``duration`` added,
sent with the bulk API through treq in batches of ``--chunk-size``.

Nothing is lost silently: each document carries a stable ``_id`` derived
from the event, and is sent with the ``create`` action, so a retried batch
cannot duplicate it (the server answers 409 for a document it already has).
Whole requests that fail with 429, 5xx or a connection error are retried
with backoff, moving to the next ``-e`` node; items that fail with 429 or 5xx
are retried alone. A node that cannot be reached is named in a warning at
its first failure; on a terminal a status line shows the retries. Once a
batch has been given up because no node answered, later batches are tried
once on each node until one answers again, so an outage costs one retry
budget (``--max-retries``), not one per batch. At the end each kind of
failure is one line with its count of documents not indexed (``-v`` also
lists each document), and the exit status is 1 if any was not indexed.
"""

import argparse
import sys

from twisted.python.failure import Failure

from blueox import client
from blueox.cli import EXIT_FAILURE, EXIT_USAGE, add_version, number, setup_logging
from blueox.cli._oxstash_documents import (
    DEFAULT_INDEX_BASE,
    Document,
    build_document,
    document_id,
)
from blueox.cli._oxstash_feeder import DEFAULT_CHUNK_SIZE, DEFAULT_FLUSH_INTERVAL, Stash
from blueox.cli._oxstash_results import ShipResult
from blueox.cli._oxstash_shipper import (
    DEFAULT_MAX_RETRIES,
    DEFAULT_REQUEST_TIMEOUT,
    BulkShipper,
    RetryableError,
    node_url,
)
from blueox.cli._progress import CLEAR_LINE
from blueox.streaming import subscribe_stream, type_matcher

# The parts: documents (_oxstash_documents), the bulk shipper with its
# retries (_oxstash_shipper), the thread-to-reactor feeder (_oxstash_feeder)
# and what became of each document (_oxstash_results); here, the command.
__all__ = [
    "main",
    "build_parser",
    "Document",
    "build_document",
    "document_id",
    "node_url",
    "BulkShipper",
    "RetryableError",
    "ShipResult",
    "Stash",
    "start_stash",
]

DEFAULT_NODE = "localhost:9200"


def _filtered(events, type_filter):
    """The events passing ``type_filter``; what is not a map passes, to be
    counted as input that is not an event."""
    matches = type_matcher(type_filter)
    for event in events:
        if not isinstance(event, dict) or matches(event.get("type")):
            yield event


def build_parser():
    """The argument parser for ``oxstash``."""
    parser = argparse.ArgumentParser(
        prog="oxstash",
        description="Ship BlueOx events to Elasticsearch or OpenSearch.",
    )
    add_version(parser)
    parser.add_argument(
        "--verbose", "-v", action="count", default=0,
        help="report retries and each document not indexed (twice: debug)",
    )
    parser.add_argument(
        "--host", "-H", default=None,
        help="oxd control address to stream live events from "
             "(default when stdin is a terminal: $BLUEOX_CLIENT_HOST or 127.0.0.1:3513)",
    )
    parser.add_argument(
        "--type-name", "-n", default=None,
        help="only events of this type; a trailing '*' matches a prefix",
    )
    parser.add_argument(
        "--elasticsearch", "-e", action="append", default=[], metavar="NODE",
        help=f"host:port or URL of a node, repeatable (default {DEFAULT_NODE})",
    )
    parser.add_argument(
        "--index-base", "--index_base", "-p", default=DEFAULT_INDEX_BASE,
        help=f"daily index prefix: <base>-YYYY.MM.DD (default {DEFAULT_INDEX_BASE})",
    )
    parser.add_argument(
        "--index-name", "--index_name", "-i", default=None,
        help="one fixed index instead of daily ones",
    )
    parser.add_argument(
        "--chunk-size", "--chunk_size", type=number(int),
        default=DEFAULT_CHUNK_SIZE,
        help=f"documents per bulk request (default {DEFAULT_CHUNK_SIZE})",
    )
    parser.add_argument(
        "--request-timeout", "--request_timeout", type=number(float),
        default=DEFAULT_REQUEST_TIMEOUT,
        help=f"seconds to wait for a bulk answer (default {DEFAULT_REQUEST_TIMEOUT:g})",
    )
    parser.add_argument(
        "--max-retries", type=number(int, allow_zero=True),
        default=DEFAULT_MAX_RETRIES,
        help=f"retries of a failing batch, with backoff, before giving up on it "
             f"(default {DEFAULT_MAX_RETRIES}); once a batch is given up because no "
             f"node answers, later batches get one try per node until one answers",
    )
    parser.add_argument(
        "--flush-interval", type=number(float), default=DEFAULT_FLUSH_INTERVAL,
        help="seconds a partial batch waits for more events (default 1)",
    )
    return parser


def _open_source(args, stdin):
    """The blocking iterator of events the options ask for."""
    if args.host or stdin.isatty():
        return subscribe_stream(
            client.default_host(args.host), args.type_name, raise_errors=True
        )
    return _filtered(client.stdin_stream(), args.type_name)


class _Console:
    """oxstash's messages on standard error, and on a terminal one status line.

    `say` writes a line (``oxstash: ...``); `status` draws a line redrawn in
    place, only when ``live`` (standard error is a terminal and nothing
    else writes to it, i.e. not with ``-v``); `say` clears it first.
    """

    def __init__(self, stream, live):
        self._stream = stream
        self._live = live
        self._shown = False

    def say(self, message):
        self._clear()
        self._stream.write(f"oxstash: {message}\n")
        self._stream.flush()

    def status(self, text):
        if not self._live:
            return
        if text is None:
            self._clear()
        else:
            self._stream.write(f"{CLEAR_LINE}oxstash: {text}")
            self._shown = True
        self._stream.flush()

    def _clear(self):
        if self._shown:
            self._stream.write(CLEAR_LINE)
            self._shown = False


def start_stash(reactor, args, source, report, http=None, detail=None, progress=None):
    """Start shipping events from ``source``; returns the running `Stash`
    (its ``done`` fires at the end).

    ``report`` gets warnings and input errors, ``detail`` each document not
    indexed (default: nothing unless ``args.verbose``, then ``report``),
    ``progress`` the retry status line (see `BulkShipper`).
    """
    if http is None:
        import treq

        http = treq
    if detail is None and args.verbose:
        detail = report
    nodes = [node_url(node) for node in (args.elasticsearch or [DEFAULT_NODE])]
    shipper = BulkShipper(
        http, nodes, reactor, detail,
        request_timeout=args.request_timeout, max_retries=args.max_retries,
        warn=report, progress=progress,
    )
    stash = Stash(
        reactor, shipper,
        lambda event: build_document(event, args.index_base, args.index_name),
        chunk_size=args.chunk_size, flush_interval=args.flush_interval,
        report=report,
    )
    stash.run(source)
    return stash


class _Run:
    """One run of oxstash on the reactor: starts shipping once the reactor
    runs, stops the reactor when the source has ended and every batch is
    settled, then says how it went (`finish`)."""

    def __init__(self, reactor, args, source, console):
        self._reactor = reactor
        self._args = args
        self._source = source
        self._console = console
        self.stash = None
        self.read_error = None

    def start(self):
        self.stash = start_stash(
            self._reactor, self._args, self._source, self._console.say,
            progress=self._console.status,
        )
        # Ctrl-C or SIGTERM: send what is batched before the reactor stops.
        self._reactor.addSystemEventTrigger("before", "shutdown", self.stash.flush)
        self.stash.done.addBoth(self._finished)

    def _finished(self, result):
        if isinstance(result, Failure):
            self.read_error = result.getErrorMessage()
        if self._reactor.running:
            self._reactor.stop()

    def finish(self):
        """Report the failures and the summary; returns the exit status."""
        report = self._console.say
        self._console.status(None)
        if self.stash is None:
            return EXIT_FAILURE
        status = 0
        if self.read_error is not None:
            report(f"reading events failed: {self.read_error}")
            status = EXIT_FAILURE
        result = self.stash.result
        for line in result.failure_lines():
            report(line)
        if result.failed:
            status = EXIT_FAILURE
        if status or self._args.verbose:
            report(result.summary())
        return status


def main(argv=None):
    """Run ``oxstash``; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        for node in args.elasticsearch:
            node_url(node)
    except ValueError as e:
        print(f"oxstash: bad --elasticsearch node: {e}", file=sys.stderr)
        return EXIT_USAGE
    setup_logging("oxstash", args.verbose)
    console = _Console(sys.stderr, live=sys.stderr.isatty() and not args.verbose)
    try:
        source = _open_source(args, sys.stdin)
    except Exception as e:
        console.say(f"cannot read events: {e}")
        return EXIT_FAILURE

    from twisted.internet import reactor

    run = _Run(reactor, args, source, console)
    reactor.callWhenRunning(run.start)
    reactor.run()
    return run.finish()


if __name__ == "__main__":
    sys.exit(main())
