"""The cloud's figures (issue 11): time answers under load, uplink throughput, scale-out.

    cloud_time_answer_p99_ms  a device's time request to the cloud's verified answer, p99,
                              at a steady 200 wakes/s from 1,000 emulated devices (SQLite);
                              beside it the in-process controller's, same devices, same load
    cloud_frames_per_s        sealed uplinks one worker verifies, deduplicates, stores and
                              folds into the shadows per second (SQLite, the default)
    cloud_scaleout_ratio      two workers over one draining the same backlog, PostgreSQL
                              (a database made for the run and dropped after), alternating
    fleet_devices             bench/suite.py: the fleet round (host_tools/sim/fleet.py) with
                              the service as the devices' cloud

Emulated devices are plain MQTT 3.1.1 connections on raw sockets, one per device,
all served by one selector loop: a device speaks only for itself, on its own
topics, sealing with its own key (its admin key with the cloud, key id 1) and its
own counter, as the firmware does, but costs a few kilobytes instead of a process.

The throughput figures drain a backlog: the workers are started (so their
persistent sessions and their shared subscription exist at the broker), frozen with
SIGSTOP, the backlog is published, and the clock runs from SIGCONT until the database
holds every report. The load generator is idle while the workers are timed, and a
worker's start-up is not in the figure. Mosquitto 2.0 hands a shared subscription's
messages to its members in strict turn, offline (or frozen) persistent sessions
included, so a backlog is split evenly between the workers before they wake.

The machine is shared and has 2 cores: the load average before and after is
recorded beside the figures, and the throughput rounds alternate one and two workers
and keep each one's best.

    python -m host_tools.bench.cloud_figures [--quick] [--only time|throughput|fleet]
"""
from __future__ import annotations

import os
import selectors
import signal
import socket
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from host_tools.cloud.broker import Broker
from host_tools.cloud.testbed import CloudTestbed
from spot import builders, frame, messages, secure, topics
from spot.errors import SpotError
from spot.filter_table import FilterTable
from spot.keyring import Key, Keyring

CLOUD = 0x00000001
PG_ADMIN = "host=127.0.0.1 port=5432 user=postgres dbname=postgres"  # trust auth on this machine


# --- MQTT 3.1.1 on a raw socket: only what an emulated device needs ---------------------

def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b, n = n % 128, n // 128
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _utf8(s: str) -> bytes:
    b = s.encode()
    return len(b).to_bytes(2, "big") + b


def _packet(first: int, body: bytes) -> bytes:
    return bytes((first,)) + _varint(len(body)) + body


def mqtt_connect(client_id: str, clean: bool = True, keepalive: int = 120) -> bytes:
    return _packet(0x10, _utf8("MQTT") + bytes((4, 0x02 if clean else 0)) + keepalive.to_bytes(2, "big")
                   + _utf8(client_id))


def mqtt_subscribe(mid: int, topic: str, qos: int = 1) -> bytes:
    return _packet(0x82, mid.to_bytes(2, "big") + _utf8(topic) + bytes((qos,)))


def mqtt_publish(topic: str, payload: bytes, mid: int = 0, qos: int = 1) -> bytes:
    return _packet(0x30 | qos << 1, _utf8(topic) + (mid.to_bytes(2, "big") if qos else b"") + payload)


def mqtt_puback(mid: int) -> bytes:
    return b"\x40\x02" + mid.to_bytes(2, "big")


def mqtt_packets(buf: bytearray) -> Iterator[tuple[int, int, bytes]]:
    """(type, flags, body) of each whole packet at the front of buf, consumed as read."""
    while len(buf) >= 2:
        n, mult, i = 0, 1, 1
        while True:
            if i >= len(buf):
                return
            b = buf[i]
            n += (b & 0x7F) * mult
            mult *= 128
            i += 1
            if not b & 0x80:
                break
        if len(buf) < i + n:
            return
        first, body = buf[0], bytes(buf[i:i + n])
        del buf[:i + n]
        yield first >> 4, first & 0x0F, body


