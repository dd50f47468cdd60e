"""Tests for blueox.contrib.flask, through Flask's test client."""

import os
from unittest import mock

import flask
from flask import Flask, Response
from twisted.trial import unittest

import blueox
from blueox.contrib.flask import BlueOxMiddleware

from ._helpers import RecordingMixin, ZmqSink


class User:
    def __init__(self, id):
        self.id = id


class BrokenUser:
    @property
    def id(self):
        raise RuntimeError("user lookup failed")


def make_app(**config):
    """A Flask app with a few views, BlueOx installed with ``config``."""
    app = Flask("testapp")
    app.config.update({"BLUEOX_HOST": None, **config})

    @app.before_request
    def identify():
        if flask.request.headers.get("X-User") == "broken":
            flask.request.user = BrokenUser()
        elif flask.request.headers.get("X-User"):
            flask.request.user = User(int(flask.request.headers["X-User"]))
        flask.g.revision = "abc123"

    @app.route("/hello/<name>")
    def hello(name):
        with blueox.Context(".db"):
            blueox.set("query", "select 1")
        return f"hello {name}"

    @app.route("/fail")
    def fail():
        raise ZeroDivisionError("view exploded")

    @app.route("/stream")
    def stream():
        def body():
            yield "one,"
            with blueox.Context(".db"):
                blueox.set("query", "select 2")
            yield "two"

        return Response(body())

    BlueOxMiddleware(app)
    return app


