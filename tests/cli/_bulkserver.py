"""A stand-in for Elasticsearch's bulk API, for tests of oxstash.

`FakeBulkIndex` parses NDJSON bulk requests and answers like Elasticsearch 8
or OpenSearch 2 (no mapping types): documents are stored by index and
``_id``; ``create`` of an existing ``_id`` is a 409; tests can script
whole-request failures, per-item failures and rejections. It is served over
real HTTP on loopback by `BulkHTTPServer`, or in memory to
``treq.testing.StubTreq`` by `BulkResource`. `make_event`, `encode` and `sources` make the events the
tests ship and read back what the index stored.
"""

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from twisted.web.resource import Resource

from blueox import wire

__all__ = ["END", "make_event", "encode", "sources", "FakeBulkIndex", "BulkHTTPServer", "BulkResource"]

END = 1700000000.5  # 2023-11-14T22:13:20.5Z


def make_event(n, type_name="request", **body):
    """Event number ``n``: it ends ``n`` seconds after `END`, 0.25 s after it started."""
    return {
        "id": f"{n:032x}", "type": type_name, "host": "web1", "pid": 42,
        "start": END - 0.25 + n, "end": END + n, "body": dict(body, n=n),
    }


def encode(events):
    """``events`` as oxd writes them: concatenated msgpack."""
    return b"".join(wire.encode_body(e) for e in events)


def sources(index):
    """The sources stored in a `FakeBulkIndex`, ordered by their event's n."""
    return sorted(index.documents.values(), key=lambda s: s["body"]["n"])


class FakeBulkIndex:
    """The state of a fake cluster and the rules it answers by.

    * ``request_failures``: statuses answered, in turn, to whole requests
      before any is processed (e.g. ``[429]``).
    * ``item_failures``: ``{_id: [status, ...]}`` answered, in turn, to the
      item with that id (e.g. ``{"abc": [429]}``).
    * ``reject``: called with each source; a returned error dict makes the
      item a 400 with that error.
    """

    def __init__(self):
        self.documents = {}  # (index, _id) -> source
        self.requests = []  # one list of (action, meta, source) per request
        self.request_failures = []
        self.item_failures = {}
        self.reject = lambda source: None
        self.lock = threading.Lock()

    def handle(self, method, path, content_type, body):
        """Answer one HTTP request: ``(status, JSON-able answer)``."""
        with self.lock:
            return self._handle(method, path, content_type, body)

    def _handle(self, method, path, content_type, body):
        if method != "POST" or path.split("?")[0] != "/_bulk":
            return 404, {"error": f"no handler for {method} {path}"}
        if not (content_type or "").startswith(("application/x-ndjson", "application/json")):
            return 406, {"error": f"Content-Type {content_type!r} is not supported"}
        if not body.endswith(b"\n"):
            return 400, _error("illegal_argument_exception",
                               "The bulk request must be terminated by a newline [\\n]")
        lines = body.split(b"\n")[:-1]
        if len(lines) % 2:
            return 400, _error("illegal_argument_exception", "odd number of lines")
        operations = []
        for n in range(0, len(lines), 2):
            try:
                action_line = json.loads(lines[n])
                source = json.loads(lines[n + 1])
            except ValueError as e:
                return 400, _error("x_content_parse_exception", str(e))
            ((action, meta),) = action_line.items()
            if "_type" in meta:
                return 400, _error(
                    "illegal_argument_exception",
                    f"Action/metadata line [{n + 1}] contains an unknown parameter [_type]",
                )
            operations.append((action, meta, source))
        self.requests.append(operations)
        if self.request_failures:
            status = self.request_failures.pop(0)
            return status, _error("es_rejected_execution_exception", f"status {status}")
        items = []
        errors = False
        for action, meta, source in operations:
            item = self._item(action, meta, source)
            errors = errors or "error" in item
            items.append({action: item})
        return 200, {"took": 1, "errors": errors, "items": items}

    def _item(self, action, meta, source):
        index, doc_id = meta.get("_index"), meta.get("_id")
        item = {"_index": index, "_id": doc_id}
        failures = self.item_failures.get(doc_id)
        if failures:
            status = failures.pop(0)
            item.update(status=status, error={
                "type": "es_rejected_execution_exception",
                "reason": f"rejected execution (status {status})",
            })
            return item
        rejection = self.reject(source)
        if rejection:
            item.update(status=400, error=rejection)
            return item
        key = (index, doc_id)
        if action == "create" and key in self.documents:
            item.update(status=409, error={
                "type": "version_conflict_engine_exception",
                "reason": f"[{doc_id}]: version conflict, document already exists",
            })
            return item
        self.documents[key] = source
        item.update(status=201, result="created")
        return item


def _error(kind, reason):
    return {"error": {"root_cause": [{"type": kind, "reason": reason}],
                      "type": kind, "reason": reason}, "status": 400}


class BulkHTTPServer:
    """`FakeBulkIndex` served over HTTP on a free loopback port, in a thread."""

    def __init__(self, index=None):
        self.index = index or FakeBulkIndex()
        fake = self.index

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                status, answer = fake.handle(
                    "POST", self.path, self.headers.get("Content-Type"), body
                )
                data = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def address(self):
        """``127.0.0.1:<port>``."""
        host, port = self._server.server_address[:2]
        return f"{host}:{port}"

    def start(self):
        self._thread.start()
        return self

    def stop(self):
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()


class BulkResource(Resource):
    """`FakeBulkIndex` as a twisted.web resource, for ``StubTreq``."""

    isLeaf = True

    def __init__(self, index=None):
        super().__init__()
        self.index = index or FakeBulkIndex()

    def render(self, request):
        content_type = request.getHeader("content-type")
        status, answer = self.index.handle(
            request.method.decode(), request.uri.decode(), content_type,
            request.content.read(),
        )
        request.setResponseCode(status)
        request.setHeader("content-type", "application/json")
        return json.dumps(answer).encode()
