"""What the tests of oxview share: log data as oxd writes it, and oxview's JSON lines read back."""

import json

from blueox import wire
from blueox.testing import make_event


def json_lines(output):
    return [json.loads(line) for line in output.decode().splitlines()]


def write_file(path, data):
    with open(path, "wb") as f:
        f.write(data)
    return path


def encoded(events):
    return b"".join(wire.encode_body(e) for e in events)


def request_day():
    """A day's request events as oxd files them: top-level events in one file, sub-events in another."""
    parents, subs = [], []
    for n in range(5):
        parent = make_event("request", n, "web", end=1000.0 + n)
        parents.append(parent)
        for offset, sub_type in ((0.5, "request.db"), (0.2, "request.cache")):
            if n == 3:
                continue  # a request without sub-events
            sub = make_event(sub_type, n, "web", end=1000.0 + n - offset)
            sub["id"] = parent["id"]
            subs.append(sub)
    orphan = make_event("request.db", 99, "lost", end=1002.5)  # its request never came
    subs.insert(4, orphan)
    return parents, subs, orphan


TEXT = "# BlueOx\n\nAn application logging framework: caf\u00e9, na\u00efve, \u2713.\n".encode()