def read_publish(flags: int, body: bytes) -> tuple[str, int, bytes]:
    """(topic, mid or 0, payload) of a PUBLISH's body."""
    tl = int.from_bytes(body[:2], "big")
    topic = body[2:2 + tl].decode()
    at = 2 + tl
    mid = 0
    if flags & 0x06:
        mid = int.from_bytes(body[at:at + 2], "big")
        at += 2
    return topic, mid, body[at:]


# --- emulated devices ---------------------------------------------------------------------

@dataclass
class EmuDevice:
    """A device as the cloud sees it on the wire: its address, site, key and counter."""

    address: int
    site: str
    key: Key  # the device's admin key with the cloud (key id 1): seals its uplinks
    seq: int = 1
    ring: Keyring = field(default_factory=Keyring)  # opens the cloud's answers
    table: FilterTable | None = None

    def __post_init__(self) -> None:
        self.ring.keys.append(self.key)  # the same key both ways, as on the device
        self.table = FilterTable(self.address)
        self.table.set_service(messages.SVC_CORE, (frame.CLASS_TIMESYNC,))

    @property
    def up(self) -> str:
        return topics.topic(self.site, self.address, up=True)

    @property
    def down(self) -> str:
        return topics.topic(self.site, self.address)

    def _next(self) -> int:
        self.seq += 1
        return self.seq - 1

    def time_request(self, local_ms: int) -> bytes:
        return builders.time_request(CLOUD, self.address, self._next(), local_ms, key=self.key)

    def state_report(self, temp_deci: int = 205) -> bytes:
        """A thermostat's state report, the body the firmware's role builds."""
        from host_tools.cloud.uplink import R

        body = {messages.K_KIND: R.REPORT_STATE, R.S_ROLE: R.ROLE_THERMOSTAT, R.S_TEMP: temp_deci,
                R.S_TARGET: 200, R.S_OUTPUTS: 1, R.S_DR: 0}
        return builders.build(messages.SVC_DEVICE, frame.CLASS_REPORT, CLOUD, self.address,
                              self._next(), body, key=self.key)

    def meter_report(self, watts: int = 1200) -> bytes:
        """A meter report (a plug's power and energy), as builders make it."""
        from spot.objects import UNIT_W, UNIT_WH, Analog

        return builders.meter_report(CLOUD, self.address, self._next(), int(time.time()),
                                     Analog(watts, UNIT_W), Analog(watts * 3, UNIT_WH), True, key=self.key)

    def open_answer(self, raw: bytes) -> int | None:
        """The echo of a verified time answer to this device, or None."""
        try:
            f = secure.open_frame(raw, self.table, self.ring)
            body = messages.read_payload(f)
        except SpotError:
            return None
        if f.cls != frame.CLASS_TIMESYNC:
            return None
        echo = body.get(messages.K_TS_ECHO)
        return echo if isinstance(echo, int) else None


def provision(tb: CloudTestbed, site: str, n: int, first: int = 0x30000) -> list[EmuDevice]:
    """n devices in the testbed's registry (imported when the service starts)."""
    addrs = [tb.reg.provision(site, first + i) for i in range(n)]
    tb.reg.save()
    keys = {e.device: e for e in tb.reg.entries() if e.key_id == 1 and e.peer == CLOUD and not e.group}
    return [EmuDevice(a, site, keys[a].device_key()) for a in addrs]


