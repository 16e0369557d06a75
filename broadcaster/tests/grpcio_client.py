"""A real gRPC client (grpcio: gRPC C-core with its own HTTP/2) against a running broadcaster.

Run by ``tests/grpcio_interop.rs``, one scenario per run:

    grpcio_client.py SCENARIO --addr 127.0.0.1:PORT [--http-addr 127.0.0.1:PORT] [...]

Each scenario asserts the wire contract (``proto/stallwatch/transit/v1/transit.proto``, the
gRPC health and reflection v1 protocols), exits 1 with what went wrong on stderr, or prints one
JSON summary line on stdout and exits 0. Messages go as raw bytes through grpcio's generic
``unary_unary``/``unary_stream``/``stream_stream`` with the small protobuf codec below, so the
client needs neither grpcio-tools nor generated code, and decodes what the server actually
sent, field by field. Waits are for conditions, bounded by ``WAIT``; nothing asserts a time.
"""

import argparse
import json
import queue
import socket
import struct
import sys
import threading
import time
import urllib.request

WAIT = 30.0
"""Seconds any one condition may take before the scenario fails (the machine is shared)."""

RPC_DEADLINE = 120.0
"""Deadline of every call: no scenario can hang on a server that stopped answering."""

SERVICE = "stallwatch.transit.v1.TransitBroadcaster"
SUBSCRIBE = f"/{SERVICE}/Subscribe"
LIST_STREAMS = f"/{SERVICE}/ListStreams"
HEALTH_CHECK = "/grpc.health.v1.Health/Check"
HEALTH_WATCH = "/grpc.health.v1.Health/Watch"
REFLECTION = "/grpc.reflection.{}.ServerReflection/ServerReflectionInfo"

# grpc.health.v1.HealthCheckResponse.ServingStatus
SERVING = 1
SERVICE_UNKNOWN = 3


class Failed(Exception):
    """A scenario's assertion failed."""


def check(cond, what):
    if not cond:
        raise Failed(what)


# ---------------------------------------------------------------------------------------------
# Protobuf wire format: just what these messages use (varint, fixed64, length-delimited, fixed32).

VARINT, FIXED64, LEN, FIXED32 = 0, 1, 2, 5


def varint(n):
    out = bytearray()
    n &= (1 << 64) - 1  # negative int32/int64 go out as ten-byte two's complement
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def tag(field, wire):
    return varint(field << 3 | wire)


def enc_str(field, s):
    data = s.encode() if isinstance(s, str) else s
    return tag(field, LEN) + varint(len(data)) + data


def enc_double(field, x):
    return tag(field, FIXED64) + struct.pack("<d", x)


def enc_bool(field, b):
    return tag(field, VARINT) + varint(1 if b else 0)


def read_varint(buf, i):
    n = shift = 0
    while True:
        if i >= len(buf):
            raise Failed("truncated varint")
        b = buf[i]
        i += 1
        n |= (b & 0x7F) << shift
        if not b & 0x80:
            return n, i
        shift += 7
        if shift >= 70:
            raise Failed("varint longer than 10 bytes")


def fields(buf):
    """Every field of one encoded message: {number: [value, ...]} in wire order; varints as
    int, fixed64/fixed32 as their little-endian bytes, length-delimited as bytes."""
    out = {}
    i = 0
    while i < len(buf):
        key, i = read_varint(buf, i)
        number, wire = key >> 3, key & 7
        check(number > 0, f"field number 0 at byte {i}")
        if wire == VARINT:
            value, i = read_varint(buf, i)
        elif wire == FIXED64:
            value, i = buf[i : i + 8], i + 8
        elif wire == LEN:
            n, i = read_varint(buf, i)
            value, i = buf[i : i + n], i + n
        elif wire == FIXED32:
            value, i = buf[i : i + 4], i + 4
        else:
            raise Failed(f"wire type {wire} (field {number}) is not proto3")
        check(i <= len(buf), f"field {number} runs past the end of the message")
        out.setdefault(number, []).append(value)
    return out


def last(f, number, default):
    """A singular field's value: the last one on the wire wins (protobuf merge rule)."""
    values = f.get(number)
    return values[-1] if values else default


