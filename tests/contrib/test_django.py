"""Tests for blueox.contrib.django.middleware, through Django's test clients."""

import asyncio
import os
import types
from unittest import mock

import django
from django.conf import settings
from django.http import HttpResponse, StreamingHttpResponse
from django.test import AsyncClient, Client, override_settings
from django.urls import path
from twisted.trial import unittest

import blueox

from ._helpers import RecordingMixin, ZmqSink

MIDDLEWARE = [
    "blueox.contrib.django.middleware.Middleware",
    "tests.contrib.test_django.identify",
]

if not settings.configured:
    settings.configure(
        DEBUG=False,
        SECRET_KEY="blueox-tests",
        ALLOWED_HOSTS=["testserver"],
        ROOT_URLCONF=__name__,
        INSTALLED_APPS=[],
        MIDDLEWARE=MIDDLEWARE,
        BLUEOX_HOST=None,
    )
    django.setup()


def identify(get_response):
    """Test middleware standing in for authentication and Dealer: sets user and revision."""

    def middleware(request):
        if "HTTP_X_USER" in request.META:
            request.user = types.SimpleNamespace(pk=int(request.META["HTTP_X_USER"]))
        request.revision = "r1"
        return get_response(request)

    return middleware


def hello(request, name):
    with blueox.Context(".db"):
        blueox.set("query", "select 1")
    return HttpResponse(f"hello {name}")


def fail(request):
    raise ZeroDivisionError("view exploded")


def stream(request):
    def body():
        yield b"one,"
        with blueox.Context(".db"):
            blueox.set("query", "select 2")
        yield b"two"

    return StreamingHttpResponse(body())


async def async_hello(request):
    await asyncio.sleep(0)
    with blueox.Context(".db"):
        blueox.set("query", "select 3")
    return HttpResponse(b"async hello")


urlpatterns = [
    path("hello/<str:name>", hello),
    path("fail", fail),
    path("stream", stream),
    path("async", async_hello),
]


