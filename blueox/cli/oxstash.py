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
import datetime
import hashlib
import json
import logging
import os
import queue
import random
import sys
import threading
from collections import namedtuple
from urllib.parse import urlsplit, urlunsplit

from twisted.internet import defer, task
from twisted.internet.error import (
    ConnectError,
    ConnectingCancelledError,
    ConnectionRefusedError,
    DNSLookupError,
)
from twisted.python.failure import Failure

from blueox import wire
from blueox.cli import add_version, number

__all__ = [
    "main",
    "build_parser",
    "Document",
    "build_document",
    "document_id",
    "BulkShipper",
    "ShipResult",
    "Stash",
    "start_stash",
]

log = logging.getLogger("blueox.oxstash")

DEFAULT_NODE = "localhost:9200"
DEFAULT_INDEX_BASE = "blueox"
DEFAULT_CHUNK_SIZE = 500
DEFAULT_REQUEST_TIMEOUT = 10.0
DEFAULT_MAX_RETRIES = 8
DEFAULT_FLUSH_INTERVAL = 1.0
BACKOFF_BASE = 0.5
BACKOFF_CAP = 30.0

EXIT_FAILURE = 1
EXIT_USAGE = 2
# Input that is not an event is reported this many times, then only counted.
MAX_BAD_EVENT_REPORTS = 10

# One document of the bulk request: its action line and source line, ready.
Document = namedtuple("Document", ["index", "id", "type", "lines"])


class _FailureKind:
    """One kind of failure in a `ShipResult`: how many documents, and why.

    ``what`` may hold ``{node}``, said as "node" or "nodes" after how many
    ``nodes`` failed so; ``example`` is the first detail seen (``same`` while
    every detail seen was the same).
    """

    def __init__(self, what, nodes=(), example=None):
        self.count = 0
        self.what = what
        self.nodes = list(nodes)
        self.example = example
        self.same = True

    def merge(self, count, nodes=(), example=None):
        self.count += count
        for node in nodes:
            if node not in self.nodes:
                self.nodes.append(node)
        if example != self.example:
            self.same = False

    def line(self):
        text = self.what.replace("{node}", "nodes" if len(self.nodes) > 1 else "node")
        if self.nodes:
            text += f" ({', '.join(self.nodes)})"
        if self.example is not None:
            text += f": {self.example}" if self.same else f" (for example {self.example})"
        noun = "document" if self.count == 1 else "documents"
        return f"{self.count} {noun} not indexed: {text}"


class ShipResult:
    """Counts of what became of shipped documents, and why some were not indexed."""

    def __init__(self):
        self.indexed = 0
        self.duplicates = 0
        self.rejected = 0
        self.lost = 0
        self.bad_events = 0
        self.failures = {}  # key -> _FailureKind, in the order first seen

    @property
    def failed(self):
        return self.rejected + self.lost + self.bad_events

    def count_failure(self, key, count, what, nodes=(), example=None):
        """Count ``count`` documents not indexed for the reason ``key``."""
        kind = self.failures.get(key)
        if kind is None:
            kind = self.failures[key] = _FailureKind(what, nodes, example)
        kind.merge(count, nodes, example)

    def add(self, other):
        for name in ("indexed", "duplicates", "rejected", "lost", "bad_events"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        for key, kind in other.failures.items():
            mine = self.failures.get(key)
            if mine is None:
                self.failures[key] = kind
            else:
                mine.merge(kind.count, kind.nodes, kind.example)
                mine.same = mine.same and kind.same

    def failure_lines(self):
        """One line per kind of failure: ``N documents not indexed: why``."""
        return [kind.line() for kind in self.failures.values()]

    def summary(self):
        return (
            f"{self.indexed} documents indexed, {self.duplicates} already present, "
            f"{self.rejected} rejected, {self.lost} given up, "
            f"{self.bad_events} not events"
        )


def _json_default(value):
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).decode("utf-8", errors="replace")
    return wire.to_msgpack_safe(value)


def _dump(value):
    return json.dumps(
        value, default=_json_default, ensure_ascii=False, separators=(",", ":")
    ).encode("utf-8")


def document_id(event):
    """A stable id for an event's document: the same event, the same id.

    Derived from the event's id, type, host, pid, start and end (sub-events
    share their parent's id but not all of these), or from the whole event
    when it has no id.
    """
    if event.get("id") is not None:
        key = [event.get(k) for k in ("id", "type", "host", "pid", "start", "end")]
    else:
        key = event
    return hashlib.blake2b(wire.encode_body(key), digest_size=16).hexdigest()


