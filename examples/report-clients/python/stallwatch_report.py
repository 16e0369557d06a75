"""Stallwatch report client for Python broadcasters (stdlib only, Python 3.8+).

Paste this file into an existing service. It gives you:

- ``DropOldestQueue``: a bounded per-stream queue that evicts the oldest item when full and counts
  everything the report protocol asks for (enqueued, dequeued, dropped, last dequeue time);
- ``Stream``: one stream's queue, its dispatcher (consumer) thread and its counters;
- ``Reporter``: a daemon timer thread that POSTs a ``stallwatch.report.v1`` report to the sidecar
  every interval. It shares nothing with the dispatchers but the counters, so a dead or hung
  dispatcher shows up as "no progress", never as "no report";
- ``AdminServer``: the loopback admin endpoints the sidecar calls: ``GET /debug/dump`` (a
  ``stallwatch.taskdump.v1`` document listing live threads with their stacks, so a dump bundle
  shows which dispatcher thread is missing) and ``POST /admin/streams/{name}/restart`` (start a
  fresh dispatcher thread: the operator's soft restart).

The normative protocol is ``docs/report-protocol.md`` in the Stallwatch repository.
"""

import collections
import http.client
import http.server
import json
import os
import re
import secrets
import sys
import threading
import time
import traceback
import urllib.parse

PROTOCOL = "stallwatch.report.v1"
TASKDUMP_PROTOCOL = "stallwatch.taskdump.v1"
MAX_TEXT_LEN = 4096
MAX_STREAMS = 1024
_STREAM_NAME = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")


def now_ms():
    return int(time.time() * 1000)


def truncate(text, limit=MAX_TEXT_LEN):
    """At most ``limit`` UTF-8 bytes, cut on a character boundary, one line."""
    text = " ".join(str(text).split())
    data = text.encode("utf-8")
    if len(data) <= limit:
        return text
    return data[:limit].decode("utf-8", errors="ignore")


class DropOldestQueue:
    """A bounded queue: ``put`` never blocks the producer; when full, the oldest item goes."""

    def __init__(self, capacity):
        if capacity < 1:
            raise ValueError("capacity must be at least 1, got %r" % (capacity,))
        self.capacity = capacity
        self._items = collections.deque()
        self._cond = threading.Condition()
        self.enqueued_total = 0
        self.dequeued_total = 0
        self.dropped_oldest_total = 0
        self.last_dequeue_ms = None

    def put(self, item):
        with self._cond:
            if len(self._items) >= self.capacity:
                self._items.popleft()
                self.dropped_oldest_total += 1
            self._items.append(item)
            self.enqueued_total += 1
            self._cond.notify()

    def get(self, timeout=None):
        """The oldest item, or ``None`` after ``timeout`` seconds with nothing to take."""
        with self._cond:
            if not self._items and not self._cond.wait_for(lambda: self._items, timeout):
                return None
            item = self._items.popleft()
            self.dequeued_total += 1
            self.last_dequeue_ms = now_ms()
            return item

    def snapshot(self):
        with self._cond:
            return {
                "depth": len(self._items),
                "enqueued_total": self.enqueued_total,
                "dequeued_total": self.dequeued_total,
                "dropped_oldest_total": self.dropped_oldest_total,
                "last_dequeue_ms": self.last_dequeue_ms,
            }