def as_str(f, number):
    return bytes(last(f, number, b"")).decode()


def as_double(f, number):
    raw = last(f, number, None)
    return struct.unpack("<d", raw)[0] if raw is not None else 0.0


def as_float(f, number):
    raw = last(f, number, None)
    return struct.unpack("<f", raw)[0] if raw is not None else None


# ---------------------------------------------------------------------------------------------
# stallwatch.transit.v1 messages.


def subscribe_request(stream, route_ids=(), bbox=None, raw=False):
    out = enc_str(1, stream)
    for r in route_ids:
        out += enc_str(2, r)
    if bbox is not None:
        box = b"".join(enc_double(n, x) for n, x in zip((1, 2, 3, 4), bbox))
        out += enc_str(3, box)
    if raw:
        out += enc_bool(4, True)
    return out


def vehicle(buf):
    f = fields(buf)
    return {
        "entity_id": as_str(f, 1),
        "vehicle_id": as_str(f, 2),
        "trip_id": as_str(f, 4),
        "route_id": as_str(f, 5),
        "latitude": as_double(f, 6),
        "longitude": as_double(f, 7),
        "bearing": as_float(f, 8),
        "timestamp": last(f, 10, 0),
        "has_position": bool(last(f, 11, 0)),
    }


def trip_update(buf):
    f = fields(buf)
    trip = fields(last(f, 2, b""))
    return {
        "entity_id": as_str(f, 1),
        "route_id": as_str(trip, 2),
        "stop_time_updates": len(f.get(4, [])),
    }


def alert(buf):
    f = fields(buf)
    header = [as_str(fields(t), 1) for t in f.get(7, [])]
    return {
        "entity_id": as_str(f, 1),
        "informed_entities": len(f.get(3, [])),
        "header_text": header,
    }


def stream_update(buf):
    f = fields(buf)
    return {
        "stream": as_str(f, 1),
        "seq": last(f, 2, 0),
        "feed_timestamp": last(f, 3, 0),
        "received_at_us": last(f, 4, 0),
        "missed": last(f, 5, 0),
        "quarantined_entities": last(f, 6, 0),
        "vehicles": [vehicle(v) for v in f.get(7, [])],
        "trip_updates": [trip_update(t) for t in f.get(8, [])],
        "alerts": [alert(a) for a in f.get(9, [])],
        "deleted_entity_ids": [bytes(d).decode() for d in f.get(10, [])],
        "incrementality": last(f, 11, 0),
        "gtfs_realtime_version": as_str(f, 12),
        "raw_entities": len(f.get(13, [])),
    }


def list_streams_response(buf):
    out = {}
    for s in fields(buf).get(1, []):
        f = fields(s)
        out[as_str(f, 1)] = {
            "route_ids": [bytes(r).decode() for r in f.get(2, [])],
            "dispatcher_state": as_str(f, 4),
            "serving": bool(last(f, 5, 0)),
            "subscribers": last(f, 6, 0),
            "delivered_total": last(f, 7, 0),
        }
    return out


def health_status(buf):
    return last(fields(buf), 1, 0)


# ---------------------------------------------------------------------------------------------
# Checks shared by the scenarios.


class SeqLedger:
    """One subscriber's updates in order: seq strictly increasing, and every update skipped
    (a gap in seq) owned up to by the `missed` count of the update right after the gap
    ("missed since its previous update", as the proto says)."""

    def __init__(self, name):
        self.name = name
        self.seqs = []
        self.missed = 0
        self.gaps = 0

    def add(self, update):
        seq = update["seq"]
        if self.seqs:
            prev = self.seqs[-1]
            check(seq > prev, f"{self.name}: seq {seq} after {prev}: not strictly increasing")
            gap = seq - prev - 1
            self.gaps += gap
            check(
                update["missed"] == gap,
                f"{self.name}: seq {seq} after {prev} says missed={update['missed']}, gap {gap}",
            )
        else:
            # A subscriber's queue starts empty: nothing can be missed before its first update.
            check(update["missed"] == 0, f"{self.name}: first update says missed: {update}")
        self.seqs.append(seq)
        self.missed += update["missed"]

    def balanced(self):
        return self.missed == self.gaps

    def summary(self):
        return {
            "updates": len(self.seqs),
            "first_seq": self.seqs[0] if self.seqs else None,
            "last_seq": self.seqs[-1] if self.seqs else None,
            "missed": self.missed,
            "gaps": self.gaps,
        }


