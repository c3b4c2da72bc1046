"""Commands through the cloud survive SIGKILLs of the service: none lost, none applied twice.

The real service (CloudTestbed: its own process, SQLite, a private Mosquitto)
takes commands over its API while real firmware (the unix port) runs devices
against it: some wake every 100 ms (always reachable), some sleep for seconds
between wakes. Meanwhile the service is SIGKILLed at random moments and
started again on the same database and port. A command counts as accepted
only when the API answered 202 with its id.

After the last kill the service stays up and the devices keep waking until the
cloud holds an ACK for every accepted command. The judge is the device itself:
each frame it takes in (not refused as a replay) is a "kept" event with the
command's counter, so an accepted command with no such event was lost, one
with two was applied twice. The cloud's final state, the device's ACK status
and the device's own journal (its inbox record and applied counter, on its
flash) are checked against the events too.
"""
from __future__ import annotations

import http.client
import json
import random
import shutil
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from host_tools.cloud.store import FINAL_STATES, Store
from host_tools.cloud.testbed import CloudTestbed, run_device
from host_tools.cloud.uplink import STATUS_NAMES
from spot import frame

SITE = "durable"
CLOUD = 1


@dataclass
class Device:
    address: int
    role: str
    wake_ms: int
    run_s: float  # one boot of the firmware; the thread boots it again until told to stop
    fs: Path = Path()
    events: list[dict] = field(default_factory=list)
    boots: int = 0
    errors: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        return f"{self.address:08x}"

    @property
    def sleepy(self) -> bool:
        return self.wake_ms >= 1000


@dataclass
class Accepted:
    id: int
    device: int
    seq: int
    kind: str


