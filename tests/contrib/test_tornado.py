"""Tests for blueox.tornado_utils, through Tornado's AsyncHTTPTestCase."""

import asyncio

import tornado.gen
import tornado.web
from tornado.httpclient import AsyncHTTPClient
from tornado.testing import AsyncHTTPTestCase, gen_test

import blueox
from blueox import tornado_utils
from blueox.tornado_utils import BlueOxRequestHandlerMixin, SampleRequestHandler

from ._helpers import Gate, RecordingMixin

CONCURRENT = 50


class HelloHandler(SampleRequestHandler):
    async def get(self):
        self.revision = "r9"
        self.current_user = {"id": "u1"} if self.get_argument("login", None) else None
        await asyncio.sleep(0)
        with blueox.Context(".db"):
            blueox.set("query", "select 1")
        self.write("hello ")
        self.write({"n": 1})


class FailHandler(SampleRequestHandler):
    def get(self):
        raise ZeroDivisionError("handler exploded")


class ForbiddenHandler(SampleRequestHandler):
    def get(self):
        raise tornado.web.HTTPError(403)


class LegacyHandler(SampleRequestHandler):
    @tornado_utils.coroutine
    def get(self):
        yield tornado.gen.moment
        with blueox.Context(".db"):
            blueox.set("query", "legacy")
        self.write("old style")


class NamedHandler(BlueOxRequestHandlerMixin, tornado.web.RequestHandler):
    blueox_name = "myapp.request"
    blueox_redact_headers = ["X-Api-Key"]

    def get(self):
        self.finish("named")


class OverlapHandler(SampleRequestHandler):
    def initialize(self, gates):
        self.gates = gates

    async def get(self, n):
        blueox.set("n", int(n))
        await self.gates[0].wait()  # all requests are open here
        with blueox.Context(".db"):
            blueox.set("n", int(n))
            await self.gates[1].wait()  # all .db contexts are open here
            await asyncio.sleep(0)
        self.write(n)


class TornadoTests(RecordingMixin, AsyncHTTPTestCase):
    def get_app(self):
        self.gates = [Gate(CONCURRENT), Gate(CONCURRENT)]
        return tornado.web.Application(
            [
                (r"/hello", HelloHandler),
                (r"/fail", FailHandler),
                (r"/forbidden", ForbiddenHandler),
                (r"/legacy", LegacyHandler),
                (r"/named", NamedHandler),
                (r"/overlap/(\d+)", OverlapHandler, {"gates": self.gates}),
            ]
        )

    def test_request_fields(self):
        """A request becomes one event with method, path, uri, url, headers, ip, user, revision, status and size."""
        response = self.fetch(
            "/hello?login=1", headers={"User-Agent": "tester/1.0", "Cookie": "session=sekrit"}
        )
        self.assertEqual(response.code, 200)
        request_event = self.only_event("request")
        body = request_event["body"]
        self.assertEqual(body["method"], "GET")
        self.assertEqual(body["path"], "/hello")
        self.assertEqual(body["uri"], "/hello?login=1")
        self.assertEqual(body["url"], self.get_url("/hello?login=1"))
        self.assertEqual(body["headers"]["User-Agent"], "tester/1.0")
        self.assertEqual(body["headers"]["Cookie"], "[redacted]")
        self.assertEqual(body["client_ip"], "127.0.0.1")
        self.assertEqual(body["user"], "u1")
        self.assertEqual(body["revision"], "r9")
        self.assertEqual(body["response_status_code"], 200)
        self.assertEqual(body["response_size"], len(response.body))
        self.assertNotIn("exception", body)
        self.assertEqual(self.only_event("request.db")["id"], request_event["id"])

    def test_handler_exception(self):
        """A handler that raises gives a 500 whose event holds the formatted traceback."""
        with self.assertLogs("tornado", "ERROR"):
            response = self.fetch("/fail")
        self.assertEqual(response.code, 500)
        body = self.only_event("request")["body"]
        self.assertEqual(body["response_status_code"], 500)
        self.assertIn("Traceback (most recent call last)", body["exception"])
        self.assertIn("ZeroDivisionError: handler exploded", body["exception"])
        self.assertEqual(body["response_size"], len(response.body))

    def test_http_error_is_not_an_exception(self):
        """An HTTPError is recorded as its status, with no exception."""
        with self.assertLogs("tornado.access", "WARNING"):
            response = self.fetch("/forbidden")
        self.assertEqual(response.code, 403)
        body = self.only_event("request")["body"]
        self.assertEqual(body["response_status_code"], 403)
        self.assertNotIn("exception", body)

    def test_method_not_allowed_recorded(self):
        """A request refused before prepare() (405) is still one event."""
        with self.assertLogs("tornado.access", "WARNING"):
            response = self.fetch("/hello", method="DELETE")
        self.assertEqual(response.code, 405)
        self.assertEqual(self.only_event("request")["body"]["response_status_code"], 405)

    def test_legacy_coroutine(self):
        """A generator handler decorated with tornado_utils.coroutine keeps its request's context."""
        response = self.fetch("/legacy")
        self.assertEqual(response.body, b"old style")
        self.assertEqual(self.only_event("request.db")["id"], self.only_event("request")["id"])
        self.assertIs(tornado_utils.coroutine, tornado.gen.coroutine)

    def test_mixin_name_and_redaction(self):
        """The mixin takes the event name and redacted headers from class attributes."""
        self.fetch("/named", headers={"X-Api-Key": "k", "Authorization": "Basic abc"})
        body = self.only_event("myapp.request")["body"]
        self.assertEqual(body["headers"]["X-Api-Key"], "[redacted]")
        self.assertEqual(body["headers"]["Authorization"], "Basic abc")
        self.assertEqual(body["response_size"], 5)

    @gen_test(timeout=20)
    async def test_overlapping_requests_keep_their_ids(self):
        """50 overlapping requests give 50 events whose '.db' sub-events carry their own request's id."""
        client = AsyncHTTPClient(force_instance=True, max_clients=CONCURRENT)
        self.addCleanup(client.close)
        responses = await asyncio.gather(
            *(client.fetch(self.get_url(f"/overlap/{n}")) for n in range(CONCURRENT))
        )
        self.assertEqual([r.body for r in responses], [str(n).encode() for n in range(CONCURRENT)])
        self.assert_own_ids(CONCURRENT)
        self.assertEqual(self.gates[1].waiting, CONCURRENT)