def _is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def build_document(event, index_base=DEFAULT_INDEX_BASE, index_name=None, now=None):
    """The `Document` for an event; `ValueError` if it is not an event map.

    ``@timestamp`` is the end time in UTC (ISO 8601), ``duration`` is end
    minus start in seconds; an event without an end time is stamped ``now``.
    """
    if not isinstance(event, dict):
        raise ValueError(f"not an event map: {type(event).__name__}")
    source = dict(event)
    end = event.get("end")
    if _is_number(end):
        when = datetime.datetime.fromtimestamp(end, datetime.timezone.utc)
    else:
        when = now() if now else datetime.datetime.now(datetime.timezone.utc)
    start = event.get("start")
    if _is_number(start) and _is_number(end):
        source["duration"] = end - start
    source["@timestamp"] = (
        when.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    )
    index = index_name or f"{index_base}-{when.strftime('%Y.%m.%d')}"
    doc_id = document_id(event)
    action = _dump({"create": {"_index": index, "_id": doc_id}})
    lines = action + b"\n" + _dump(source) + b"\n"
    return Document(index, doc_id, str(event.get("type")), lines)


def node_url(node):
    """``host:port`` or a URL (``https://user:pass@host:9200``) as a base URL."""
    if "://" not in node:
        node = f"http://{node}"
    parts = urlsplit(node)
    if not parts.hostname:
        raise ValueError(f"no host in {node!r}")
    return urlunsplit((parts.scheme, parts.netloc, parts.path.rstrip("/"), "", ""))


def _split_auth(url):
    """``(url without credentials, (user, password) or None)``."""
    parts = urlsplit(url)
    if parts.username is None:
        return url, None
    netloc = parts.hostname + (f":{parts.port}" if parts.port else "")
    return (
        urlunsplit((parts.scheme, netloc, parts.path, "", "")),
        (parts.username, parts.password or ""),
    )


class RetryableError(Exception):
    """A request failed in a way worth trying again.

    ``str()`` is the whole one-line message (``cannot reach URL: connection
    refused``); ``node`` is the node's URL; ``what`` names the kind of
    failure in the closing report (``{node} unreachable``); ``warn`` is
    False for a failure not worth a warning on its own (throttling).
    """

    def __init__(self, message, node, what, warn=True):
        super().__init__(message)
        self.node = node
        self.what = what
        self.warn = warn


def _quiet(message):
    pass


