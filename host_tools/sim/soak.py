"""The soak: many wake cycles with power cuts and broker crashes; nothing lost, nothing twice.

Devices run the real firmware under CPython (fleet_host) against a private
Mosquitto; a controller sends commands at random moments. Power cuts hit at a
random step of a wake: any socket operation, or inside a journal write (the
file left half written). The broker is restarted while devices sleep and while
one is awake, once with SIGKILL. At the end every command sent must have been
applied exactly once; the controller's ACK count is printed beside it.
"""
from __future__ import annotations

import random
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from host_tools.sim import fleet_host
from host_tools.cloud.broker import Broker
from host_tools.cloud.controller import Controller
from host_tools.cloud.registry import Registry

SITE = "soak"


class PowerCut(BaseException):
    """Not an Exception: no handler in the firmware may catch it, as no code runs after a cut."""


@dataclass
class SoakResult:
    cycles: int = 0
    failed_cycles: int = 0
    power_cuts: int = 0
    cuts_in_writes: int = 0
    broker_restarts: int = 0
    sent: int = 0
    applied: int = 0
    acknowledged: int = 0
    lost: int = 0
    duplicated: int = 0
    resends: int = 0
    seconds: float = 0.0

    def figures(self) -> dict[str, float]:
        return {"soak_cycles": self.cycles, "soak_failed_cycles": self.failed_cycles,
                "soak_commands_sent": self.sent, "soak_commands_applied": self.applied,
                "soak_commands_acknowledged": self.acknowledged, "soak_power_cuts": self.power_cuts,
                "soak_power_cuts_in_journal_writes": self.cuts_in_writes,
                "soak_broker_restarts": self.broker_restarts, "soak_resends": self.resends,
                "soak_lost": self.lost, "soak_duplicated": self.duplicated,
                "soak_seconds": round(self.seconds, 1)}


class _Faults:
    """Counts fault points (socket operations, journal write steps) and acts at the chosen one."""

    def __init__(self) -> None:
        self.countdown = 0
        self.action: Callable[[], None] | None = None
        self.link: Any = None
        self.in_write = False

    def arm(self, n: int, action: Callable[[], None] | None = None) -> None:
        self.countdown, self.action, self.link, self.in_write = n, action, None, False

    def __call__(self, where: str, link: Any = None) -> None:
        # The devices wake on this thread; the controller's network thread writes
        # files too (its counter), and power cuts are the devices' alone.
        if threading.current_thread() is not threading.main_thread():
            return
        if link is not None:
            self.link = link
        if self.countdown <= 0:
            return
        self.countdown -= 1
        if self.countdown:
            return
        if self.action is not None:  # not a cut: something happens to the world
            action, self.action = self.action, None
            action()
            return
        self.in_write = where != "net"
        raise PowerCut(where)

    def drop_connection(self) -> None:
        """The cut device's TCP connection ends without a DISCONNECT, as power loss does."""
        if self.link is not None and self.link.raw is not None:
            try:
                self.link.raw.close()
            except OSError:
                pass


def run(cycles: int = 1000, devices: int = 3, seed: int = 1, cut_rate: float = 0.25,
        command_rate: float = 0.35) -> SoakResult:
    rng = random.Random(seed)
    res = SoakResult()
    t0 = time.monotonic()
    fw = fleet_host.firmware()
    from spot import builders, messages, storage
    from spot.journal import Journal

    tmp = Path(tempfile.mkdtemp(prefix="spot-soak-"))
    faults = _Faults()
    applied: dict[tuple[int, int], int] = {}
    sent: set[tuple[int, int]] = set()
    try:
        reg = Registry(tmp / "registry" / "registry.json")
        addrs = [reg.provision(SITE, 0x2000 + i) for i in range(devices)]
        reg.save()
        cfgs = {}
        for a in addrs:
            reg.write_device_files(a, tmp / f"dev-{a:08x}")
        with Broker() as broker:
            for a in addrs:
                cfgs[a] = fleet_host.device_config(tmp / f"dev-{a:08x}", broker.port, budget_ms=1500)
            ctl = Controller(reg, SITE, f"127.0.0.1:{broker.port}")
            ctl.connect()

            def restart(kill: bool) -> None:
                broker.stop(kill=kill)
                broker.start()
                res.broker_restarts += 1
                ctl.connected.wait(5)

            def count(device: int) -> Callable[[Any], None]:
                def setup(node: Any) -> None:
                    node.on_applied = lambda src, seq: applied.__setitem__(
                        (device, seq), applied.get((device, seq), 0) + 1)
                return setup

            def wake(a: int, cut: bool = False, restart_awake: bool = False) -> None:
                if restart_awake:
                    faults.arm(rng.randint(3, 10), lambda: restart(kill=False))
                else:
                    faults.arm(rng.randint(1, 40) if cut else 0)
                storage.fault = faults
                try:
                    _node, r = fw.wake_once(cfgs[a], faults, count(a))
                    res.failed_cycles += 0 if r.ok else 1
                except PowerCut:
                    res.power_cuts += 1
                    res.cuts_in_writes += faults.in_write
                    faults.drop_connection()
                finally:
                    storage.fault = None
                    res.cycles += 1

            for a in addrs:  # first wakes: sessions and subscriptions
                wake(a)
            restarts = {cycles // 4: "asleep", cycles // 2: "sigkill", (3 * cycles) // 4: "awake"}
            for i in range(cycles):
                kind = restarts.get(i)
                if kind == "awake":
                    wake(rng.choice(addrs), restart_awake=True)
                elif kind:
                    restart(kill=kind == "sigkill")
                if rng.random() < command_rate:
                    dev = rng.choice(addrs)
                    p = ctl.send_command(dev, lambda seq, key, d=dev: builders.reduce_power(
                        d, ctl.address, seq, rng.randint(1, 90), 0, 60, key=key), "reduce")
                    sent.add((dev, p.seq))
                if i % 50 == 49:  # commands whose ACK is overdue go out again
                    res.resends += ctl.resend_pending(older_than=0.5)
                wake(rng.choice(addrs), cut=rng.random() < cut_rate)
            for _ in range(100):  # drain without faults until every command is acknowledged
                if not ctl.waiting():
                    break
                res.resends += ctl.resend_pending(older_than=0.2)
                for a in addrs:
                    wake(a)
                time.sleep(0.02)
            # A cut between a commit and the hook hides an application from the
            # hook, not from the journal: count what the journals recorded too.
            for a in addrs:
                for _src, seq, status, _reason in Journal(cfgs[a]["dir"] + "/journal.json").inbox:
                    if status == messages.ACK_APPLIED:
                        applied.setdefault((a, seq), 1)
            ctl.close()
            res.sent = len(sent)
            res.applied = len(sent & set(applied))
            res.lost = len(sent - set(applied))
            res.duplicated = sum(n - 1 for n in applied.values() if n > 1)
            res.acknowledged = len(sent & {(u.src, u.body.get(messages.K_ACK_SEQ)) for u in ctl.stats.acks})
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    res.seconds = time.monotonic() - t0
    return res


def main(cycles: int = 1000) -> int:
    from rich.console import Console
    from rich.table import Table

    r = run(cycles)
    t = Table(title=f"soak: {r.cycles} wake cycles in {r.seconds:.1f} s")
    t.add_column("figure")
    t.add_column("value", justify="right")
    for k, v in r.figures().items():
        t.add_row(k, str(v))
    Console().print(t)
    return 0 if r.lost == 0 and r.duplicated == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