class DjangoMiddlewareTests(RecordingMixin, unittest.TestCase):
    def test_request_fields(self):
        """A request becomes one event with method, path, uri, url, headers, ip, user, revision, status and size."""
        with override_settings(BLUEOX_NAME="myapp"):
            response = Client().get(
                "/hello/w%C3%B6rld?x=1",
                headers={"X-User": "42", "User-Agent": "tester/1.0", "Authorization": "Bearer s"},
                REMOTE_ADDR="10.1.2.3",
            )
        self.assertEqual(response.status_code, 200)
        request_event = self.only_event("myapp.request")
        body = request_event["body"]
        self.assertEqual(body["method"], "GET")
        self.assertEqual(body["path"], "/hello/wörld")
        self.assertEqual(body["uri"], "/hello/w%C3%B6rld?x=1")
        self.assertEqual(body["url"], "http://testserver/hello/w%C3%B6rld?x=1")
        self.assertEqual(body["headers"]["User-Agent"], "tester/1.0")
        self.assertEqual(body["headers"]["Authorization"], "[redacted]")
        self.assertEqual(body["client_ip"], "10.1.2.3")
        self.assertEqual(body["user"], 42)
        self.assertEqual(body["revision"], "r1")
        self.assertEqual(body["response_status_code"], 200)
        self.assertEqual(body["response_size"], len(response.content))
        self.assertEqual(self.only_event("myapp.request.db")["id"], request_event["id"])

    def test_cookie_redacted_and_configurable(self):
        """Cookie values are redacted by default; BLUEOX_REDACT_HEADERS changes the list."""
        client = Client()
        client.cookies["session"] = "sekrit"
        client.get("/hello/a")
        with override_settings(BLUEOX_REDACT_HEADERS=["X-Api-Key"]):
            client = Client()
            client.cookies["session"] = "sekrit"
            client.get("/hello/b", headers={"X-Api-Key": "k"})
        first, second = self.events_of("request")
        self.assertEqual(first["body"]["headers"]["Cookie"], "[redacted]")
        self.assertEqual(second["body"]["headers"]["Cookie"], "session=sekrit")
        self.assertEqual(second["body"]["headers"]["X-Api-Key"], "[redacted]")

    def test_view_exception(self):
        """A view that raises gives a 500 whose event holds the formatted traceback."""
        response = Client(raise_request_exception=False).get("/fail")
        self.assertEqual(response.status_code, 500)
        body = self.only_event("request")["body"]
        self.assertEqual(body["response_status_code"], 500)
        self.assertIn("Traceback (most recent call last)", body["exception"])
        self.assertIn("ZeroDivisionError: view exploded", body["exception"])
        self.assertIsNone(blueox.current_context())

    def test_view_exception_reraised_by_client(self):
        """When the test client re-raises the view's error the event has already been sent."""
        self.assertRaises(ZeroDivisionError, Client().get, "/fail")
        self.assertIn("view exploded", self.only_event("request")["body"]["exception"])

    def test_disallowed_host(self):
        """A request for a host not in ALLOWED_HOSTS is still recorded, with the URL as sent."""
        response = Client().get("/hello/a", headers={"Host": "evil.example"})
        self.assertEqual(response.status_code, 200)
        body = self.only_event("request")["body"]
        self.assertEqual(body["url"], "http://evil.example/hello/a")
        self.assertEqual(body["headers"]["Host"], "evil.example")

    def test_not_found(self):
        """A 404 is recorded as a status with no exception."""
        Client().get("/nowhere")
        body = self.only_event("request")["body"]
        self.assertEqual(body["response_status_code"], 404)
        self.assertNotIn("exception", body)

    def test_streaming_response(self):
        """A streamed body is counted and its '.db' contexts belong to the request."""
        response = Client().get("/stream")
        self.assertEqual(self.events, [])
        self.assertEqual(b"".join(response.streaming_content), b"one,two")
        response.close()
        request_event = self.only_event("request")
        self.assertEqual(request_event["body"]["response_size"], 7)
        self.assertEqual(self.only_event("request.db")["id"], request_event["id"])
        self.assertIsNone(blueox.current_context())

    def test_async_client(self):
        """Under Django's ASGI handler an async view's sub-context carries the request's id."""
        response = asyncio.run(AsyncClient().get("/async", headers={"X-User": "7"}))
        self.assertEqual(response.status_code, 200)
        request_event = self.only_event("request")
        self.assertEqual(request_event["body"]["response_size"], len(b"async hello"))
        self.assertEqual(request_event["body"]["user"], 7)
        self.assertEqual(self.only_event("request.db")["id"], request_event["id"])

    def test_integration_error_does_not_break_request(self):
        """A request attribute that fails when read leaves the response intact and the event sent."""

        class Exploding:
            @property
            def pk(self):
                raise RuntimeError("user lookup failed")

        with mock.patch("types.SimpleNamespace", lambda pk: Exploding()):
            with self.assertLogs("blueox.contrib", "ERROR"):
                response = Client().get("/hello/you", headers={"X-User": "1"})
        self.assertEqual(response.content, b"hello you")
        body = self.only_event("request")["body"]
        self.assertNotIn("user", body)
        self.assertEqual(body["response_status_code"], 200)


class DjangoConfigureTests(unittest.TestCase):
    def setUp(self):
        self.sink = ZmqSink()
        self.addCleanup(self.sink.close)
        self.addCleanup(blueox.configure, None, None)

    def test_host_setting_sends_there(self):
        """BLUEOX_HOST = 'host:port' makes the middleware send events to that collector."""
        with override_settings(BLUEOX_HOST=self.sink.address):
            Client().get("/hello/you")
        types_sent = {self.sink.receive()["type"], self.sink.receive()["type"]}
        self.assertEqual(types_sent, {"request", "request.db"})

    def test_absent_host_uses_default_configure(self):
        """Without BLUEOX_HOST the middleware calls default_configure, which reads $BLUEOX_HOST."""
        with override_settings(), mock.patch.dict(os.environ, {"BLUEOX_HOST": self.sink.address}):
            del settings.BLUEOX_HOST
            Client().get("/hello/you")
        self.assertEqual({self.sink.receive()["type"] for _ in range(2)}, {"request", "request.db"})
