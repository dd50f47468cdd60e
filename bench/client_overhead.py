"""What one request event costs the application's thread.

One "request event" is a `blueox.Context` with five `set` calls. It is timed
side by side, in the same process and run, with:

* BlueOx unconfigured (every call a no-op send);
* BlueOx configured, a collector listening (a PULL socket in another process);
* BlueOx configured, nobody listening (queue full, events dropped and counted);
* one stdlib ``logging.info`` through a ``FileHandler`` (the baseline);
* one OpenTelemetry span with five attributes and a ``BatchSpanProcessor``
  (only if ``opentelemetry-sdk`` is installed: ``make bench`` installs it).

Each case runs ``--events`` events ``--repeat`` times; the table gives the
median microseconds per event and the ratio to ``logging.info``.

    .venv/bin/python bench/client_overhead.py [--events 20000] [--repeat 7]
"""

import argparse
import logging
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time

import blueox

# The collector drains in C (a ZeroMQ proxy into a PUB socket nobody reads),
# so that what is measured is the client, not a slow receiver.
COLLECTOR = r"""
import sys, zmq
context = zmq.Context()
sock = context.socket(zmq.PULL)
sock.setsockopt(zmq.RCVHWM, 100000)
sock.bind("tcp://127.0.0.1:%s" % sys.argv[1])
sink = context.socket(zmq.PUB)
sink.bind("inproc://sink")
print("ready", flush=True)
zmq.proxy(sock, sink)
"""


def request_event(n):
    with blueox.Context("request") as context:
        context.set("user", "u123")
        context.set("path", "/api/items")
        context.set("status", 200)
        context.set("size", 5321)
        context.set("response.ms", 12.5)


def time_per_event(function, events, repeat):
    """Median microseconds per call of ``function(n)`` over ``repeat`` runs."""
    runs = []
    for _ in range(repeat):
        start = time.perf_counter()
        for n in range(events):
            function(n)
        runs.append((time.perf_counter() - start) / events * 1e6)
    return statistics.median(runs)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_collector():
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-c", COLLECTOR, str(port)], stdout=subprocess.PIPE, text=True
    )
    process.stdout.readline()
    return process, port


def logging_case(directory):
    logger = logging.getLogger("bench.client_overhead")
    logger.propagate = False
    logger.setLevel(logging.INFO)
    handler = logging.FileHandler(os.path.join(directory, "bench.log"))
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    logger.addHandler(handler)

    def log_one(n):
        logger.info("request user=%s path=%s status=%d", "u123", "/api/items", 200)

    return log_one


def opentelemetry_case():
    try:
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import (
            BatchSpanProcessor,
            SpanExporter,
            SpanExportResult,
        )
    except ImportError:
        return None

    class DiscardExporter(SpanExporter):
        def export(self, spans):
            return SpanExportResult.SUCCESS

    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(DiscardExporter()))
    tracer = provider.get_tracer("bench")

    def span_one(n):
        with tracer.start_as_current_span("request") as span:
            span.set_attribute("user", "u123")
            span.set_attribute("path", "/api/items")
            span.set_attribute("status", 200)
            span.set_attribute("size", 5321)
            span.set_attribute("response.ms", 12.5)

    return span_one, provider


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=20000)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args(argv)
    results = []
    notes = []
    with tempfile.TemporaryDirectory() as directory:
        log_one = logging_case(directory)
        results.append(("stdlib logging.info, FileHandler", time_per_event(log_one, args.events, args.repeat)))

        blueox.configure(None, None)
        results.append(("blueox unconfigured", time_per_event(request_event, args.events, args.repeat)))

        collector, port = start_collector()
        try:
            blueox.configure("127.0.0.1", port)
            listening = time_per_event(request_event, args.events, args.repeat)
            notes.append(
                "collector listening: sent %(sent)d, queued %(queued)d, dropped %(dropped)d"
                % blueox.emitter_stats()
            )
            blueox.shutdown()
        finally:
            collector.kill()
            collector.wait()
        results.append(("blueox, collector listening", listening))

        blueox.configure("127.0.0.1", free_port())
        nobody = time_per_event(request_event, args.events, args.repeat)
        notes.append(
            "nobody listening: sent %(sent)d, queued %(queued)d, dropped %(dropped)d"
            % blueox.emitter_stats()
        )
        blueox.shutdown(0.1)
        results.append(("blueox, nobody listening", nobody))

        otel = opentelemetry_case()
        if otel is not None:
            span_one, provider = otel
            results.append(("OpenTelemetry span, BatchSpanProcessor", time_per_event(span_one, args.events, args.repeat)))
            provider.shutdown()

    baseline = results[0][1]
    print(f"client_overhead: {args.events} events x {args.repeat} runs, median per event")
    print(f"{'case':42} {'us/event':>9} {'x logging':>10}")
    for name, micros in results:
        print(f"{name:42} {micros:9.2f} {micros / baseline:10.2f}")
    if otel is None:
        print("(OpenTelemetry SDK not installed: `make bench` installs it)")
    for note in notes:
        print(note)


if __name__ == "__main__":
    main()