class BulkShipper:
    """Sends batches of documents with the bulk API until each is settled.

    ``http`` is a treq ``HTTPClient`` (or ``treq.testing.StubTreq``); ``nodes``
    are base URLs tried in turn. ``report`` is called with a one-line message
    for each document rejected or given up (the per-document detail);
    what became of every document is counted in the `ShipResult` of `ship`.
    ``warn`` is called with a one-line message the first time in an outage
    that a node fails in a new way (``cannot reach URL: connection refused;
    retrying``); an outage ends when a node answers. ``progress`` is called
    with a line saying which retry is due and when, and with None once the
    batch is settled.

    After a batch is given up because no node answered, later batches are
    tried once on each node (no more) until a node answers again.
    """

    def __init__(
        self, http, nodes, clock, report, request_timeout=DEFAULT_REQUEST_TIMEOUT,
        max_retries=DEFAULT_MAX_RETRIES, random=random.random, warn=None,
        progress=None,
    ):
        self._http = http
        self._nodes = [_split_auth(node) for node in nodes]
        self._node = 0
        self._clock = clock
        self._report = report
        self._request_timeout = request_timeout
        self._max_retries = max_retries
        self._random = random
        self._warn = warn or _quiet
        self._progress = progress or _quiet
        self._warned = set()
        self.outage = False

    def backoff(self, attempt):
        """Seconds to wait before retry number ``attempt`` (1, 2, ...)."""
        delay = min(BACKOFF_CAP, BACKOFF_BASE * 2 ** (attempt - 1))
        return delay * (0.5 + self._random() / 2)

    @defer.inlineCallbacks
    def ship(self, documents):
        """Send ``documents``; fires with a `ShipResult` (never fails)."""
        result = ShipResult()
        pending = list(documents)
        retries = self._max_retries
        if self.outage:
            retries = min(retries, len(self._nodes) - 1)
        failed_nodes = {}  # what -> nodes that failed so, in order
        item_errors = {}  # document id -> (status, error text) of its last try
        attempt = 0
        while pending:
            try:
                items = yield self._post(pending)
            except RetryableError as e:
                error = e
                reason = str(e)
                nodes = failed_nodes.setdefault(e.what, [])
                if e.node not in nodes:
                    nodes.append(e.node)
                retry = pending
            else:
                error = None
                self._answered()
                reason, retry = self._settle(pending, items, result, item_errors)
            pending = retry
            if not pending:
                break
            attempt += 1
            if error is not None and error.warn and reason not in self._warned:
                self._warned.add(reason)
                self._warn(reason + ("; retrying" if attempt <= retries else ""))
            if attempt > retries:
                self._give_up(pending, retries, result, error, failed_nodes, item_errors)
                break
            delay = self.backoff(attempt)
            log.info(
                "retrying %d documents in %.1fs (%s)", len(pending), delay, reason
            )
            self._progress(
                f"{reason}; retry {attempt} of {retries} in {delay:.1f} s "
                f"({len(pending)} documents waiting)"
            )
            yield task.deferLater(self._clock, delay, lambda: None)
        self._progress(None)
        return result

    def _answered(self):
        """A node answered: the outage, if any, is over."""
        self.outage = False
        self._warned.clear()

    def _give_up(self, pending, retries, result, error, failed_nodes, item_errors):
        """Count (and report) ``pending`` as given up after ``retries`` retries."""
        result.lost += len(pending)
        if error is not None:
            # No node answered the last try: later batches get one try.
            self.outage = True
            nodes = failed_nodes[error.what]
            result.count_failure(("request", error.what), len(pending), error.what, nodes)
        for doc in pending:
            if error is not None:
                reason = str(error)
            else:
                status, text = item_errors[doc.id]
                reason = f"item status {status}: {text}"
                result.count_failure(
                    ("item", status), 1,
                    f"the cluster still answered {status} after {retries} retries",
                    example=text,
                )
            self._report(
                f"gave up on {doc.type} document {doc.id} for {doc.index} "
                f"after {retries} retries: {reason}"
            )

    @defer.inlineCallbacks
    def _post(self, documents):
        """POST one bulk request; fires with its items or fails RetryableError.

        Whole-request failures other than 429 and 5xx are returned as one
        error item per document.
        """
        url, auth = self._nodes[self._node]
        body = b"".join(doc.lines for doc in documents)
        kwargs = {"auth": auth} if auth else {}
        try:
            response = yield self._http.post(
                f"{url}/_bulk",
                data=body,
                headers={"Content-Type": ["application/x-ndjson"]},
                timeout=self._request_timeout,
                reactor=self._clock,
                **kwargs,
            )
            content = yield response.content()
        except Exception as e:
            self._next_node()
            raise _request_error(url, e, self._request_timeout) from None
        status = response.code
        if status == 429 or status >= 500:
            self._next_node()
            raise RetryableError(
                f"{url} answered HTTP {status}", url, f"HTTP {status} from the {{node}}",
                warn=status != 429,
            )
        try:
            answer = json.loads(content)
        except ValueError:
            answer = None
        if status >= 400 or not isinstance(answer, dict):
            text = " ".join(content[:200].decode("utf-8", "replace").split())
            error = {"type": f"HTTP {status}", "reason": text}
            return [{"status": status, "error": error}] * len(documents)
        items = answer.get("items")
        if not isinstance(items, list) or len(items) != len(documents):
            self._next_node()
            raise RetryableError(
                f"{url} answered without one item per document", url,
                "the {node} answered without one item per document",
            )
        return [next(iter(item.values()), {}) for item in items]

    def _next_node(self):
        self._node = (self._node + 1) % len(self._nodes)

    def _settle(self, documents, items, result, item_errors):
        """Count settled items; return (reason, documents to retry)."""
        retry = []
        reason = None
        for doc, item in zip(documents, items):
            status = item.get("status", 500)
            if 200 <= status < 300:
                result.indexed += 1
            elif status == 409:
                result.duplicates += 1
            elif status == 429 or status >= 500:
                retry.append(doc)
                text = _error_text(item.get("error"))
                item_errors[doc.id] = (status, text)
                reason = f"item status {status}: {text}"
            else:
                result.rejected += 1
                error = item.get("error")
                text = _error_text(error)
                kind = error.get("type") if isinstance(error, dict) else None
                result.count_failure(
                    ("rejected", kind or status), 1, "rejected by the cluster",
                    example=text,
                )
                self._report(
                    f"rejected {doc.type} document {doc.id} for {doc.index}: {text}"
                )
        return reason, retry