class Wire:
    """One MQTT connection per device, all on one selector; driven by the caller's thread."""

    def __init__(self, port: int, devices: list[EmuDevice], clean: bool = True) -> None:
        self.sel = selectors.DefaultSelector()
        self.devices = devices
        self.conns: dict[int, tuple[socket.socket, bytearray]] = {}
        self.mids: dict[int, int] = {}
        self.on_publish: Any = None  # (device, topic, payload, t) -> None
        self.subacked = 0
        self.pubacks = 0
        for d in devices:
            s = socket.create_connection(("127.0.0.1", port))
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            s.sendall(mqtt_connect(f"emu-{d.address:08x}", clean) + mqtt_subscribe(1, d.down))
            s.setblocking(False)
            self.conns[d.address] = (s, bytearray())
            self.sel.register(s, selectors.EVENT_READ, d)
        deadline = time.monotonic() + 30
        while self.subacked < len(devices):
            if time.monotonic() > deadline:
                raise TimeoutError(f"only {self.subacked} of {len(devices)} emulated devices subscribed")
            self.poll(0.05)

    def send(self, d: EmuDevice, *frames: bytes) -> None:
        s, _ = self.conns[d.address]
        mid = self.mids.get(d.address, 1)
        out = bytearray()
        for raw in frames:
            mid = mid % 65535 + 1
            out += mqtt_publish(d.up, raw, mid)
        self.mids[d.address] = mid
        s.setblocking(True)
        s.sendall(out)
        s.setblocking(False)

    def poll(self, timeout: float) -> None:
        for key, _ in self.sel.select(timeout):
            d: EmuDevice = key.data
            s, buf = self.conns[d.address]
            try:
                chunk = s.recv(65536)
            except BlockingIOError:
                continue
            if not chunk:
                raise ConnectionError(f"the broker closed emulated device {d.address:08x}")
            t = time.monotonic()
            buf += chunk
            for kind, flags, body in mqtt_packets(buf):
                if kind == 4:  # PUBACK: the broker has our frame
                    self.pubacks += 1
                elif kind == 9:  # SUBACK
                    self.subacked += 1
                elif kind == 3:  # PUBLISH
                    topic, mid, payload = read_publish(flags, body)
                    if mid:
                        s.send(mqtt_puback(mid))
                    if self.on_publish:
                        self.on_publish(d, topic, payload, t)

    def close(self) -> None:
        for s, _ in self.conns.values():
            try:
                s.send(b"\xe0\x00")  # DISCONNECT
            except OSError:
                pass
            s.close()
        self.sel.close()


class BenchBroker(Broker):
    """The private Mosquitto with a production's persistence policy.

    The tests' broker saves its whole database after every change (a restart test must
    find everything acknowledged before a crash); with a thousand sessions that is a
    file write per QoS 1 message, and it, not the cloud, would be measured. Here the
    broker saves every 30 s (Mosquitto's default is 30 min) and queues a whole backlog
    for a stopped worker (max_queued_messages: 10,000 in the tests' broker, 1,000 by
    Mosquitto's default)."""

    SETTINGS = {"autosave_on_changes": "false", "autosave_interval": "30",
                "max_queued_messages": "200000"}

    def _write_config(self) -> None:
        super()._write_config()
        lines = [ln for ln in self.conf.read_text().splitlines()
                 if ln.split(" ", 1)[0] not in self.SETTINGS]
        self.conf.write_text("\n".join(lines + [f"{k} {v}" for k, v in self.SETTINGS.items()]) + "\n")


