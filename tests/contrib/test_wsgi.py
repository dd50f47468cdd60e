"""Tests for blueox.contrib.wsgi, calling the middleware as a WSGI server would."""

from wsgiref.util import setup_testing_defaults

from twisted.trial import unittest

import blueox
from blueox.contrib.wsgi import ENVIRON_KEY, BlueOxWSGIMiddleware, environ_request

from ._helpers import RecordingMixin


def make_environ(**extra):
    environ = {"REQUEST_METHOD": "GET", "PATH_INFO": "/"}
    environ.update(extra)
    setup_testing_defaults(environ)
    return environ


class Body:
    """A streamed response body that remembers being closed."""

    def __init__(self, chunks, fail=False):
        self.chunks = chunks
        self.fail = fail
        self.closed = False

    def __iter__(self):
        for chunk in self.chunks:
            with blueox.Context(".db"):
                blueox.set("chunk", chunk.decode())
            yield chunk
        if self.fail:
            raise OSError("disk gone")

    def close(self):
        self.closed = True


class EnvironRequestTests(unittest.TestCase):
    def test_fields_from_environ(self):
        """Method, path, uri, url, headers and client ip are read from a WSGI environ."""
        fields = environ_request(
            {
                "REQUEST_METHOD": "POST",
                "SCRIPT_NAME": "/app",
                "PATH_INFO": "/caf\xc3\xa9",
                "QUERY_STRING": "a=1&b=2",
                "wsgi.url_scheme": "https",
                "SERVER_NAME": "example.org",
                "SERVER_PORT": "8443",
                "CONTENT_TYPE": "text/plain",
                "HTTP_X_FORWARDED_FOR": "1.2.3.4",
                "REMOTE_ADDR": "10.0.0.9",
            }
        )
        self.assertEqual(fields["method"], "POST")
        self.assertEqual(fields["path"], "/app/café")
        self.assertEqual(fields["uri"], "/app/caf%C3%A9?a=1&b=2")
        self.assertEqual(fields["url"], "https://example.org:8443/app/caf%C3%A9?a=1&b=2")
        self.assertEqual(
            sorted(fields["headers"]),
            [("Content-Type", "text/plain"), ("X-Forwarded-For", "1.2.3.4")],
        )
        self.assertEqual(fields["client_ip"], "10.0.0.9")


class WSGIMiddlewareTests(RecordingMixin, unittest.TestCase):
    def call(self, app, environ=None):
        """Call the wrapped ``app``; returns (status, headers, body iterable)."""
        started = []
        body = BlueOxWSGIMiddleware(app, type_name="web.request")(
            environ or make_environ(), lambda status, headers, exc_info=None: started.append(status)
        )
        return started, body

    def test_sized_response_sent_on_return(self):
        """A body of known length is recorded with its status and size as soon as the app returns."""

        def app(environ, start_response):
            start_response("201 Created", [("Content-Type", "text/plain")])
            return [b"made ", b"it"]

        self.call(app, make_environ(HTTP_AUTHORIZATION="Basic c2VrcmV0"))
        body = self.only_event("web.request")["body"]
        self.assertEqual(body["response_status_code"], 201)
        self.assertEqual(body["response_size"], 7)
        self.assertEqual(body["headers"]["Authorization"], "[redacted]")
        self.assertIsNone(blueox.current_context())

    def test_streamed_body_recorded_when_closed(self):
        """A streamed body keeps the event open and current until the server closes it."""
        inner = Body([b"ab", b"cde"])

        def app(environ, start_response):
            start_response("200 OK", [])
            return inner

        started, body = self.call(app)
        self.assertIsNone(blueox.current_context())
        self.assertEqual(list(body), [b"ab", b"cde"])
        body.close()
        self.assertTrue(inner.closed)
        request_event = self.only_event("web.request")
        self.assertEqual(request_event["body"]["response_size"], 5)
        self.assertEqual(
            [event["id"] for event in self.events_of("web.request.db")], [request_event["id"]] * 2
        )
        self.assertIsNone(blueox.current_context())

    def test_abandoned_body_recorded_on_close(self):
        """Closing a body the client stopped reading still sends the event once."""

        def app(environ, start_response):
            start_response("200 OK", [])
            return Body([b"ab", b"cde"])

        started, body = self.call(app)
        next(iter(body))
        body.close()
        body.close()
        self.assertEqual(self.only_event("web.request")["body"]["response_size"], 2)

    def test_app_exception(self):
        """An exception escaping the app is re-raised and recorded with a 500 status."""

        def app(environ, start_response):
            raise KeyError("missing")

        self.assertRaises(KeyError, self.call, app)
        body = self.only_event("web.request")["body"]
        self.assertEqual(body["response_status_code"], 500)
        self.assertIn("KeyError: 'missing'", body["exception"])
        self.assertIsNone(blueox.current_context())

    def test_body_exception(self):
        """An exception raised while the body is iterated is recorded and re-raised."""

        def app(environ, start_response):
            start_response("200 OK", [])
            return Body([b"ab"], fail=True)

        started, body = self.call(app)
        self.assertRaises(OSError, list, body)
        self.assertIn("OSError: disk gone", self.only_event("web.request")["body"]["exception"])
        self.assertIsNone(blueox.current_context())

    def test_app_adds_details(self):
        """The app finds the event in the environ and adds user, version and revision."""

        class Details:
            user = {"no": "id"}
            version = "2.1"

        def app(environ, start_response):
            environ[ENVIRON_KEY].set_details(Details())
            start_response("200 OK", [("Content-Length", "0")])
            return iter([])

        self.call(app)
        body = self.only_event("web.request")["body"]
        self.assertEqual(body["version"], "2.1")
        self.assertNotIn("user", body)
        self.assertEqual(body["response_size"], 0)