def read_until_balanced(calls, ledger, at_least, deadline):
    """Reads `calls` until `ledger` holds `at_least` updates and its missed/gap totals agree."""
    while len(ledger.seqs) < at_least or not ledger.balanced():
        check(
            time.monotonic() < deadline,
            f"{ledger.name}: missed never accounted for the gaps: {ledger.summary()}",
        )
        ledger.add(stream_update(next(calls)))


def synthetic_update_checks(u, args):
    """What every update of the synthetic feed (`--vehicles`, 4 routes, 2 alerts) holds."""
    check(u["stream"] == args.stream, f"stream {u['stream']!r}, want {args.stream!r}")
    check(u["seq"] > 0, "seq 0")
    check(u["feed_timestamp"] > 1_600_000_000, f"feed_timestamp {u['feed_timestamp']}")
    now_us = time.time() * 1e6
    check(
        abs(u["received_at_us"] - now_us) < 3600e6,
        f"received_at_us {u['received_at_us']} is not near now ({now_us:.0f})",
    )
    check(u["gtfs_realtime_version"] == "2.0", f"version {u['gtfs_realtime_version']!r}")
    check(u["incrementality"] == 0, "not FULL_DATASET")
    check(u["quarantined_entities"] == 0, f"{u['quarantined_entities']} quarantined")
    check(len(u["vehicles"]) == args.vehicles, f"{len(u['vehicles'])} vehicles")
    check(len(u["trip_updates"]) == args.vehicles, f"{len(u['trip_updates'])} trip updates")
    check(len(u["alerts"]) == 2, f"{len(u['alerts'])} alerts")
    for v in u["vehicles"]:
        check(v["entity_id"] and v["vehicle_id"], f"vehicle without ids: {v}")
        check(v["route_id"].startswith("R") and v["trip_id"], f"vehicle without a trip: {v}")
        check(v["has_position"], f"vehicle without a position: {v}")
        check(-90 <= v["latitude"] <= 90 and -180 <= v["longitude"] <= 180, f"position: {v}")
        check(v["latitude"] != 0 or v["longitude"] != 0, f"position 0,0: {v}")
    for t in u["trip_updates"]:
        check(t["stop_time_updates"] == 3, f"trip update: {t}")
    for a in u["alerts"]:
        check(a["informed_entities"] >= 1 and a["header_text"][0], f"alert: {a}")


# ---------------------------------------------------------------------------------------------
# Scenarios. Each returns its JSON summary.


def rpc_error(grpc, fn):
    """Runs `fn`, which must fail with a gRPC status; returns (code name, details)."""
    try:
        fn()
    except grpc.RpcError as e:
        return e.code().name, e.details()
    raise Failed("the call succeeded")


def scenario_subscribe(grpc, channel, args):
    sub = channel.unary_stream(SUBSCRIBE)
    calls = sub(subscribe_request(args.stream), timeout=RPC_DEADLINE)
    ledger = SeqLedger("subscriber")
    deadline = time.monotonic() + WAIT
    first = None
    while len(ledger.seqs) < args.count or not ledger.balanced():
        check(time.monotonic() < deadline, f"updates: {ledger.summary()}")
        u = stream_update(next(calls))
        synthetic_update_checks(u, args)
        ledger.add(u)
        first = first or u
    calls.cancel()
    # A subscriber's own route filter, with each entity's original bytes.
    calls = sub(subscribe_request(args.stream, ["R1"], raw=True), timeout=RPC_DEADLINE)
    r1 = stream_update(next(calls))
    calls.cancel()
    check(r1["vehicles"], "no R1 vehicle")
    routes = {v["route_id"] for v in r1["vehicles"]} | {t["route_id"] for t in r1["trip_updates"]}
    check(routes == {"R1"}, f"route filter R1 carried {routes}")
    carried = len(r1["vehicles"]) + len(r1["trip_updates"]) + len(r1["alerts"])
    check(r1["raw_entities"] == carried, f"{r1['raw_entities']} raw entities for {carried}")
    return {
        **ledger.summary(),
        "stream": first["stream"],
        "vehicles": len(first["vehicles"]),
        "first_vehicle": first["vehicles"][0],
        "r1_vehicles": len(r1["vehicles"]),
    }