def percentile(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    if not xs:
        return float("nan")
    return xs[min(len(xs) - 1, int(q * len(xs)))]


# --- time answers under a steady load --------------------------------------------------------

@dataclass
class TimeLoad:
    wakes: int
    seconds: float
    latencies_ms: list[float]
    unanswered: int
    bad_answers: int
    reports: list[tuple[int, int]] = field(default_factory=list)  # (device, seq) of each sent

    @property
    def rate(self) -> float:
        return self.wakes / self.seconds


def steady_wakes(wire: Wire, devices: list[EmuDevice], rate: float, seconds: float,
                 settle_s: float = 2.0) -> TimeLoad:
    """Wake devices in turn at `rate` a second for `seconds`: each wake a time request and
    a state report, every third also a meter report; time each request to its verified
    answer. (The third frame matters with several workers: Mosquitto hands a shared
    subscription's messages out in strict turn, so wakes of exactly two frames would send
    every time request to one worker and every report to the other.)"""
    pending: dict[int, tuple[int, float]] = {}
    lat: list[float] = []
    bad = [0]
    sent: list[tuple[int, int]] = []

    def on_publish(d: EmuDevice, _topic: str, payload: bytes, t: float) -> None:
        echo = d.open_answer(payload)
        p = pending.get(d.address)
        if p is not None and echo == p[0]:
            del pending[d.address]
            lat.append((t - p[1]) * 1000)
        else:
            bad[0] += 1

    wire.on_publish = on_publish
    period = 1.0 / rate
    start = time.monotonic()
    due, end, i = start, start + seconds, 0
    while due < end:
        now = time.monotonic()
        if now >= due:
            d = devices[i % len(devices)]
            i += 1
            local = int(now * 1000) & 0x3FFFFFFF
            frames = [d.time_request(local), d.state_report(190 + i % 40)]
            sent.append((d.address, d.seq - 1))
            if i % 3 == 0:
                frames.append(d.meter_report(1000 + i % 500))
                sent.append((d.address, d.seq - 1))
            pending[d.address] = (local, time.monotonic())
            wire.send(d, *frames)
            due += period
            continue
        wire.poll(due - now)
    took = time.monotonic() - start
    settle = time.monotonic() + settle_s
    while pending and time.monotonic() < settle:
        wire.poll(0.05)
    return TimeLoad(i, took, lat, len(pending), bad[0], sent)


@contextmanager
def pg_database(prefix: str = "spot_bench") -> Iterator[str]:
    """A PostgreSQL database of its own for a run (127.0.0.1:5432, user postgres), dropped after."""
    import psycopg

    name = f"{prefix}_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as c:
        c.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgresql://postgres@127.0.0.1:5432/{name}"
    finally:
        with psycopg.connect(PG_ADMIN, autocommit=True) as c:
            c.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# --- uplink throughput: a backlog drained ---------------------------------------------------

DUPLICATE_EVERY = 20  # one frame in 20 is delivered twice (a device's resend): deduplicated


class _Reports:
    """Counts the reports stored since it was made, on one connection (a PostgreSQL
    connection costs the server a process: one per poll took CPU from the workers), by
    the id range, not a scan of the whole table."""

    def __init__(self, db: str) -> None:
        if "://" in db:
            import psycopg

            self.conn: Any = psycopg.connect(db, autocommit=True)
        else:
            import sqlite3

            self.conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, isolation_level=None)
        self.param = "%s" if "://" in db else "?"
        self.since = int(self.conn.execute("SELECT coalesce(max(id), 0) FROM reports").fetchone()[0])

    def count(self) -> int:
        q = f"SELECT count(*) FROM reports WHERE id > {self.param}"
        return int(self.conn.execute(q, (self.since,)).fetchone()[0])

    def close(self) -> None:
        self.conn.close()


def _forget_session(port: int, client_id: str) -> None:
    """End a worker's persistent session (a clean connect), so the broker stops queueing
    uplinks for a worker that will not come back."""
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.sendall(mqtt_connect(client_id, clean=True))
        s.recv(4)
        s.sendall(b"\xe0\x00")


@dataclass
class Drain:
    workers: int
    frames: int  # published, duplicates included
    stored: int  # unique reports stored
    seconds: float

    @property
    def rate(self) -> float:
        return self.frames / self.seconds


