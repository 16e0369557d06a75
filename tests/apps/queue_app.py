#!/usr/bin/env python3
"""A metrics-only app for zero-code mode's end-to-end test (python3 stdlib only).

Per stream: a producer thread puts items into a bounded queue, a consumer thread takes them
out. It has no report client: all it exports is OpenMetrics on --port (any path):

    queue_app_depth{stream="S"}             gauge, items waiting
    queue_app_dequeued_total{stream="S"}    counter, items taken out
    queue_app_enqueued_total{stream="S"}    counter, items put in (including dropped)

--stop-consumer-after SECS stops the first stream's consumer that long after start (the thread
returns, as a consumer that died on an exception would) and logs "consumer stopped" with the
wall-clock time in ms. Counters start at 0 in every process: a restart makes them go back.
"""

import argparse
import http.server
import queue
import sys
import threading
import time


class Stream:
    def __init__(self, name, capacity):
        self.name = name
        self.q = queue.Queue(maxsize=capacity)
        self.enqueued = 0
        self.dequeued = 0
        self.lock = threading.Lock()


def produce(s, rate):
    while True:
        time.sleep(1.0 / rate)
        with s.lock:
            s.enqueued += 1
        try:
            s.q.put_nowait(object())
        except queue.Full:
            pass  # dropped: the queue is bounded


def consume(s, stop_at):
    while True:
        if stop_at is not None and time.time() >= stop_at:
            print(f"{int(time.time() * 1000)} consumer stopped for stream {s.name}", flush=True)
            return
        try:
            s.q.get(timeout=0.05)
        except queue.Empty:
            continue
        with s.lock:
            s.dequeued += 1


def exposition(streams):
    lines = ["# TYPE queue_app_depth gauge", "# HELP queue_app_depth Items waiting."]
    lines += [f'queue_app_depth{{stream="{s.name}"}} {s.q.qsize()}' for s in streams]
    lines += ["# TYPE queue_app_dequeued counter"]
    lines += [f'queue_app_dequeued_total{{stream="{s.name}"}} {s.dequeued}' for s in streams]
    lines += ["# TYPE queue_app_enqueued counter"]
    lines += [f'queue_app_enqueued_total{{stream="{s.name}"}} {s.enqueued}' for s in streams]
    lines += ["# EOF", ""]
    return "\n".join(lines).encode()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--stream", action="append", default=[])
    p.add_argument("--capacity", type=int, default=8)
    p.add_argument("--rate", type=float, default=20.0)
    p.add_argument("--stop-consumer-after", type=float, default=None)
    a = p.parse_args()
    streams = [Stream(n, a.capacity) for n in (a.stream or ["all"])]
    start = time.time()
    for i, s in enumerate(streams):
        stop_at = start + a.stop_consumer_after if (i == 0 and a.stop_consumer_after) else None
        threading.Thread(target=produce, args=(s, a.rate), daemon=True).start()
        threading.Thread(target=consume, args=(s, stop_at), daemon=True).start()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            body = exposition(streams)
            self.send_response(200)
            self.send_header(
                "Content-Type", "application/openmetrics-text; version=1.0.0; charset=utf-8"
            )
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", a.port), Handler)
    print(f"{int(time.time() * 1000)} serving metrics on 127.0.0.1:{a.port}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    sys.exit(main())