class Stream:
    """One stream: its queue, its dispatcher thread and the counters a report carries.

    ``dispatch(stream)`` is the consumer loop the service supplies; ``start_dispatcher`` runs it
    on a named daemon thread. If it raises, the thread ends and the error is kept as the stream's
    ``last_error`` (the report then says ``dead``): nothing restarts it unless ``supervised``.
    """

    def __init__(self, name, capacity, dispatch, supervised=False):
        if not _STREAM_NAME.match(name):
            raise ValueError("stream name %r is not a DNS label" % (name,))
        self.name = name
        self.queue = DropOldestQueue(capacity)
        self._dispatch = dispatch
        self.supervised = supervised
        self._lock = threading.Lock()
        self._thread = None
        self._restarting = False
        self._generation = 0
        self.started_at_ms = None
        self.restarts_total = 0
        self.quarantined_total = 0
        self.subscribers = 0
        self.delivered_total = 0
        self.last_error = None  # {"at_ms": int, "message": str}

    # -- what the service calls -------------------------------------------------------------
    def record_error(self, message):
        with self._lock:
            self.last_error = {"at_ms": now_ms(), "message": truncate(message)}

    def quarantined(self, message):
        with self._lock:
            self.quarantined_total += 1
            self.last_error = {"at_ms": now_ms(), "message": truncate(message)}

    def delivered(self, count=1):
        with self._lock:
            self.delivered_total += count

    def set_subscribers(self, count):
        with self._lock:
            self.subscribers = count

    # -- the dispatcher thread -------------------------------------------------------------
    def start_dispatcher(self):
        with self._lock:
            self._generation += 1
            generation = self._generation
            thread = threading.Thread(
                target=self._run, args=(generation,), name="dispatcher-" + self.name, daemon=True
            )
            self._thread = thread
            self._restarting = False
            self.started_at_ms = now_ms()
        thread.start()
        return thread

    def restart_dispatcher(self):
        """A fresh dispatcher thread (the old one, if alive, stops at its next item)."""
        with self._lock:
            self.restarts_total += 1
        self.start_dispatcher()

    def is_current(self, generation):
        """False once a restart replaced the thread running ``generation``."""
        with self._lock:
            return generation == self._generation

    def _run(self, generation):
        try:
            self._dispatch(self, generation)
        except Exception as exc:  # the story's failure: the worker is gone
            self.record_error("%s: %s" % (type(exc).__name__, exc))
            if self.supervised and self.is_current(generation):
                with self._lock:
                    self._restarting = True
                time.sleep(0.1)
                if self.is_current(generation):
                    self.restart_dispatcher()

    def dispatcher_state(self):
        with self._lock:
            thread, restarting = self._thread, self._restarting
        if thread is None:
            return "missing"
        if thread.is_alive():
            return "running"
        return "restarting" if restarting else "dead"

    def report(self):
        q = self.queue.snapshot()
        state = self.dispatcher_state()
        with self._lock:
            out = {
                "name": self.name,
                "channel": {"depth": q["depth"], "capacity": self.queue.capacity},
                "enqueued_total": q["enqueued_total"],
                "dequeued_total": q["dequeued_total"],
                "dropped_oldest_total": q["dropped_oldest_total"],
                "quarantined_total": self.quarantined_total,
                "dispatcher": {"state": state, "restarts_total": self.restarts_total},
                "subscribers": self.subscribers,
                "delivered_total": self.delivered_total,
            }
            if q["last_dequeue_ms"] is not None:
                out["last_dequeue_ms"] = q["last_dequeue_ms"]
            if self.last_error is not None:
                out["last_error"] = dict(self.last_error)
        return out


