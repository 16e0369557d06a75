#!/usr/bin/env python3
"""A small transit broadcaster in Python, built like the story's service, reporting to Stallwatch.

A source thread produces vehicle snapshots and writes each one to every stream's bounded
drop-oldest queue; one dispatcher thread per stream parses the snapshot (``int(bearing)``, the
story's ``int.Parse``) and hands it to the stream's subscribers. A ``stallwatch_report.Reporter``
thread reports every stream to the sidecar, and ``AdminServer`` answers the sidecar's dump and
restart requests.

Unsupervised (the default, as in the story), one malformed snapshot kills the dispatcher thread:
the process lives on, the queue fills, nothing is broadcast. Stallwatch judges the stream stalled
(``DispatcherDead``), captures a bundle and restarts the process. ``--supervised`` is the fix:
the bad snapshot is quarantined and the dispatcher carries on.

HTTP (``--http-addr``, default 127.0.0.1:8090):
  GET  /v1/streams                    {"instance", "streams": {name: {"last_seq", "updates_total"}}}
  POST /control/poison?stream=NAME    enqueue one malformed snapshot (bearing "north")
  POST /control/kill-consumer?stream=NAME   the dispatcher raises at its next item
Environment fallbacks: STALLWATCH_REPORT_URL, STALLWATCH_ADMIN_ADDR, TRANSIT_HTTP_ADDR.
"""

import argparse
import http.server
import json
import os
import random
import signal
import sys
import threading
import time
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import stallwatch_report as sw  # noqa: E402


class PoisonPill(Exception):
    pass


def parse_addr(text):
    host, _, port = text.rpartition(":")
    return host or "127.0.0.1", int(port)