def drain(tb: CloudTestbed, wire: Wire, devices: list[EmuDevice], workers: int, per_device: int,
          tag: str, timeout: float = 120.0) -> Drain:
    """Start `workers` workers (one shared group), freeze them, publish a backlog of
    per_device state reports from every device, thaw them and time until the database
    holds every report."""
    from host_tools.cloud.testbed import free_port

    shared = f"bench-{tag}" if workers > 1 or "://" in tb.db else None
    ids = [f"{tag}-{i}" for i in range(workers)]
    procs = [tb.start(worker=w, shared=shared, port=free_port()) for w in ids]
    time.sleep(0.5)  # the subscriptions are in place at the broker
    reports = _Reports(tb.db)
    for p in procs:
        os.kill(p.pid, signal.SIGSTOP)
    try:
        frames = unique = 0
        acked0 = wire.pubacks
        for d in devices:
            batch = []
            for k in range(per_device):
                raw = d.state_report(180 + k % 60)
                batch.append(raw)
                if (unique + k) % DUPLICATE_EVERY == 0:
                    batch.append(raw)
            unique += per_device
            frames += len(batch)
            wire.send(d, *batch)
        deadline = time.monotonic() + timeout
        while wire.pubacks - acked0 < frames:
            if time.monotonic() > deadline:
                raise TimeoutError(f"the broker took {wire.pubacks - acked0} of {frames} frames")
            wire.poll(0.05)
    finally:
        t0 = time.monotonic()
        for p in procs:
            os.kill(p.pid, signal.SIGCONT)
    deadline = t0 + timeout
    stored = 0
    try:
        while stored < unique:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{stored} of {unique} reports stored after {timeout:.0f} s")
            time.sleep(0.05 if stored < 0.9 * unique else 0.01)
            stored = reports.count()
        took = time.monotonic() - t0
    finally:
        reports.close()
    for p in procs:
        p.terminate()
    for p in procs:
        p.wait(20)
        tb.procs.remove(p)
    for w in ids:
        _forget_session(tb.broker.port, f"spot-cloud-{w}")
    return Drain(workers, frames, stored, took)


# --- the figures ------------------------------------------------------------------------------

def _load_now() -> float:
    return round(os.getloadavg()[0], 1)


WARM_UP_S = 2.0


def time_answer_figures(devices: int = 1000, rate: float = 200.0, seconds: float = 10.0) -> dict[str, float]:
    """Time requests answered by the service (SQLite) under a steady load of wakes, beside
    the in-process controller (host_tools/cloud/controller.py) answering the same devices
    at the same rate in the same run."""
    import tempfile

    from host_tools.cloud.controller import Controller

    with tempfile.TemporaryDirectory(prefix="spot-cloud-bench-") as tmp, BenchBroker() as broker, \
            CloudTestbed(Path(tmp), broker=broker) as tb:
        devs = provision(tb, "load", devices)
        tb.start()
        wire = Wire(broker.port, devs)
        try:
            # Each side warms up first (its first statements compiled, its first connections
            # made): the figure is for a steady load, not for a service's first second.
            steady_wakes(wire, devs, rate, WARM_UP_S)
            service = steady_wakes(wire, devs, rate, seconds)
            tb.stop()
            ctl = Controller(tb.reg, "load", tb.broker_addr)
            ctl.connect()
            try:
                steady_wakes(wire, devs, rate, WARM_UP_S)
                controller = steady_wakes(wire, devs, rate, seconds)
            finally:
                ctl.close()
        finally:
            wire.close()
    p99, c99 = percentile(service.latencies_ms, 0.99), percentile(controller.latencies_ms, 0.99)
    return {
        "cloud_time_answer_p99_ms": round(p99, 2),
        "cloud_time_answer_p50_ms": round(percentile(service.latencies_ms, 0.5), 2),
        "cloud_time_answer_max_ms": round(max(service.latencies_ms, default=float("nan")), 2),
        "cloud_time_answer_wakes_per_s": round(service.rate, 1),
        "cloud_time_answer_devices": devices,
        "cloud_time_answer_unanswered": service.unanswered + service.bad_answers,
        "controller_time_answer_p99_ms": round(c99, 2),
        "cloud_time_answer_p99_vs_controller": round(p99 / c99, 2) if c99 > 0 else float("nan"),
    }


