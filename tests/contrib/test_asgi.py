"""Tests for blueox.contrib.asgi, served by a small asyncio HTTP server on a real socket."""

import asyncio

from twisted.trial import unittest

import blueox
from blueox.contrib.asgi import BlueOxASGIMiddleware

from ._helpers import Gate, RecordingMixin

CONCURRENT = 50


async def serve_http(app, reader, writer):
    """Answer one HTTP/1.0 request on a connection by calling the ASGI ``app``."""
    request_line = (await reader.readline()).decode("latin-1").split()
    headers = []
    while (line := await reader.readline()) not in (b"\r\n", b"\n", b""):
        name, _, value = line.decode("latin-1").partition(":")
        headers.append((name.strip().lower().encode("latin-1"), value.strip().encode("latin-1")))
    path, _, query = request_line[1].partition("?")
    scope = {
        "type": "http",
        "method": request_line[0],
        "scheme": "http",
        "path": path,
        "query_string": query.encode("latin-1"),
        "root_path": "",
        "headers": headers,
        "client": writer.get_extra_info("peername")[:2],
        "server": writer.get_extra_info("sockname")[:2],
    }

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message):
        if message["type"] == "http.response.start":
            writer.write(f"HTTP/1.0 {message['status']} X\r\n\r\n".encode())
        else:
            writer.write(message.get("body", b""))

    try:
        await app(scope, receive, send)
    except Exception:
        writer.write(b"HTTP/1.0 500 X\r\n\r\n")
    finally:
        await writer.drain()
        writer.close()


async def fetch(port, target, headers=""):
    """The status line and body of ``GET target`` from 127.0.0.1:``port``."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET {target} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\n{headers}\r\n".encode())
    response = await reader.read()
    writer.close()
    status, _, body = response.partition(b"\r\n\r\n")
    return status.decode(), body


def make_app(gates):
    """An ASGI app whose /n/<n> requests wait at both gates, the second inside a '.db' context."""

    async def app(scope, receive, send):
        if scope["path"] == "/fail":
            raise LookupError("app exploded")
        n = int(scope["path"].rsplit("/", 1)[1])
        blueox.set("n", n)
        await gates[0].wait()  # every request is open here
        with blueox.Context(".db"):
            blueox.set("n", n)
            await gates[1].wait()  # every '.db' context is open here
            await asyncio.sleep(0)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": str(n).encode()})

    return BlueOxASGIMiddleware(app)


class ASGITests(RecordingMixin, unittest.TestCase):
    def run_server(self, scenario, concurrent=CONCURRENT):
        """Serve the app on a free port, run ``scenario(port)``, and return its result."""
        self.gates = None

        async def main():
            self.gates = [Gate(concurrent), Gate(concurrent)]
            app = make_app(self.gates)
            server = await asyncio.start_server(
                lambda r, w: serve_http(app, r, w), "127.0.0.1", 0
            )
            async with server:
                port = server.sockets[0].getsockname()[1]
                return await asyncio.wait_for(scenario(port), 20)

        return asyncio.run(main())

    def test_overlapping_requests_keep_their_ids(self):
        """50 overlapping requests give 50 events whose '.db' sub-events carry their own request's id."""

        async def scenario(port):
            return await asyncio.gather(*(fetch(port, f"/n/{n}") for n in range(CONCURRENT)))

        responses = self.run_server(scenario)
        self.assertEqual([body for _, body in responses], [str(n).encode() for n in range(CONCURRENT)])
        self.assert_own_ids(CONCURRENT)
        self.assertEqual(self.gates[1].waiting, CONCURRENT)

    def test_request_fields(self):
        """A request's event has method, path, uri, url, redacted headers, client ip, status and size."""
        self.run_server(
            lambda port: fetch(port, "/n/7?x=1", "Authorization: Bearer s\r\nUser-Agent: t/1\r\n"),
            concurrent=1,
        )
        body = self.only_event("request")["body"]
        self.assertEqual(body["method"], "GET")
        self.assertEqual(body["path"], "/n/7")
        self.assertEqual(body["uri"], "/n/7?x=1")
        self.assertRegex(body["url"], r"^http://127\.0\.0\.1:\d+/n/7\?x=1$")
        self.assertEqual(body["headers"]["Authorization"], "[redacted]")
        self.assertEqual(body["headers"]["User-Agent"], "t/1")
        self.assertEqual(body["client_ip"], "127.0.0.1")
        self.assertEqual(body["response_status_code"], 200)
        self.assertEqual(body["response_size"], 1)

    def test_app_exception(self):
        """An exception escaping the app is recorded with its traceback and a 500 status."""
        status, _ = self.run_server(lambda port: fetch(port, "/fail"), concurrent=1)
        self.assertIn("500", status)
        body = self.only_event("request")["body"]
        self.assertEqual(body["response_status_code"], 500)
        self.assertIn("LookupError: app exploded", body["exception"])

    def test_other_scopes_pass_through(self):
        """A lifespan scope reaches the app with no event opened."""
        seen = []

        async def app(scope, receive, send):
            seen.append(blueox.current_context())

        asyncio.run(BlueOxASGIMiddleware(app)({"type": "lifespan"}, None, None))
        self.assertEqual(seen, [None])
        self.assertEqual(self.events, [])
