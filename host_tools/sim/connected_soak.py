"""The connected soak: connected devices under power cuts anywhere, broker restarts
(one a SIGKILL) and the cloud service killed; nothing lost, nothing applied twice.

Like the sleepy soak (soak.py), the devices are the real firmware (device.py,
connected.py, node.py, the smart plug's role on a virtual board) running in this
process, each on its own thread; the cloud is the service as its own process
(CloudTestbed) in front of a private Mosquitto, and commands go through its API
at random moments. A device's life ends in a power cut at a random fault point
(any socket operation, or inside a journal write: the file left half written)
or, now and then, a polite stop; it boots again from its files after a short
dark spell. During the run the broker is restarted (SIGTERM), killed (SIGKILL)
and the cloud service killed (SIGKILL) and started again. At the end, with the
faults off, every command the API accepted must reach a final state and have
been applied exactly once by its device.
"""
from __future__ import annotations

import random
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from host_tools.sim import fleet_host, role_sim  # noqa: F401 (role_sim: the virtual board's path)
from host_tools.sim.soak import PowerCut

SITE = "csoak"
FINAL = ("applied", "adapted", "refused", "expired", "unsupported")


@dataclass
class ConnectedSoakResult:
    devices: int = 0
    lives: int = 0
    power_cuts: int = 0
    cuts_in_writes: int = 0
    broker_restarts: int = 0
    cloud_kills: int = 0
    sent: int = 0
    applied: int = 0
    lost: int = 0
    duplicated: int = 0
    unfinished: int = 0
    seconds: float = 0.0

    def figures(self) -> dict[str, float]:
        return {"connected_soak_devices": self.devices, "connected_soak_lives": self.lives,
                "connected_soak_power_cuts": self.power_cuts,
                "connected_soak_power_cuts_in_journal_writes": self.cuts_in_writes,
                "connected_soak_broker_restarts": self.broker_restarts,
                "connected_soak_cloud_kills": self.cloud_kills,
                "connected_soak_commands_sent": self.sent,
                "connected_soak_commands_applied": self.applied,
                "connected_soak_unfinished": self.unfinished,
                "connected_soak_lost": self.lost, "connected_soak_duplicated": self.duplicated,
                "connected_soak_seconds": round(self.seconds, 1)}

    def summary(self) -> str:
        return (f"{self.sent} commands to {self.devices} devices over {self.lives} lives, "
                f"{self.power_cuts} power cuts ({self.cuts_in_writes} in journal writes), "
                f"{self.broker_restarts} broker restarts, {self.cloud_kills} cloud kills: "
                f"{self.applied} applied, {self.lost} lost, {self.duplicated} twice, "
                f"{self.unfinished} unfinished in {self.seconds:.0f} s")


class _Faults:
    """Per device thread: counts fault points and cuts the power at the chosen one."""

    def __init__(self) -> None:
        self.local = threading.local()
        self.enabled = True

    def arm(self, n: int) -> None:
        self.local.countdown, self.local.link, self.local.in_write = n, None, False

    def __call__(self, where: str, link: Any = None) -> None:
        loc = self.local
        if not hasattr(loc, "countdown"):  # not a device thread (the storage hook is global)
            return
        if link is not None:
            loc.link = link
        if loc.countdown <= 0 or not self.enabled:
            return
        loc.countdown -= 1
        if not loc.countdown:
            loc.in_write = where != "net"
            raise PowerCut(where)

    def drop_connection(self) -> None:
        link = getattr(self.local, "link", None)
        if link is not None and link.raw is not None:
            try:
                link.raw.close()
            except OSError:
                pass