def throughput_figures(frames: int = 40000, rounds: int = 3, devices: int = 500) -> dict[str, float]:
    """Backlogs drained: one worker on SQLite (the default); then one worker and two
    workers on one PostgreSQL database made for the run, alternating, best of `rounds`
    each (the machine is shared: the best round is the least disturbed)."""
    import tempfile

    per_device = max(1, frames // devices)
    out: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="spot-cloud-bench-") as tmp, BenchBroker() as broker:
        with CloudTestbed(Path(tmp) / "sqlite", broker=broker) as tb:
            devs = provision(tb, "load", devices)
            tb.cli("import", str(tb.reg.path))
            wire = Wire(broker.port, devs)
            try:
                lite = [drain(tb, wire, devs, 1, per_device, f"lite{i}") for i in range(rounds)]
            finally:
                wire.close()
        with pg_database() as url, CloudTestbed(Path(tmp) / "pg", db=url, broker=broker) as tb:
            devs = provision(tb, "load", devices)
            tb.cli("import", str(tb.reg.path))
            wire = Wire(broker.port, devs)
            try:
                runs: dict[int, list[Drain]] = {1: [], 2: []}
                for i in range(rounds):
                    for n in (1, 2):
                        runs[n].append(drain(tb, wire, devs, n, per_device, f"pg{n}w{i}"))
            finally:
                wire.close()
    one = max(r.rate for r in runs[1])
    two = max(r.rate for r in runs[2])
    out.update({
        "cloud_frames_per_s": round(max(r.rate for r in lite)),
        "cloud_frames_backlog": lite[0].frames,
        "cloud_frames_per_s_postgresql_1_worker": round(one),
        "cloud_frames_per_s_postgresql_2_workers": round(two),
        "cloud_scaleout_ratio": round(two / one, 2),
    })
    return out


def fleet_figures(quick: bool = False) -> dict[str, float]:
    """The fleet round with the service as the devices' cloud (host_tools/sim/fleet.py)."""
    from host_tools.sim import fleet

    return fleet.figures((1000,) if quick else (500, 1000), cloud=True)


def figures(quick: bool = False) -> dict[str, float]:
    """The cloud's figures for build/bench.json (the fleet's is bench/suite.py's), each
    printed beside what it is compared with in the same run."""
    out: dict[str, float] = {"cloud_bench_load_avg": _load_now()}
    out.update(time_answer_figures(seconds=5.0 if quick else 10.0))
    out.update(throughput_figures(frames=20000 if quick else 40000, rounds=1 if quick else 3))
    out["cloud_bench_load_avg_after"] = _load_now()
    print(comparison(out))
    return out


def comparison(f: dict[str, float]) -> str:
    """The figures side by side, as lines for a person."""
    return "\n".join([
        f"time answers at {f['cloud_time_answer_wakes_per_s']:g} wakes/s from "
        f"{f['cloud_time_answer_devices']:g} devices: p99 {f['cloud_time_answer_p99_ms']:g} ms "
        f"(p50 {f['cloud_time_answer_p50_ms']:g}) by the service, "
        f"{f['controller_time_answer_p99_ms']:g} ms by the in-process controller "
        f"(x{f['cloud_time_answer_p99_vs_controller']:g})",
        f"uplinks one worker stores: {f['cloud_frames_per_s']:,.0f} frames/s on SQLite, "
        f"{f['cloud_frames_per_s_postgresql_1_worker']:,.0f} on PostgreSQL; two workers on "
        f"PostgreSQL {f['cloud_frames_per_s_postgresql_2_workers']:,.0f} "
        f"(x{f['cloud_scaleout_ratio']:g})",
        f"machine load average {f['cloud_bench_load_avg']:g} before, "
        f"{f['cloud_bench_load_avg_after']:g} after (2 cores)",
    ])


def main(argv: list[str] | None = None) -> int:
    import argparse
    import json

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--only", choices=("time", "throughput", "fleet"))  # default: all of them
    args = ap.parse_args(argv)
    if args.only == "time":
        f = time_answer_figures(seconds=5.0 if args.quick else 10.0)
    elif args.only == "throughput":
        f = throughput_figures(frames=20000 if args.quick else 40000, rounds=1 if args.quick else 3)
    elif args.only == "fleet":
        f = fleet_figures(args.quick)
    else:
        f = figures(args.quick)
        f.update(fleet_figures(args.quick))
    print(json.dumps(f, indent=1, sort_keys=True))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