class Reporter(threading.Thread):
    """POSTs a report every ``interval`` seconds to ``url`` (``""`` disables reporting).

    Each request is bounded by a timeout shorter than the interval, and a failed report never
    delays the next one. Answers other than 202 are counted in ``refused`` with the last reason in
    ``last_refusal`` (a 400 means this client or its counters are wrong: fix it, do not retry).
    """

    def __init__(self, url, streams, interval=0.25, version=None):
        super().__init__(name="stallwatch-reporter", daemon=True)
        self.url = url
        self.streams = streams
        self.interval = interval
        self.version = version
        self.instance = secrets.token_hex(8)
        self.seq = 0
        self.sent = 0
        self.refused = 0
        self.failed = 0
        self.last_refusal = None
        self._stop_event = threading.Event()

    def build(self):
        if len(self.streams) > MAX_STREAMS:
            raise ValueError("a report carries at most %d streams" % MAX_STREAMS)
        self.seq += 1
        report = {
            "protocol": PROTOCOL,
            "instance": self.instance,
            "seq": self.seq,
            "sent_at_ms": now_ms(),
            "interval_ms": max(1, int(self.interval * 1000)),
            "pid": os.getpid(),
            "streams": [s.report() for s in self.streams],
        }
        if self.version:
            report["version"] = truncate(self.version)
        return report

    def send_once(self):
        body = json.dumps(self.build(), separators=(",", ":")).encode()
        parts = urllib.parse.urlsplit(self.url)
        timeout = max(0.05, self.interval * 0.8)
        conn = http.client.HTTPConnection(parts.hostname, parts.port or 80, timeout=timeout)
        try:
            conn.request(
                "POST", parts.path or "/v1/reports", body, {"Content-Type": "application/json"}
            )
            resp = conn.getresponse()
            answer = resp.read(4096)
            if resp.status == 202:
                self.sent += 1
            else:
                self.refused += 1
                self.last_refusal = "HTTP %d: %s" % (resp.status, answer.decode("utf-8", "replace"))
            return resp.status
        finally:
            conn.close()

    def run(self):
        next_at = time.monotonic()
        while not self._stop_event.is_set():
            if self.url:
                try:
                    self.send_once()
                except (OSError, http.client.HTTPException):
                    # The sidecar is absent or restarting: keep broadcasting, try next interval.
                    self.failed += 1
            next_at += self.interval
            self._stop_event.wait(max(0.0, next_at - time.monotonic()))

    def stop(self):
        self._stop_event.set()


def task_dump(instance, streams, errors=()):
    """A ``stallwatch.taskdump.v1`` document: every live thread with its Python stack."""
    frames = sys._current_frames()
    by_name = {s.name: s for s in streams}
    tasks = []
    for thread in threading.enumerate():
        kind, stream = "other", None
        if thread.name.startswith("dispatcher-") and thread.name[11:] in by_name:
            kind, stream = "dispatcher", thread.name[11:]
        elif thread.name == "stallwatch-reporter":
            kind = "reporter"
        elif thread.name.startswith("source"):
            kind = "source"
        elif thread is threading.main_thread() or thread.name.startswith("admin"):
            kind = "server"
        stack = frames.get(thread.ident)
        task = {
            "name": thread.name,
            "kind": kind,
            "spawned_at_ms": 0,
            "frames": [
                "%s (%s:%d)" % (f.name, f.filename, f.lineno)
                for f in (traceback.extract_stack(stack) if stack else [])
            ][-32:],
        }
        if stream is not None:
            task["stream"] = stream
            task["spawned_at_ms"] = by_name[stream].started_at_ms or 0
        tasks.append(task)
    recent = []
    for s in streams:
        if s.last_error:
            recent.append({"stream": s.name, **s.last_error})
    recent.extend(errors)
    return {
        "protocol": TASKDUMP_PROTOCOL,
        "instance": instance,
        "pid": os.getpid(),
        "captured_at_ms": now_ms(),
        "tasks": tasks,
        "backtrace": "",
        "streams": [s.report() for s in streams],
        "quarantine": [],
        "recent_errors": recent,
    }


class AdminServer(threading.Thread):
    """Loopback admin endpoints the sidecar calls (``--broadcaster-admin-url``)."""

    def __init__(self, address, reporter, streams):
        self.reporter, self.streams = reporter, {s.name: s for s in streams}
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet: the sidecar polls
                pass

            def _answer(self, status, doc):
                body = json.dumps(doc).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self):
                if urllib.parse.urlsplit(self.path).path == "/debug/dump":
                    streams = list(outer.streams.values())
                    self._answer(200, task_dump(outer.reporter.instance, streams))
                else:
                    self._answer(404, {"error": "no such endpoint"})

            def do_POST(self):
                m = re.match(r"^/admin/streams/([^/]+)/restart$", self.path)
                stream = outer.streams.get(m.group(1)) if m else None
                if stream is None:
                    self._answer(404, {"error": "unknown stream"})
                    return
                stream.restart_dispatcher()
                self._answer(202, {"restarted": stream.name})

        self.httpd = http.server.ThreadingHTTPServer(address, Handler)
        super().__init__(name="admin-http", daemon=True)

    def run(self):
        self.httpd.serve_forever(poll_interval=0.2)

    def stop(self):
        self.httpd.shutdown()