class FlaskMiddlewareTests(RecordingMixin, unittest.TestCase):
    def test_request_fields(self):
        """A request becomes one event with method, path, uri, url, headers, ip, user, revision, status and size."""
        client = make_app(BLUEOX_NAME="myapp").test_client()
        response = client.get(
            "/hello/w%C3%B6rld?x=1",
            headers={"X-User": "42", "User-Agent": "tester/1.0"},
            environ_base={"REMOTE_ADDR": "10.1.2.3"},
        )
        self.assertEqual(response.status_code, 200)
        event = self.only_event("myapp.request")
        body = event["body"]
        self.assertEqual(body["method"], "GET")
        self.assertEqual(body["path"], "/hello/wörld")
        self.assertEqual(body["uri"], "/hello/w%C3%B6rld?x=1")
        self.assertEqual(body["url"], "http://localhost/hello/w%C3%B6rld?x=1")
        self.assertEqual(body["headers"]["User-Agent"], "tester/1.0")
        self.assertEqual(body["headers"]["Host"], "localhost")
        self.assertEqual(body["client_ip"], "10.1.2.3")
        self.assertEqual(body["user"], 42)
        self.assertEqual(body["revision"], "abc123")
        self.assertEqual(body["response_status_code"], 200)
        self.assertEqual(body["response_size"], len(response.data))
        self.assertNotIn("exception", body)

    def test_sub_context_shares_request_id(self):
        """A '.db' context opened in a view is named under the request and carries its id."""
        make_app(BLUEOX_NAME="myapp").test_client().get("/hello/you")
        request_event = self.only_event("myapp.request")
        db_event = self.only_event("myapp.request.db")
        self.assertEqual(db_event["id"], request_event["id"])
        self.assertEqual(db_event["body"], {"query": "select 1"})

    def test_default_type_name(self):
        """Without BLUEOX_NAME the event is named 'request'."""
        make_app().test_client().get("/hello/you")
        self.assertEqual([event["type"] for event in self.events], ["request.db", "request"])

    def test_credentials_redacted_by_default(self):
        """Authorization and Cookie header values are replaced by '[redacted]'."""
        client = make_app().test_client()
        client.set_cookie("session", "sekrit")
        client.get("/hello/you", headers={"Authorization": "Bearer sekrit"})
        headers = self.only_event("request")["body"]["headers"]
        self.assertEqual(headers["Authorization"], "[redacted]")
        self.assertEqual(headers["Cookie"], "[redacted]")
        self.assertNotIn("sekrit", repr(self.events))

    def test_redaction_configurable(self):
        """BLUEOX_REDACT_HEADERS replaces the default list of redacted headers."""
        make_app(BLUEOX_REDACT_HEADERS=["X-Api-Key"]).test_client().get(
            "/hello/you", headers={"Authorization": "Basic abc", "X-Api-Key": "k"}
        )
        headers = self.only_event("request")["body"]["headers"]
        self.assertEqual(headers["Authorization"], "Basic abc")
        self.assertEqual(headers["X-Api-Key"], "[redacted]")

    def test_uncaught_exception_answered_500(self):
        """A view that raises gives a 500 whose event holds the formatted traceback."""
        client = make_app().test_client()
        response = client.get("/fail")
        self.assertEqual(response.status_code, 500)
        body = self.only_event("request")["body"]
        self.assertEqual(body["response_status_code"], 500)
        self.assertIn("Traceback (most recent call last)", body["exception"])
        self.assertIn("ZeroDivisionError: view exploded", body["exception"])
        self.assertIn("in fail", body["exception"])

    def test_uncaught_exception_propagated(self):
        """With PROPAGATE_EXCEPTIONS the error reaches the caller and the event is still sent."""
        client = make_app(PROPAGATE_EXCEPTIONS=True).test_client()
        self.assertRaises(ZeroDivisionError, client.get, "/fail")
        body = self.only_event("request")["body"]
        self.assertIn("ZeroDivisionError: view exploded", body["exception"])
        self.assertEqual(body["response_status_code"], 500)
        self.assertIsNone(blueox.current_context())

    def test_not_found_is_not_an_exception(self):
        """A 404 is recorded as a status, with no exception."""
        make_app().test_client().get("/nowhere")
        body = self.only_event("request")["body"]
        self.assertEqual(body["response_status_code"], 404)
        self.assertNotIn("exception", body)

    def test_streamed_body(self):
        """A streamed body is counted, and a '.db' context opened while streaming belongs to the request."""
        response = make_app().test_client().get("/stream")
        self.assertEqual(response.data, b"one,two")
        request_event = self.only_event("request")
        self.assertEqual(request_event["body"]["response_size"], 7)
        self.assertEqual(self.only_event("request.db")["id"], request_event["id"])
        self.assertIsNone(blueox.current_context())

    def test_integration_error_does_not_break_request(self):
        """A user object that fails to give its id leaves the response intact and the event sent."""
        with self.assertLogs("blueox.contrib", "ERROR"):
            response = make_app().test_client().get("/hello/you", headers={"X-User": "broken"})
        self.assertEqual(response.status_code, 200)
        self.assertEqual(response.data, b"hello you")
        body = self.only_event("request")["body"]
        self.assertNotIn("user", body)
        self.assertEqual(body["response_status_code"], 200)

    def test_host_none_leaves_configuration_alone(self):
        """BLUEOX_HOST = None does not configure BlueOx, so the test's recorder still gets the event."""
        make_app(BLUEOX_HOST=None).test_client().get("/hello/you")
        self.assertEqual(len(self.events_of("request")), 1)


class FlaskConfigureTests(unittest.TestCase):
    def setUp(self):
        self.sink = ZmqSink()
        self.addCleanup(self.sink.close)
        self.addCleanup(blueox.configure, None, None)

    def test_host_setting_sends_there(self):
        """BLUEOX_HOST = 'host:port' makes the middleware send events to that collector."""
        make_app(BLUEOX_HOST=self.sink.address).test_client().get("/hello/you")
        types = {self.sink.receive()["type"], self.sink.receive()["type"]}
        self.assertEqual(types, {"request", "request.db"})

    def test_absent_host_uses_default_configure(self):
        """Without BLUEOX_HOST the middleware calls default_configure, which reads $BLUEOX_HOST."""
        app = Flask("plain")
        with mock.patch.dict(os.environ, {"BLUEOX_HOST": self.sink.address}):
            BlueOxMiddleware(app)
        app.route("/")(lambda: "ok")
        app.test_client().get("/")
        self.assertEqual(self.sink.receive()["body"]["path"], "/")