class Service:
    def __init__(self, args):
        self.args = args
        self.kill = set()  # streams whose dispatcher must raise at its next item
        self.lock = threading.Lock()
        self.progress = {}  # stream -> {"last_seq", "updates_total"}
        self.streams = [
            sw.Stream(name, args.capacity, self.dispatch, supervised=args.supervised)
            for name in args.streams.split(",")
        ]
        for s in self.streams:
            self.progress[s.name] = {"last_seq": 0, "updates_total": 0}
            s.set_subscribers(1)  # one built-in subscriber: the progress table
        self.reporter = sw.Reporter(
            args.report_url, self.streams, args.report_interval, version="transit_service.py 0.1"
        )
        self.admin = sw.AdminServer(parse_addr(args.admin_addr), self.reporter, self.streams)
        self.stop = threading.Event()

    # The source: one snapshot of every vehicle per tick, to every stream.
    def source(self):
        rng = random.Random(1)
        seq = 0
        started = time.monotonic()
        poisoned = self.args.poison_after is None
        while not self.stop.wait(1.0 / self.args.rate):
            seq += 1
            vehicles = [
                {
                    "id": "veh-%d" % i,
                    "lat": 47.6 + rng.random() / 100,
                    "lon": -122.3 + rng.random() / 100,
                    "bearing": str(rng.randrange(360)),
                }
                for i in range(self.args.vehicles)
            ]
            if not poisoned and time.monotonic() - started >= self.args.poison_after:
                vehicles[0]["bearing"] = "north"  # the malformed field
                poisoned = True
                print("source: poison snapshot %d (vehicle veh-0 bearing 'north')" % seq, flush=True)
            snapshot = {"seq": seq, "vehicles": vehicles}
            for s in self.streams:
                s.queue.put(snapshot)

    # The dispatcher: parse, then "broadcast" to the stream's subscriber.
    def dispatch(self, stream, generation):
        while not self.stop.is_set() and stream.is_current(generation):
            snapshot = stream.queue.get(timeout=0.5)
            if snapshot is None:
                continue
            with self.lock:
                if stream.name in self.kill:
                    self.kill.discard(stream.name)
                    raise PoisonPill("consumer killed on request")
            try:
                bearings = [int(v["bearing"]) for v in snapshot["vehicles"]]
            except ValueError as exc:
                if not stream.supervised:
                    raise  # the story: nobody catches it, the worker is gone
                stream.quarantined("snapshot %d: %s" % (snapshot["seq"], exc))
                continue
            del bearings
            with self.lock:
                p = self.progress[stream.name]
                p["last_seq"] = snapshot["seq"]
                p["updates_total"] += 1
            stream.delivered()

    def http_handler(self):
        service = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _answer(self, status, doc):
                body = json.dumps(doc).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self):
                if urllib.parse.urlsplit(self.path).path != "/v1/streams":
                    return self._answer(404, {"error": "no such endpoint"})
                with service.lock:
                    progress = json.loads(json.dumps(service.progress))
                self._answer(200, {"instance": service.reporter.instance, "streams": progress})

            def do_POST(self):
                url = urllib.parse.urlsplit(self.path)
                name = urllib.parse.parse_qs(url.query).get("stream", [""])[0]
                stream = next((s for s in service.streams if s.name == name), None)
                if stream is None:
                    return self._answer(404, {"error": "unknown stream %r" % name})
                if url.path == "/control/poison":
                    stream.queue.put({"seq": -1, "vehicles": [{"id": "veh-0", "bearing": "north"}]})
                elif url.path == "/control/kill-consumer":
                    with service.lock:
                        service.kill.add(name)
                else:
                    return self._answer(404, {"error": "no such endpoint"})
                self._answer(202, {"ok": True})

        return Handler

    def run(self):
        httpd = http.server.ThreadingHTTPServer(parse_addr(self.args.http_addr), self.http_handler())
        threading.Thread(target=httpd.serve_forever, name="admin-app-http", daemon=True).start()
        self.admin.start()
        self.reporter.start()
        for s in self.streams:
            s.start_dispatcher()
        threading.Thread(target=self.source, name="source", daemon=True).start()
        print(
            "transit_service: instance %s, streams %s, report to %r, admin %s, http %s"
            % (
                self.reporter.instance,
                self.args.streams,
                self.args.report_url,
                self.args.admin_addr,
                self.args.http_addr,
            ),
            flush=True,
        )
        signal.signal(signal.SIGTERM, lambda *_: self.stop.set())
        try:
            while not self.stop.wait(0.2):
                pass
        except KeyboardInterrupt:
            self.stop.set()
        self.reporter.stop()
        httpd.shutdown()
        self.admin.stop()
        return 0


def main(argv=None):
    env = os.environ.get
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--streams", default=env("TRANSIT_STREAMS", "all"), help="comma-separated")
    p.add_argument("--capacity", type=int, default=int(env("TRANSIT_CAPACITY", "5")))
    p.add_argument("--rate", type=float, default=float(env("TRANSIT_RATE", "20")), help="snapshots/s")
    p.add_argument("--vehicles", type=int, default=int(env("TRANSIT_VEHICLES", "20")))
    p.add_argument("--poison-after", type=float, default=None, help="seconds until one malformed snapshot")
    p.add_argument("--supervised", action="store_true", help="quarantine bad snapshots (the fix)")
    p.add_argument(
        "--report-url", default=env("STALLWATCH_REPORT_URL", "http://127.0.0.1:9464/v1/reports")
    )
    p.add_argument(
        "--report-interval", type=float, default=float(env("STALLWATCH_REPORT_INTERVAL", "0.25"))
    )
    p.add_argument("--admin-addr", default=env("STALLWATCH_ADMIN_ADDR", "127.0.0.1:9091"))
    p.add_argument("--http-addr", default=env("TRANSIT_HTTP_ADDR", "127.0.0.1:8090"))
    args = p.parse_args(argv)
    if args.rate <= 0:
        p.error("--rate must be positive")
    return Service(args).run()


if __name__ == "__main__":
    sys.exit(main())