def run(seconds: float = 60.0, devices: int = 3, seed: int = 1, cut_rate: float = 0.7) -> ConnectedSoakResult:
    from host_tools.board import build
    from host_tools.cloud.testbed import ApiError, CloudTestbed
    from spot import messages, storage
    from spot.journal import Journal

    build.build_arch("x64")
    fw = fleet_host.firmware()
    import board as vboard  # the virtual board (role_sim put it on the path)
    import connected

    rng = random.Random(seed)
    res = ConnectedSoakResult(devices=devices)
    t0 = time.monotonic()
    tmp = Path(tempfile.mkdtemp(prefix="spot-csoak-"))
    faults = _Faults()
    lock = threading.Lock()
    applied: dict[tuple[int, int], int] = {}
    done = threading.Event()
    try:
        with CloudTestbed(tmp) as tb:
            addrs = [0x6100 + i for i in range(devices)]
            cfgs = {}
            for i, a in enumerate(addrs):
                fs = tb.provision(SITE, a)
                cfg = fleet_host.device_config(fs, tb.broker.port, budget_ms=1500)
                cfg.update(role="smart_plug", power="connected", control_ms=100, reconnect_ms=100,
                           board_obj=vboard.make("smart_plug", seed=i + 1, clock="wall"))
                cfgs[a] = cfg
            tb.start()

            def device(a: int) -> None:
                drng = random.Random(seed * 1000 + a)
                boot = "power_on"

                def setup(node: Any) -> None:
                    def hook(src: int, seq: int) -> None:
                        with lock:
                            applied[(a, seq)] = applied.get((a, seq), 0) + 1
                    node.on_applied = hook

                while not done.is_set():
                    cut = drng.random() < cut_rate and faults.enabled
                    faults.arm(drng.randint(1, 120) if cut else 0)
                    end = time.monotonic() + drng.uniform(0.5, 4.0)
                    with lock:
                        res.lives += 1
                    try:
                        connected.run(fw, cfgs[a], boot=boot, fault=faults, setup=setup,
                                      should_stop=lambda: done.is_set() or time.monotonic() > end)
                    except PowerCut:
                        with lock:
                            res.power_cuts += 1
                            res.cuts_in_writes += faults.local.in_write
                        faults.drop_connection()
                        time.sleep(drng.uniform(0, 0.3))  # dark
                    boot = "power_on"

            storage.fault = faults
            threads = [threading.Thread(target=device, args=(a,), daemon=True) for a in addrs]
            for t in threads:
                t.start()
            sent: dict[int, tuple[int, int]] = {}  # command id -> (device, seq)
            events = {0.25: "restart", 0.5: "sigkill", 0.7: "cloud"}
            start = time.monotonic()
            while time.monotonic() - start < seconds:
                frac = (time.monotonic() - start) / seconds
                for at in sorted(events):
                    if frac >= at:
                        what = events.pop(at)
                        if what == "cloud":
                            tb.kill()
                            res.cloud_kills += 1
                            tb.start()
                        else:
                            tb.broker.stop(kill=what == "sigkill")
                            tb.broker.start()
                            res.broker_restarts += 1
                        break
                a = rng.choice(addrs)
                try:
                    c = tb.api("POST", f"/api/devices/{a:08x}/commands",
                               {"kind": "relay", "on": rng.random() < 0.5})
                    sent[c["id"]] = (a, c["seq"])
                except (ApiError, OSError):
                    pass  # no capability record yet, or the cloud is down: not sent
                time.sleep(rng.uniform(0.02, 0.15))
            # The faults end; the devices keep running until every command is final.
            faults.enabled = False
            deadline = time.monotonic() + 90
            open_ = set(sent)
            while open_ and time.monotonic() < deadline:
                for cid in list(open_):
                    if tb.api("GET", f"/api/commands/{cid}")["state"] in FINAL:
                        open_.discard(cid)
                time.sleep(0.2)
            done.set()
            for t in threads:
                t.join(30)
            storage.fault = None
            # A cut between a commit and the hook hides an application from the hook,
            # not from the journal: count what the journals recorded too.
            for a in addrs:
                for _src, seq, status, _reason in Journal(cfgs[a]["dir"] + "/journal.json").inbox:
                    if status in (messages.ACK_APPLIED, messages.ACK_ADAPTED):
                        applied.setdefault((a, seq), 1)
            want = set(sent.values())
            res.sent = len(want)
            res.applied = len(want & set(applied))
            res.lost = len(want - set(applied))
            res.duplicated = sum(n - 1 for n in applied.values() if n > 1)
            res.unfinished = len(open_)
    finally:
        done.set()
        storage.fault = None
        shutil.rmtree(tmp, ignore_errors=True)
    res.seconds = time.monotonic() - t0
    return res


def main(seconds: float = 60.0) -> int:
    r = run(seconds)
    print(r.summary())
    for k, v in r.figures().items():
        print(f"{k:45} {v}")
    return 0 if r.lost == 0 and r.duplicated == 0 and r.unfinished == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