def _request_error(url, error, timeout):
    """The `RetryableError` for a request to ``url`` that raised ``error``.

    treq (through twisted.web's Agent) raises connection errors as they are,
    and wraps failures after connecting in an error with ``reasons``.
    """
    reasons = [r.value for r in getattr(error, "reasons", None) or ()] or [error]
    if any(
        isinstance(r, (defer.CancelledError, ConnectingCancelledError)) for r in reasons
    ):
        return RetryableError(
            f"no answer from {url} within {timeout:g} s", url,
            f"no answer within {timeout:g} s",
        )
    if isinstance(reasons[0], (ConnectError, DNSLookupError)):
        return RetryableError(
            f"cannot reach {url}: {_connect_error_text(reasons[0])}", url,
            "{node} unreachable",
        )
    text = "; ".join(_exception_text(r) for r in reasons)
    return RetryableError(
        f"request to {url} failed: {text}", url, "request to the {node} failed"
    )


def _connect_error_text(error):
    """A connection error in a few plain words: ``connection refused``."""
    if isinstance(error, ConnectionRefusedError):
        return "connection refused"
    if isinstance(error, DNSLookupError):
        return "host name not found"
    code = getattr(error, "osError", None)
    if isinstance(code, int):
        return os.strerror(code).lower()
    return _exception_text(error)


def _exception_text(error):
    text = str(error).strip().rstrip(".")
    return text or type(error).__name__


def _error_text(error):
    if isinstance(error, dict):
        text = ": ".join(str(error[k]) for k in ("type", "reason") if error.get(k))
        cause = error.get("caused_by")
        if isinstance(cause, dict) and cause.get("reason"):
            text += f" ({cause['reason']})"
        return text or json.dumps(error)
    return str(error)


_END = object()


class _Failed:
    def __init__(self, error):
        self.error = error


class Stash:
    """Feeds events from a blocking iterator, read in a thread, to a shipper.

    Events are batched by ``chunk_size``; a partial batch goes after
    ``flush_interval`` seconds. One batch is in flight at a time and the
    reader blocks when ``max_queued`` events wait, so memory stays bounded.
    """

    def __init__(
        self, reactor, shipper, make_document, chunk_size=DEFAULT_CHUNK_SIZE,
        flush_interval=DEFAULT_FLUSH_INTERVAL, max_queued=None, clock=None,
        report=None,
    ):
        self._reactor = reactor
        self._clock = clock or reactor
        self._shipper = shipper
        self._make_document = make_document
        self._chunk_size = chunk_size
        self._flush_interval = flush_interval
        self._queue = queue.Queue(max_queued or 2 * chunk_size)
        self._wake_lock = threading.Lock()
        self._wake_pending = False
        self._buffer = []
        self._shipping = None
        self._flush_call = None
        self._ended = False
        self._error = None
        self._done = defer.Deferred()
        self._report = report or (lambda message: None)
        self.result = ShipResult()

    def run(self, source):
        """Read ``source`` in a daemon thread; fires with the `ShipResult`.

        Fails if reading the source raised.
        """
        thread = threading.Thread(
            target=self._read, args=(source,), name="oxstash-reader", daemon=True
        )
        thread.start()
        return self._done

    def put(self, item):
        """Queue one event (or the end marker); called from the reader thread."""
        self._queue.put(item)
        with self._wake_lock:
            if self._wake_pending:
                return
            self._wake_pending = True
        self._reactor.callFromThread(self.pump)

    def _read(self, source):
        try:
            for event in source:
                self.put(event)
        except BaseException as e:
            self.put(_Failed(e))
        else:
            self.put(_END)

    def pump(self):
        """Move queued events into the batch and send it when due."""
        with self._wake_lock:
            self._wake_pending = False
        if self._shipping is not None:
            return
        while len(self._buffer) < self._chunk_size and not self._ended:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is _END:
                self._ended = True
            elif isinstance(item, _Failed):
                self._ended = True
                self._error = item.error
            else:
                self._add(item)
        if self._buffer and (len(self._buffer) >= self._chunk_size or self._ended):
            self._send()
        elif self._ended and not self._buffer:
            self._finish()
        elif self._buffer and self._flush_call is None:
            self._flush_call = self._clock.callLater(self._flush_interval, self._flush)

    def _add(self, event):
        try:
            self._buffer.append(self._make_document(event))
        except Exception as e:
            self.result.bad_events += 1
            if self.result.bad_events <= MAX_BAD_EVENT_REPORTS:
                self._report(f"skipped input that is not an event: {e}")
            if self.result.bad_events == MAX_BAD_EVENT_REPORTS:
                self._report("(further input that is not an event is only counted)")

    def _flush(self):
        self._flush_call = None
        if self._shipping is None and self._buffer:
            self._send()

    def flush(self):
        """Send what is batched now and fire when nothing is in flight."""
        if self._shipping is None and self._buffer:
            self._send()
        if self._shipping is None:
            return defer.succeed(None)
        d = defer.Deferred()
        self._shipping.addBoth(lambda r: (d.callback(None), r)[1])
        return d

    def _send(self):
        if self._flush_call is not None:
            self._flush_call.cancel()
            self._flush_call = None
        batch, self._buffer = self._buffer, []
        shipping = self._shipping = self._shipper.ship(batch)
        shipping.addBoth(self._sent, len(batch))

    def _sent(self, result, size):
        if isinstance(result, Failure):
            log.error("shipping failed: %s", result.getTraceback())
            self._report(f"lost {size} documents: {result.getErrorMessage()}")
            lost = ShipResult()
            lost.lost = size
            lost.count_failure(("internal",), size, "shipping failed (see the error above)")
            result = lost
        self.result.add(result)
        self._shipping = None
        self.pump()
        return result

    def _finish(self):
        if self._done.called:
            return
        if self._error is not None:
            self._done.errback(self._error)
        else:
            self._done.callback(self.result)


