"""oxstash's bulk shipper: send batches of documents until each is settled.

A batch is POSTed to ``<node>/_bulk`` through treq. Whole requests that
fail with 429, 5xx or a connection error are retried with a jittered
exponential backoff (Twisted's `backoffPolicy`), moving to the next node;
items that fail with 429 or 5xx are retried alone. Each failure is told in
one plain line naming the node (`RetryableError`). Once a batch has been
given up because no node answered, later batches get one try per node
until one answers again: an outage costs one retry budget, not one per
batch. Part of `blueox.cli.oxstash`, which re-exports it.
"""

import json
import logging
import os
import random
from urllib.parse import urlsplit, urlunsplit

from twisted.application.internet import backoffPolicy
from twisted.internet import defer, task
from twisted.internet.error import (
    ConnectError,
    ConnectingCancelledError,
    ConnectionRefusedError,
    DNSLookupError,
)

from blueox.cli._oxstash_results import ShipResult

__all__ = [
    "DEFAULT_REQUEST_TIMEOUT",
    "DEFAULT_MAX_RETRIES",
    "BACKOFF_BASE",
    "BACKOFF_CAP",
    "node_url",
    "RetryableError",
    "BulkShipper",
]

log = logging.getLogger("blueox.oxstash")

DEFAULT_REQUEST_TIMEOUT = 10.0
DEFAULT_MAX_RETRIES = 8
# The first retry waits half a second, each next one twice as long, at most
# thirty seconds; jitter then takes each down to between half and all of it.
BACKOFF_BASE = 0.5
BACKOFF_CAP = 30.0


def _quiet(message):
    pass


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


class BulkShipper:
    """Sends batches of documents with the bulk API until each is settled.

    ``http`` is a treq ``HTTPClient`` (or ``treq.testing.StubTreq``); ``nodes``
    are base URLs tried in turn. ``report`` (if not None) is called with a
    one-line message for each document rejected or given up (the
    per-document detail); what became of every document is counted in the
    `ShipResult` of `ship`.
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
        self._report = report or _quiet
        self._request_timeout = request_timeout
        self._max_retries = max_retries
        self._random = random
        self._warn = warn or _quiet
        self._progress = progress or _quiet
        self._warned = set()
        self.outage = False
        # Twisted's policy counts attempts from 0 and adds its jitter; ours
        # scales the delay (see backoff), so the policy's jitter is none.
        self._policy = backoffPolicy(
            initialDelay=BACKOFF_BASE, maxDelay=BACKOFF_CAP, factor=2, jitter=lambda: 0.0
        )

    def backoff(self, attempt):
        """Seconds to wait before retry number ``attempt`` (1, 2, ...): twice
        the wait of the one before, from ``BACKOFF_BASE`` to at most
        ``BACKOFF_CAP``, then jittered down to between half and all of it (so
        that oxstash processes that failed together do not retry together)."""
        return self._policy(attempt - 1) * (0.5 + self._random() / 2)

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
