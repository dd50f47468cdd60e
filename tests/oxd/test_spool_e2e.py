"""End-to-end tests of the forward spool: a real oxd with its upstream away, then started."""

import base64
import os

from blueox.testing import free_port, make_event, send_events, wait_for
from tests.oxd.test_service_e2e import OxdTestCase


def rss_megabytes(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


class ForwardingTests(OxdTestCase):
    def test_memory_stays_bounded(self):
        """With the upstream away, 200 MB of events leave oxd's memory within the spool's bound."""
        local = self.start_oxd(
            f"--forward=127.0.0.1:{free_port()}", "--spool-events=100000", "--spool-bytes=2000000"
        )
        before = rss_megabytes(local.process.pid)
        pad = base64.b64encode(os.urandom(37_500)).decode()  # 50 KB that zstd cannot shrink much
        send_events(local.collect_host, (make_event("big", n, pad=pad) for n in range(4000)))
        wait_for(lambda: local.status()["received"] == 4000, message="4000 received")
        status = local.status()
        self.assertLessEqual(status["queued_bytes"], 2_000_000)
        self.assertEqual(status["queued"] + status["dropped"].get("spool_full", 0), 4000)
        self.assertGreater(status["dropped"].get("spool_full", 0), 3000)
        self.assertLess(rss_megabytes(local.process.pid) - before, 40)

    def test_spooled_events_delivered_in_order_when_upstream_starts(self):
        """Events sent while the upstream is absent wait in the spool and arrive in order once it starts."""
        upstream_port = free_port()
        local = self.start_oxd(f"--forward=127.0.0.1:{upstream_port}")
        send_events(local.collect_host, [make_event("fwd", n, "a") for n in range(500)])
        wait_for(lambda: local.status()["queued"] == 500, message="500 spooled")
        self.assertEqual(local.status()["forwarded"], 0)
        log_path = self.make_log_path()
        upstream = self.start_oxd(f"--log-path={log_path}", collect_port=upstream_port)
        wait_for(lambda: upstream.status()["written"] == 500, message="500 delivered")
        self.assertEqual(local.status()["forwarded"], 500)
        (events,) = self.all_events(log_path).values()
        self.assertEqual([e["body"]["seq"] for e in events], list(range(500)))

    def test_spool_bound_drops_and_counts(self):
        """Past --spool-events the forwarder drops and counts events; the spool stays at its bound."""
        upstream_port = free_port()
        local = self.start_oxd(
            f"--forward=127.0.0.1:{upstream_port}", "--spool-events=100", "--spool-bytes=1000000"
        )
        send_events(local.collect_host, [make_event("fwd", n, "a") for n in range(5000)])
        wait_for(lambda: local.status()["received"] == 5000, message="5000 received")
        status = local.status()
        self.assertEqual(status["queued"], 100)
        self.assertEqual(status["dropped"], {"spool_full": 4900})
        log_path = self.make_log_path()
        upstream = self.start_oxd(f"--log-path={log_path}", collect_port=upstream_port)
        wait_for(lambda: upstream.status()["written"] == 100, message="100 delivered")
        (events,) = self.all_events(log_path).values()
        self.assertEqual([e["body"]["seq"] for e in events], list(range(100)))
