"""Unit tests for the Python report client (stdlib unittest, no network beyond loopback)."""

import http.server
import json
import os
import sys
import threading
import time
import unittest
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import stallwatch_report as sw  # noqa: E402


def idle(stream, generation):
    while stream.is_current(generation):
        stream.queue.get(timeout=0.05)


def crash_on_first(stream, generation):
    stream.queue.get(timeout=5)
    raise ValueError("invalid literal for int() with base 10: 'north'")


def wait_for(pred, timeout=5.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(0.01)
    return False


class DropOldestQueueTest(unittest.TestCase):
    def test_full_queue_drops_the_oldest_and_counts_it(self):
        q = sw.DropOldestQueue(2)
        for i in range(5):
            q.put(i)
        self.assertEqual(q.get(timeout=0), 3)
        snap = q.snapshot()
        self.assertEqual(
            (snap["depth"], snap["enqueued_total"], snap["dequeued_total"], snap["dropped_oldest_total"]),
            (1, 5, 1, 3),
        )
        self.assertIsNotNone(snap["last_dequeue_ms"])

    def test_empty_get_times_out_without_counting(self):
        q = sw.DropOldestQueue(1)
        self.assertIsNone(q.get(timeout=0.01))
        self.assertEqual(q.snapshot()["dequeued_total"], 0)

    def test_capacity_zero_is_refused(self):
        with self.assertRaisesRegex(ValueError, "capacity"):
            sw.DropOldestQueue(0)


class StreamTest(unittest.TestCase):
    def test_name_must_be_a_dns_label(self):
        for bad in ["", "Down", "-a", "a-", "a_b", "x" * 64]:
            with self.assertRaises(ValueError, msg=bad):
                sw.Stream(bad, 5, idle)
        sw.Stream("a-1", 5, idle)

    def test_states_missing_running_dead_with_the_error(self):
        s = sw.Stream("all", 5, crash_on_first)
        self.assertEqual(s.dispatcher_state(), "missing")
        s.start_dispatcher()
        self.assertEqual(s.dispatcher_state(), "running")
        s.queue.put("x")
        self.assertTrue(wait_for(lambda: s.dispatcher_state() == "dead"))
        r = s.report()
        self.assertEqual(r["dispatcher"], {"state": "dead", "restarts_total": 0})
        self.assertIn("ValueError: invalid literal", r["last_error"]["message"])

    def test_supervised_dispatcher_is_restarted(self):
        s = sw.Stream("all", 5, crash_on_first, supervised=True)
        s.start_dispatcher()
        s.queue.put("x")
        self.assertTrue(wait_for(lambda: s.restarts_total == 1))
        self.assertTrue(wait_for(lambda: s.dispatcher_state() == "running"))

    def test_report_keeps_the_protocol_invariants(self):
        s = sw.Stream("all", 3, idle)
        for i in range(10):
            s.queue.put(i)
        r = s.report()
        self.assertLessEqual(r["channel"]["depth"], r["channel"]["capacity"])
        self.assertLessEqual(r["dequeued_total"], r["enqueued_total"])
        self.assertNotIn("last_dequeue_ms", r)  # absent, never null: unknown values are refused
        self.assertEqual(r["dropped_oldest_total"], 7)

    def test_truncate_is_one_line_and_bounded_in_utf8_bytes(self):
        text = sw.truncate("é" * 5000 + "\nsecond line")
        self.assertLessEqual(len(text.encode("utf-8")), sw.MAX_TEXT_LEN)
        self.assertNotIn("\n", sw.truncate("a\nb"))


class Sink(http.server.BaseHTTPRequestHandler):
    """A stand-in sidecar that records reports and answers like the real one."""

    reports = []
    status = 202

    def log_message(self, *args):
        pass

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        Sink.reports.append(json.loads(body))
        self.send_response(Sink.status)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")


class ReporterTest(unittest.TestCase):
    def setUp(self):
        Sink.reports, Sink.status = [], 202
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Sink)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        self.url = "http://127.0.0.1:%d/v1/reports" % self.httpd.server_address[1]

    def tearDown(self):
        if self.httpd is not None:
            self.httpd.shutdown()
            self.httpd.server_close()

    def test_reports_advance_seq_and_carry_every_stream(self):
        streams = [sw.Stream("a", 5, idle), sw.Stream("b", 5, idle)]
        rep = sw.Reporter(self.url, streams, interval=0.02, version="test")
        rep.start()
        self.assertTrue(wait_for(lambda: len(Sink.reports) >= 3))
        rep.stop()
        seqs = [r["seq"] for r in Sink.reports]
        self.assertEqual(seqs, sorted(set(seqs)))
        first = Sink.reports[0]
        self.assertEqual(first["protocol"], "stallwatch.report.v1")
        self.assertEqual([s["name"] for s in first["streams"]], ["a", "b"])
        self.assertEqual(first["interval_ms"], 20)

    def test_refusals_are_counted_with_the_reason(self):
        Sink.status = 400
        rep = sw.Reporter(self.url, [sw.Stream("a", 5, idle)], interval=0.02)
        self.assertEqual(rep.send_once(), 400)
        self.assertEqual(rep.refused, 1)
        self.assertIn("HTTP 400", rep.last_refusal)

    def test_an_absent_sidecar_does_not_stop_the_timer(self):
        self.httpd.shutdown()
        self.httpd.server_close()
        rep = sw.Reporter(self.url, [sw.Stream("a", 5, idle)], interval=0.02)
        rep.start()
        self.assertTrue(wait_for(lambda: rep.failed >= 3))
        rep.stop()
        self.httpd = None  # already shut down


class AdminServerTest(unittest.TestCase):
    def test_dump_names_live_dispatchers_and_restart_starts_one(self):
        s = sw.Stream("all", 5, crash_on_first)
        rep = sw.Reporter("", [s])
        admin = sw.AdminServer(("127.0.0.1", 0), rep, [s])
        admin.start()
        base = "http://127.0.0.1:%d" % admin.httpd.server_address[1]
        try:
            s.start_dispatcher()
            dump = json.load(urllib.request.urlopen(base + "/debug/dump"))
            self.assertEqual(dump["protocol"], "stallwatch.taskdump.v1")
            kinds = {(t["kind"], t.get("stream")) for t in dump["tasks"]}
            self.assertIn(("dispatcher", "all"), kinds)
            s.queue.put("x")
            self.assertTrue(wait_for(lambda: s.dispatcher_state() == "dead"))
            dump = json.load(urllib.request.urlopen(base + "/debug/dump"))
            self.assertNotIn(("dispatcher", "all"), {(t["kind"], t.get("stream")) for t in dump["tasks"]})
            self.assertIn("ValueError", dump["recent_errors"][0]["message"])
            req = urllib.request.Request(base + "/admin/streams/all/restart", method="POST")
            self.assertEqual(urllib.request.urlopen(req).status, 202)
            self.assertEqual(s.dispatcher_state(), "running")
            req = urllib.request.Request(base + "/admin/streams/nope/restart", method="POST")
            with self.assertRaises(urllib.error.HTTPError) as err:
                urllib.request.urlopen(req)
            self.assertEqual(err.exception.code, 404)
        finally:
            admin.stop()


if __name__ == "__main__":
    unittest.main()