def _type_matcher(type_filter):
    if not type_filter or type_filter == "*":
        return lambda name: True
    if type_filter.endswith("*"):
        prefix = type_filter[:-1]
        return lambda name: isinstance(name, str) and name.startswith(prefix)
    return lambda name: name == type_filter


def _filtered(events, type_filter):
    matches = _type_matcher(type_filter)
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


def _setup_logging(verbose):
    level = logging.WARNING if not verbose else logging.INFO
    if verbose > 1:
        level = logging.DEBUG
    logging.basicConfig(level=level, format="oxstash: %(message)s", stream=sys.stderr)


def _open_source(args, stdin):
    """The blocking iterator of events the options ask for."""
    from blueox import client

    if args.host or stdin.isatty():
        from blueox.streaming import subscribe_stream

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
            self._stream.write(f"\r\x1b[Koxstash: {text}")
            self._shown = True
        self._stream.flush()

    def _clear(self):
        if self._shown:
            self._stream.write("\r\x1b[K")
            self._shown = False


def start_stash(reactor, args, source, report, http=None, detail=None, progress=None):
    """Start shipping events from ``source``; returns the running `Stash`.

    ``report`` gets warnings and input errors, ``detail`` each document not
    indexed (default: nothing unless ``args.verbose``, then ``report``),
    ``progress`` the retry status line (see `BulkShipper`).
    """
    if http is None:
        import treq

        http = treq
    if detail is None:
        detail = report if args.verbose else _quiet
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
    stash.done = stash.run(source)
    return stash


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
    _setup_logging(args.verbose)
    console = _Console(sys.stderr, live=sys.stderr.isatty() and not args.verbose)
    report = console.say

    try:
        source = _open_source(args, sys.stdin)
    except Exception as e:
        report(f"cannot read events: {e}")
        return EXIT_FAILURE

    from twisted.internet import reactor

    state = {"read_error": None}

    def start():
        stash = state["stash"] = start_stash(
            reactor, args, source, report, progress=console.status
        )
        # Ctrl-C or SIGTERM: send what is batched before the reactor stops.
        reactor.addSystemEventTrigger("before", "shutdown", stash.flush)

        def finished(result):
            if isinstance(result, Failure):
                state["read_error"] = result.getErrorMessage()
            if reactor.running:
                reactor.stop()

        stash.done.addBoth(finished)

    reactor.callWhenRunning(start)
    reactor.run()
    console.status(None)
    stash = state.get("stash")
    if stash is None:
        return EXIT_FAILURE
    status = 0
    if state["read_error"] is not None:
        report(f"reading events failed: {state['read_error']}")
        status = EXIT_FAILURE
    for line in stash.result.failure_lines():
        report(line)
    if stash.result.failed:
        status = EXIT_FAILURE
    if status or args.verbose:
        report(stash.result.summary())
    return status


if __name__ == "__main__":
    sys.exit(main())