def established_connections(addr):
    """This machine's established TCP connections to `addr`, an IPv4 HOST:PORT (the client
    ends), from /proc/net/tcp and, as an IPv4-mapped address (C-core's dual-stack sockets),
    /proc/net/tcp6."""
    host, port = addr.rsplit(":", 1)
    # The kernel prints each 32-bit word of the address in host (little-endian) order.
    ipv4 = f"{int.from_bytes(socket.inet_aton(host), 'little'):08X}"
    remotes = {f"{ipv4}:{int(port):04X}", f"0000000000000000FFFF0000{ipv4}:{int(port):04X}"}
    n = 0
    for path in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(path) as f:
            for row in f.read().splitlines()[1:]:
                cols = row.split()
                n += cols[2] in remotes and cols[3] == "01"  # 01: ESTABLISHED
    return n


def scenario_multiplex(grpc, channel, args):
    """`--subscribers` Subscribe calls on one channel at once, plus unary calls between."""
    sub = channel.unary_stream(SUBSCRIBE)
    list_streams = channel.unary_unary(LIST_STREAMS)
    health = channel.unary_unary(HEALTH_CHECK)
    calls = [
        sub(subscribe_request(args.stream), timeout=RPC_DEADLINE) for _ in range(args.subscribers)
    ]
    ledgers = [SeqLedger(f"subscriber {i}") for i in range(len(calls))]
    errors = []
    stop = threading.Event()

    def read(call, ledger):
        try:
            while not stop.is_set():
                ledger.add(stream_update(next(call)))
        except grpc.RpcError as e:
            if e.code() != grpc.StatusCode.CANCELLED:
                errors.append(f"{ledger.name}: {e.code().name} {e.details()}")
        except Exception as e:  # noqa: BLE001 - reported as the scenario's failure
            errors.append(f"{ledger.name}: {e!r}")

    threads = [threading.Thread(target=read, args=cl, daemon=True) for cl in zip(calls, ledgers)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + WAIT
    unary_calls = 0
    # While they stream: ListStreams sees every one of them, health answers on the same channel.
    while True:
        check(not errors, f"a subscriber failed: {errors}")
        check(
            time.monotonic() < deadline,
            f"streams never all flowed: {[l.summary() for l in ledgers]}",
        )
        streams = list_streams_response(list_streams(b"", timeout=RPC_DEADLINE))
        whole = health_status(health(enc_str(1, ""), timeout=RPC_DEADLINE))
        api = health_status(health(enc_str(1, SERVICE), timeout=RPC_DEADLINE))
        unary_calls += 3
        check(whole == SERVING and api == SERVING, f"health {whole}/{api} while streaming")
        if streams[args.stream]["subscribers"] == args.subscribers and all(
            len(l.seqs) >= args.count for l in ledgers
        ):
            break
        time.sleep(0.05)
    connections = established_connections(args.addr)
    stop.set()
    for c in calls:
        c.cancel()
    for t in threads:
        t.join(WAIT)
    check(not errors, f"a subscriber failed: {errors}")
    # Every subscriber saw the same updates: the streams did not mix or steal from each other.
    common = set.intersection(*(set(l.seqs) for l in ledgers))
    check(len(common) >= args.count // 2, f"only {len(common)} seqs common to every subscriber")
    check(connections == 1, f"{connections} TCP connections for one channel")
    return {
        "subscribers": [l.summary() for l in ledgers],
        "listed_subscribers": streams[args.stream]["subscribers"],
        "unary_calls": unary_calls,
        "connections": connections,
    }


def scenario_errors(grpc, channel, args):
    sub = channel.unary_stream(SUBSCRIBE)
    out = {}
    out["unknown_stream"] = rpc_error(
        grpc, lambda: next(sub(subscribe_request("nope"), timeout=RPC_DEADLINE))
    )
    code, details = out["unknown_stream"]
    check(code == "NOT_FOUND", f"unknown stream: {code} {details!r}")
    check('no stream "nope"' in details and args.stream in details, f"message {details!r}")
    for name, box in [
        ("bbox_min_above_max", (50.0, 13.0, 40.0, 14.0)),
        ("bbox_latitude_out_of_range", (-95.0, 13.0, 40.0, 14.0)),
        ("bbox_nan", (float("nan"), 13.0, 40.0, 14.0)),
    ]:
        out[name] = rpc_error(
            grpc,
            lambda b=box: next(sub(subscribe_request(args.stream, bbox=b), timeout=RPC_DEADLINE)),
        )
        code, details = out[name]
        check(code == "INVALID_ARGUMENT" and "bbox" in details, f"{name}: {code} {details!r}")
    for name, path in [
        ("unknown_method", f"/{SERVICE}/Unsubscribe"),
        ("unknown_service", "/stallwatch.transit.v1.Nope/Subscribe"),
    ]:
        out[name] = rpc_error(
            grpc, lambda p=path: channel.unary_unary(p)(b"", timeout=RPC_DEADLINE)
        )
        check(out[name][0] == "UNIMPLEMENTED", f"{name}: {out[name]}")
    # An unknown health service name: NOT_FOUND from Check (grpc.health.v1).
    out["health_unknown"] = rpc_error(
        grpc, lambda: channel.unary_unary(HEALTH_CHECK)(enc_str(1, "nope"), timeout=RPC_DEADLINE)
    )
    check(
        out["health_unknown"][0] == "NOT_FOUND",
        f"health of an unknown service: {out['health_unknown']}",
    )
    # The errors left the channel (and its one connection) usable.
    streams = list_streams_response(channel.unary_unary(LIST_STREAMS)(b"", timeout=RPC_DEADLINE))
    check(args.stream in streams, f"ListStreams after the errors: {streams}")
    check(
        stream_update(next(sub(subscribe_request(args.stream), timeout=RPC_DEADLINE)))["stream"]
        == args.stream,
        "subscribe after the errors",
    )
    return out


def scenario_health_watch(grpc, channel, args):
    watch = channel.unary_stream(HEALTH_WATCH)
    out = {}
    for name in ["", SERVICE, f"{SERVICE}/{args.stream}"]:
        call = watch(enc_str(1, name), timeout=RPC_DEADLINE)
        status = health_status(next(call))
        # A stream's health starts unknown until the updater's first tick marks it; Watch
        # sends every change, so wait for SERVING on the same call.
        deadline = time.monotonic() + WAIT
        while status != SERVING:
            check(time.monotonic() < deadline, f"Watch({name!r}) stayed at {status}")
            status = health_status(next(call))
        out[name or "(server)"] = status
        call.cancel()
    # grpc.health.v1: a Watch of an unknown service gets SERVICE_UNKNOWN and stays open (our
    # own Health service; tonic-health's ended it with NOT_FOUND).
    call = watch(enc_str(1, "nope"), timeout=RPC_DEADLINE)
    status = health_status(next(call))
    check(status == SERVICE_UNKNOWN, f"Watch of an unknown service sent {status}")
    out["unknown_service"] = "SERVICE_UNKNOWN"
    call.cancel()
    return out


def reflection_request(**field):
    ((name, value),) = field.items()
    number = {"file_containing_symbol": 4, "list_services": 7}[name]
    return enc_str(number, value)


def scenario_reflection(grpc, channel, args):
    out = {}
    for version in ["v1", "v1alpha"]:
        requests = queue.Queue()

        def request_iter():
            while (item := requests.get()) is not None:
                yield item

        call = channel.stream_stream(REFLECTION.format(version))(
            request_iter(), timeout=RPC_DEADLINE
        )
        # Bidi: each request is answered before the next goes out on the same stream.
        requests.put(reflection_request(list_services=""))
        listed = fields(last(fields(next(call)), 6, b""))
        services = sorted(as_str(fields(s), 1) for s in listed.get(1, []))
        check(
            SERVICE in services and "grpc.health.v1.Health" in services,
            f"{version} lists {services}",
        )
        requests.put(reflection_request(file_containing_symbol=SERVICE))
        descriptors = fields(last(fields(next(call)), 4, b"")).get(1, [])
        check(descriptors, f"{version}: no file descriptor for {SERVICE}")
        methods = {}
        for d in descriptors:
            fd = fields(d)
            for s in fd.get(6, []):
                sf = fields(s)
                if f"{as_str(fd, 2)}.{as_str(sf, 1)}" == SERVICE:
                    for m in sf.get(2, []):
                        mf = fields(m)
                        methods[as_str(mf, 1)] = bool(last(mf, 6, 0))
        check(methods == {"Subscribe": True, "ListStreams": False}, f"{version}: methods {methods}")
        requests.put(None)
        check(next(call, None) is None, f"{version}: the stream did not end after the client's")
        out[version] = {"services": services, "methods": methods}
    return out


def wait_subscribers(list_streams, stream, want, what):
    deadline = time.monotonic() + WAIT
    while True:
        n = list_streams_response(list_streams(b"", timeout=RPC_DEADLINE))[stream]["subscribers"]
        if n == want:
            return
        check(time.monotonic() < deadline, f"{what}: {n} subscribers, want {want}")
        time.sleep(0.05)


def scenario_cancel(grpc, channel, args):
    sub = channel.unary_stream(SUBSCRIBE)
    list_streams = channel.unary_unary(LIST_STREAMS)
    wait_subscribers(list_streams, args.stream, 0, "before subscribing")
    leaving = sub(subscribe_request(args.stream), timeout=RPC_DEADLINE)
    staying = sub(subscribe_request(args.stream), timeout=RPC_DEADLINE)
    ledger = SeqLedger("staying")
    for _ in range(3):
        stream_update(next(leaving))
        ledger.add(stream_update(next(staying)))
    wait_subscribers(list_streams, args.stream, 2, "both subscribed")
    leaving.cancel()
    code, _ = rpc_error(grpc, lambda: next(leaving))
    check(code == "CANCELLED", f"the cancelled call ended with {code}")
    wait_subscribers(list_streams, args.stream, 1, "after the cancel")
    # The other subscriber keeps receiving, past the moment its neighbour left.
    seq_at_cancel = ledger.seqs[-1]
    read_until_balanced(staying, ledger, len(ledger.seqs) + args.count, time.monotonic() + WAIT)
    staying.cancel()
    wait_subscribers(list_streams, args.stream, 0, "after both left")
    return {"seq_at_cancel": seq_at_cancel, "staying": ledger.summary()}


def scenario_shutdown(grpc, channel, args):
    """Prints `subscribed` once updates flow; the test then sends SIGTERM to the server."""
    calls = channel.unary_stream(SUBSCRIBE)(subscribe_request(args.stream), timeout=RPC_DEADLINE)
    ledger = SeqLedger("subscriber")
    for _ in range(3):
        ledger.add(stream_update(next(calls)))
    print("subscribed", flush=True)
    try:
        for update in calls:
            ledger.add(stream_update(update))
    except grpc.RpcError as e:
        code, details = e.code().name, e.details()
    else:
        raise Failed("the stream ended with OK, not UNAVAILABLE")
    check(
        code == "UNAVAILABLE" and details == "server shutting down",
        f"the stream ended with {code} {details!r}",
    )
    return {"code": code, "details": details, "subscriber": ledger.summary()}


def lagged_total(http_addr, stream):
    """`stallwatch_broadcaster_subscriber_lagged_total` of `stream`, from /metrics."""
    with urllib.request.urlopen(f"http://{http_addr}/metrics", timeout=WAIT) as r:
        text = r.read().decode()
    prefix = f'stallwatch_broadcaster_subscriber_lagged_total{{stream="{stream}"}} '
    for line in text.splitlines():
        if line.startswith(prefix):
            return int(float(line[len(prefix) :]))
    raise Failed(f"no {prefix.strip()} in /metrics")


def scenario_slow_reader(grpc, channel, args):
    """A reader that stops iterating, on its own channel with a small HTTP/2 window, next to a
    fast one on another channel (`--shared-connection`: on the same HTTP/2 connection, where
    only the slow stream's window may close): the fast one keeps receiving while the server
    skips updates for the slow one, and the slow one, resumed, is told what it missed."""
    # Its own connection (grpcio shares one between channels to the same target otherwise),
    # whose HTTP/2 window stays small, so the server soon has to hold its updates back.
    slow_options = [
        ("grpc.use_local_subchannel_pool", 1),
        ("grpc.http2.bdp_probe", 0),
        ("grpc.http2.lookahead_bytes", 16 * 1024),
    ]
    slow_channel = grpc.insecure_channel(args.addr, options=slow_options)
    slow = slow_channel.unary_stream(SUBSCRIBE)(
        subscribe_request(args.stream), timeout=RPC_DEADLINE
    )
    slow_ledger = SeqLedger("slow")
    slow_ledger.add(stream_update(next(slow)))
    lagged_before = lagged_total(args.http_addr, args.stream)
    fast_channel = slow_channel if args.shared_connection else channel
    fast = fast_channel.unary_stream(SUBSCRIBE)(
        subscribe_request(args.stream), timeout=RPC_DEADLINE
    )
    fast_ledger = SeqLedger("fast")
    # The slow reader does not iterate until the server has skipped `--count` updates for it
    # (those the fast one was told it missed are not its); the fast one reads the whole time.
    deadline = time.monotonic() + WAIT
    while (
        lagged_total(args.http_addr, args.stream) - lagged_before - fast_ledger.missed < args.count
    ):
        check(
            time.monotonic() < deadline,
            f"the server never skipped updates for the slow reader; fast: {fast_ledger.summary()}",
        )
        for _ in range(5):
            fast_ledger.add(stream_update(next(fast)))
    fast_during_stall = fast_ledger.summary()
    # The scenario's channel's and the slow channel's, in both modes: a third would mean the
    # fast call did not share the slow one's connection, or the slow one the scenario's.
    connections = established_connections(args.addr)
    check(connections == 2, f"{connections} TCP connections, want 2")
    check(
        fast_during_stall["updates"] >= args.count,
        f"the fast reader got {fast_during_stall['updates']} updates while the server skipped "
        f"{args.count} for the slow one",
    )
    # What the slow reader's client had buffered comes first; then the server's own queue, with
    # the skipped updates counted in `missed` and as a gap in seq.
    deadline = time.monotonic() + WAIT
    while slow_ledger.missed == 0 or not slow_ledger.balanced():
        check(
            time.monotonic() < deadline,
            f"the slow reader was never told what it missed: {slow_ledger.summary()}",
        )
        slow_ledger.add(stream_update(next(slow)))
    read_until_balanced(fast, fast_ledger, len(fast_ledger.seqs) + 1, time.monotonic() + WAIT)
    slow.cancel()
    fast.cancel()
    slow_channel.close()
    return {
        "connections": connections,
        "fast_during_stall": fast_during_stall,
        "fast": fast_ledger.summary(),
        "slow": slow_ledger.summary(),
    }


SCENARIOS = {
    "subscribe": scenario_subscribe,
    "multiplex": scenario_multiplex,
    "errors": scenario_errors,
    "health-watch": scenario_health_watch,
    "reflection": scenario_reflection,
    "cancel": scenario_cancel,
    "shutdown": scenario_shutdown,
    "slow-reader": scenario_slow_reader,
}


def codec_self_test():
    """The codec against encodings worked out by hand, so a wrong decoder cannot make the
    scenarios' checks vacuous. Needs no grpcio."""
    check(varint(300) == b"\xac\x02", "varint(300)")
    check(varint(-1) == b"\xff" * 9 + b"\x01", "varint(-1)")
    check(read_varint(b"\xac\x02", 0) == (300, 2), "read_varint(300)")
    check(subscribe_request("all") == b"\x0a\x03all", "SubscribeRequest{stream: all}")
    check(
        subscribe_request("a", ["R1"], (1.0, 2.0, 3.0, 4.0), True)
        == b"\x0a\x01a\x12\x02R1\x1a\x24"
        + b"".join(
            bytes([n << 3 | 1]) + struct.pack("<d", x)
            for n, x in zip((1, 2, 3, 4), (1.0, 2.0, 3.0, 4.0))
        )
        + b"\x20\x01",
        "SubscribeRequest with routes, bbox and raw",
    )
    vehicle_bytes = (
        enc_str(1, "veh-0")
        + enc_str(2, "V0")
        + enc_str(5, "R1")
        + enc_double(6, 52.5)
        + tag(8, FIXED32)
        + struct.pack("<f", 10.0)
        + tag(11, VARINT)
        + b"\x01"
    )
    # stream, seq 7, a vehicle, version, missed 2, then seq 9 again: the last one wins.
    update = (
        b"\x0a\x03all"
        + b"\x10\x07"
        + tag(7, LEN)
        + varint(len(vehicle_bytes))
        + vehicle_bytes
        + b"\x62\x032.0"
        + b"\x28\x02"
        + b"\x10\x09"
    )
    u = stream_update(update)
    check(u["stream"] == "all" and u["seq"] == 9 and u["missed"] == 2, f"update head: {u}")
    check(u["gtfs_realtime_version"] == "2.0", f"version: {u}")
    v = u["vehicles"][0]
    check(
        (
            v["entity_id"],
            v["vehicle_id"],
            v["route_id"],
            v["latitude"],
            v["bearing"],
            v["has_position"],
        )
        == ("veh-0", "V0", "R1", 52.5, 10.0, True),
        f"vehicle: {v}",
    )
    for bad in [b"\x0a\x05ab", b"\x08", b"\x0b", b"\x00\x01"]:
        try:
            fields(bad)
        except Failed:
            continue
        raise Failed(f"{bad!r} decoded")
    ledger = SeqLedger("t")
    for seq, missed in [(1, 0), (2, 0), (5, 2), (6, 0)]:
        ledger.add({"seq": seq, "missed": missed})
    check((ledger.gaps, ledger.missed) == (2, 2), f"ledger: {ledger.summary()}")
    check(ledger.balanced(), "missed 2 at a gap of 2 not balanced")
    for wrong in [{"seq": 6, "missed": 0}, {"seq": 8, "missed": 0}, {"seq": 7, "missed": 1}]:
        try:
            ledger.add(wrong)
        except Failed:
            continue
        raise Failed(f"{wrong} accepted after seq 6")
    try:
        SeqLedger("u").add({"seq": 3, "missed": 1})
    except Failed:
        return {"ok": True}
    raise Failed("a first update with missed accepted")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("scenario", choices=[*SCENARIOS, "codec-self-test"])
    parser.add_argument("--addr", help="the broadcaster's gRPC address, HOST:PORT")
    parser.add_argument("--http-addr", help="its HTTP address (/metrics), HOST:PORT")
    parser.add_argument("--stream", default="all")
    parser.add_argument("--vehicles", type=int, default=40, help="the synthetic feed's vehicles")
    parser.add_argument("--count", type=int, default=10, help="updates to read (per subscriber)")
    parser.add_argument("--subscribers", type=int, default=4)
    parser.add_argument(
        "--shared-connection",
        action="store_true",
        help="slow-reader: the fast reader on the slow one's connection",
    )
    args = parser.parse_args()
    try:
        if args.scenario == "codec-self-test":
            summary = codec_self_test()
        else:
            import grpc  # here: the codec self-test runs without grpcio

            with grpc.insecure_channel(args.addr) as channel:
                grpc.channel_ready_future(channel).result(timeout=WAIT)
                summary = SCENARIOS[args.scenario](grpc, channel, args)
    except Failed as e:
        print(f"{args.scenario}: FAILED: {e}", file=sys.stderr)
        return 1
    summary["grpcio"] = sys.modules["grpc"].__version__ if "grpc" in sys.modules else None
    print(json.dumps(summary), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