@dataclass
class Result:
    kills: int = 0
    sent: int = 0  # POSTs tried
    accepted: list[Accepted] = field(default_factory=list)  # answered 202
    unanswered: int = 0  # the service died or was down: no 202, not counted as accepted
    rejected: Counter = field(default_factory=Counter)  # 4xx/5xx by status
    lost: list[int] = field(default_factory=list)
    twice: list[int] = field(default_factory=list)
    applied: int = 0  # accepted commands the device applied (or adapted)
    refused_by_device: int = 0  # taken in once, and refused on the device's own terms
    acknowledged: int = 0  # accepted commands the cloud holds a final ACK for
    state_mismatch: int = 0  # cloud state != the status the device sent
    orphans_twice: int = 0  # committed but unanswered commands taken in twice
    device_duplicates: int = 0  # resends the device recognised and answered again
    stored_unanswered: int = 0  # committed, but the 202 never reached the client (killed)
    resent: int = 0  # accepted commands the cloud handed to the broker more than once
    journal_mismatch: int = 0
    wakes: int = 0
    device_failures: int = 0  # device runs that failed (their events are missing: judged lost)
    seconds: float = 0.0
    restart_s: list[float] = field(default_factory=list)

    def figures(self) -> dict[str, float]:
        n = len(self.accepted)
        return {
            "cloud_commands_lost_after_sigkill": float(len(self.lost)),
            "cloud_commands_applied_twice": float(len(self.twice) + self.orphans_twice),
            "cloud_sigkills": float(self.kills),
            # sent: accepted with a 202 (what must arrive); posted: every POST tried,
            # those that met a dead or restarting service included (never answered 202).
            "cloud_commands_sent": float(n),
            "cloud_commands_posted": float(self.sent),
            "cloud_commands_posted_unanswered": float(self.unanswered),
            "cloud_commands_applied": float(self.applied),
            "cloud_commands_refused_by_device": float(self.refused_by_device),
            "cloud_commands_acknowledged": float(self.acknowledged),
            "cloud_commands_resends_answered_again": float(self.device_duplicates),
            "cloud_commands_resent": float(self.resent),
            "cloud_commands_stored_unanswered": float(self.stored_unanswered),
            "cloud_commands_state_mismatch": float(self.state_mismatch + self.journal_mismatch),
            "cloud_durability_device_wakes": float(self.wakes),
            "cloud_durability_device_failures": float(self.device_failures),
            "cloud_durability_s": round(self.seconds, 1),
            "cloud_restart_p50_s": round(sorted(self.restart_s)[len(self.restart_s) // 2], 2)
            if self.restart_s else 0.0,
        }


def _command(rng: random.Random, role: str) -> dict:
    """A command this role applies (or adapts): each is a real change on the device."""
    if role == "thermostat":
        return rng.choice([
            {"kind": "setpoint", "value_c": round(rng.uniform(16, 24), 1), "duration_s": 600},
            {"kind": "comfort_band", "low_c": 18, "high_c": round(rng.uniform(20, 23), 1), "duration_s": 600},
            {"kind": "restore"},
        ])
    return rng.choice([
        {"kind": "relay", "on": rng.random() < 0.5},
        {"kind": "limit", "watts": rng.randrange(100, 2000), "duration_s": 600},
        {"kind": "restore"},
    ])


def _post(tb: CloudTestbed, path: str, body: dict) -> tuple[int, Any]:
    """(status, body); (0, error) when the service did not answer at all."""
    try:
        conn = http.client.HTTPConnection("127.0.0.1", tb.port, timeout=10)
        conn.request("POST", path, json.dumps(body), {"Content-Type": "application/json",
                                                      "Authorization": f"Bearer {tb.token}"})
        r = conn.getresponse()
        data = r.read()
        conn.close()
        return r.status, json.loads(data) if data else None
    except (OSError, http.client.HTTPException, ValueError) as e:
        # Refused (down), reset or cut mid-answer (killed): no 202 was seen.
        return 0, repr(e)


def run(tmp: Path, kills: int = 50, seed: int = 2026, uptime_s: tuple[float, float] = (0.2, 2.0),
        fast: int = 2, sleepy: int = 2, sleepy_wake_ms: int = 5000, settle_s: float = 90.0,
        log: Any = None) -> Result:
    """Send commands, SIGKILL the service `kills` times, let it settle; judge every command."""
    rng = random.Random(seed)
    res = Result()
    say = log or (lambda *_a: None)
    roles = ("thermostat", "smart_plug")
    devs = [Device(0x5100 + i, roles[i % 2], 100, 6.0) for i in range(fast)]
    devs += [Device(0x5200 + i, roles[i % 2], sleepy_wake_ms, max(8.0, 3.5 * sleepy_wake_ms / 1000))
             for i in range(sleepy)]
    t0 = time.monotonic()
    with CloudTestbed(tmp) as tb:
        for d in devs:
            d.fs = tb.provision(SITE, d.address)
        tb.start()
        # A first wake each: the capability record that role-specific commands are checked against.
        for d in devs:
            d.events += run_device(tmp, d.fs, tb.broker.port, d.role, 1, wake_ms=d.wake_ms)
        stop_devices = threading.Event()
        stop_sending = threading.Event()

        def device_loop(d: Device) -> None:
            while not stop_devices.is_set():
                try:
                    d.events += run_device(tmp, d.fs, tb.broker.port, d.role, 0, wake_ms=d.wake_ms,
                                           run_s=d.run_s, timeout=d.run_s + 60)
                    d.boots += 1
                except Exception as e:  # noqa: BLE001 - reported: a device run that failed
                    d.errors.append(repr(e)[:500])
                    time.sleep(0.5)

        def sender() -> None:
            while not stop_sending.is_set():
                # Sleepers get a quarter of the traffic: their queue waits between wakes.
                pool = [d for d in devs if d.sleepy] if rng.random() < 0.25 and sleepy else \
                    [d for d in devs if not d.sleepy] or devs
                d = rng.choice(pool)
                res.sent += 1
                status, body = _post(tb, f"/api/devices/{d.name}/commands", _command(rng, d.role))
                if status == 202 and isinstance(body, dict) and "id" in body:
                    res.accepted.append(Accepted(body["id"], d.address, body["seq"], body["kind"]))
                elif status == 0:
                    res.unanswered += 1
                else:
                    res.rejected[status] += 1
                time.sleep(rng.uniform(0.01, 0.1))

        threads = [threading.Thread(target=device_loop, args=(d,), daemon=True) for d in devs]
        threads.append(threading.Thread(target=sender, daemon=True))
        for t in threads:
            t.start()
        for k in range(kills):
            time.sleep(rng.uniform(*uptime_s))
            tb.kill()
            res.kills += 1
            time.sleep(rng.uniform(0, 0.3))  # down for a moment: POSTs meet a closed port
            t = time.monotonic()
            tb.start()
            res.restart_s.append(time.monotonic() - t)
            say(f"kill {k + 1}/{kills}: {len(res.accepted)} accepted so far")
        stop_sending.set()
        threads[-1].join(15)
        # Settle: the service stays up, devices keep waking, until every accepted
        # command holds a final state (or the time is up: what is still open is lost).
        wanted = {a.id for a in res.accepted}
        end = time.monotonic() + settle_s
        while time.monotonic() < end:
            if not wanted & {c["id"] for c in tb.api("GET", "/api/pending")}:
                break
            time.sleep(0.5)
        # Every device wakes once more after that, so a late duplicate would show.
        time.sleep(max(d.wake_ms for d in devs) / 1000 + 1)
        stop_devices.set()
        for t in threads[:-1]:
            t.join(max(d.run_s for d in devs) + 90)
        # The cloud's final word, straight from its database (the API lists at most 1000).
        store = Store(tb.db)
        try:
            all_commands = store.commands(None, None, 1_000_000)
        finally:
            store.close()
        res.seconds = time.monotonic() - t0
        _judge(res, devs, all_commands)
    for d in devs:
        res.device_failures += len(d.errors)
        if d.errors:
            say(f"device {d.name}: {len(d.errors)} failed runs, first: {d.errors[0]}")
    return res


def _judge(res: Result, devs: list[Device], all_commands: list[dict]) -> None:
    by_addr = {d.address: d for d in devs}
    states = {c["id"]: c["state"] for c in all_commands}
    stored = {c["id"]: (c["device"], c["seq"]) for c in all_commands}
    kept: dict[int, Counter] = {}
    outcome: dict[tuple[int, int], str] = {}
    for d in devs:
        c = kept[d.address] = Counter()
        for e in d.events:
            if e.get("ev") == "kept" and e.get("cls") == frame.CLASS_COMMAND and e.get("src") == CLOUD:
                c[e["seq"]] += 1
            elif e.get("ev") == "acked" and e.get("to") == CLOUD:
                outcome[(d.address, e["seq"])] = STATUS_NAMES.get(e["status"], "?")
            elif e.get("ev") == "duplicate" and e.get("src") == CLOUD:
                res.device_duplicates += 1
            elif e.get("ev") == "cycle":
                res.wakes += 1
        # The device's flash agrees with what it printed: one inbox record per command it
        # took in (the last 64 are kept), and its applied counter counts each once.
        journal = json.loads((d.fs / "journal.json").read_text())
        inbox = Counter((r[1]) for r in journal.get("in", []) if r[0] == CLOUD)
        if any(n > 1 for n in inbox.values()) or any(kept[d.address][s] != 1 for s in inbox):
            res.journal_mismatch += 1
        applied_events = sum(1 for e in d.events if e.get("ev") == "applied" and "svc" in e)
        if journal.get("app", {}).get("applied", 0) != applied_events:
            res.journal_mismatch += 1
    accepted_seqs = set()
    for a in res.accepted:
        accepted_seqs.add((a.device, a.seq))
        n = kept[a.device][a.seq]
        state = states.get(a.id, "")
        if stored.get(a.id) != (a.device, a.seq):  # the 202 named what the database holds
            res.state_mismatch += 1
        if n == 0 or state not in FINAL_STATES:
            res.lost.append(a.id)
        if n > 1:
            res.twice.append(a.id)
        if state in FINAL_STATES:
            res.acknowledged += 1
        said = outcome.get((a.device, a.seq))
        if n:
            if said in ("applied", "adapted"):
                res.applied += 1
            else:
                res.refused_by_device += 1
        if state in FINAL_STATES and said != state:
            res.state_mismatch += 1
    # Commands stored but never answered (killed between the commit and the 202): the
    # client does not count them as sent, but the device must not apply them twice either.
    for c in all_commands:
        a = c["device"]
        if a not in by_addr:
            continue
        if (a, c["seq"]) in accepted_seqs:
            res.resent += c["sends"] > 1
            continue
        res.stored_unanswered += 1
        if kept[a][c["seq"]] > 1:
            res.orphans_twice += 1


def figures(quick: bool = False) -> dict[str, float]:
    """The bench's figures: 50 kills (10 when quick) while commands flow."""
    tmp = Path(tempfile.mkdtemp(prefix="spot-durable-"))
    try:
        if quick:
            res = run(tmp, kills=10, uptime_s=(0.2, 1.2), sleepy_wake_ms=2000, settle_s=45)
        else:
            res = run(tmp, kills=50, sleepy_wake_ms=5000, settle_s=90)
        return res.figures()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main(quick: bool = False) -> int:
    tmp = Path(tempfile.mkdtemp(prefix="spot-durable-"))
    try:
        res = run(tmp, kills=10 if quick else 50, sleepy_wake_ms=2000 if quick else 5000, log=print)
        figs = res.figures()
        for k, v in sorted(figs.items()):
            print(f"{k:45s} {v:g}")
        if res.lost or res.twice:
            print("lost:", res.lost[:20], "twice:", res.twice[:20])
        return 1 if res.lost or res.twice or res.orphans_twice else 0
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    import sys

    raise SystemExit(main("--quick" in sys.argv))
