"""Fleet emulation: many devices' firmware in one CPython process, one broker.

Each device is the firmware's own wake (firmware/device.py, node.py and its role)
with its own provisioned keys, journal and counter files, and its own virtual
board whose peripheral models follow the physics (boards/virtual). The roles
alternate thermostat, smart plug, heat pump. A round wakes every device once,
one after the other (umqtt.simple keeps its socket factory in a module global,
so one process wakes one device at a time, as a board would); a price forecast
waits retained under the site's group key and every tenth device has a
command queued while it slept.

The cloud side is either the in-process controller (host_tools/cloud/controller.py)
or, with cloud=True, the cloud service itself (`spot cloud serve`, its own process,
SQLite): it answers the devices' time requests and stores their reports, and the
forecast and the commands go in through its API, as an operator's would.

    spot fleet --devices 200         # one round, with a table of what happened
    spot fleet --devices 1000 --cloud
"""
from __future__ import annotations

import argparse
import random
import tempfile
import time
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from host_tools.sim import fleet_host, role_sim  # noqa: F401 (role_sim: the virtual board's path)

if TYPE_CHECKING:
    from host_tools.cloud.testbed import CloudTestbed

ROLES = ("thermostat", "smart_plug", "heat_pump")
WINDOW_S = 60.0  # every device of the fleet must complete its wake within this


@dataclass
class Round:
    devices: int
    seconds: float
    ok: int
    commands_applied: int
    received: int
    bytes: int

    @property
    def complete(self) -> bool:
        return self.ok == self.devices and self.seconds <= WINDOW_S


class Fleet:
    """n provisioned devices (files under root) with their boards, and a controller:
    the in-process one, or the cloud service of `cloud` (a CloudTestbed on the same
    broker, started here once the devices are in its registry)."""

    def __init__(self, n: int, root: Path, port: int, site: str = "fleet",
                 cloud: CloudTestbed | None = None) -> None:
        from host_tools.cloud.controller import Controller
        from host_tools.cloud.registry import Registry

        import board as vboard

        self.fw = fleet_host.firmware()
        self.cloud = cloud
        self.reg = cloud.reg if cloud is not None else Registry(root / "registry.json")
        self.site = site
        self.addresses = [self.reg.provision(site, 0x20000 + i) for i in range(n)]
        self.reg.save()
        self.cfgs: list[dict[str, Any]] = []
        for i, a in enumerate(self.addresses):
            fs = root / f"{a:08x}"
            self.reg.write_device_files(a, fs)
            role = ROLES[i % len(ROLES)]
            cfg = fleet_host.device_config(fs, port)
            cfg.update(role=role, board_obj=vboard.make(role, seed=i + 1, clock="wall"))
            self.cfgs.append(cfg)
        self.ctl: Any = None
        if cloud is not None:
            cloud.start()  # imports the registry just written
        else:
            self.ctl = Controller(self.reg, site, f"127.0.0.1:{port}")
            self.ctl.connect()

    def close(self) -> None:
        if self.ctl is not None:
            self.ctl.close()

    def signals(self, every: int = 10) -> int:
        """A retained price forecast for the site, and a command to every tenth device."""
        from spot import builders, messages
        from spot.objects import Analog

        now = int(time.time()) // 3600 * 3600
        prices = role_sim.day_prices(random.Random(1))
        if self.cloud is not None:
            return self._signals_through_the_api(now, prices, every)
        group = self.reg.site_group(self.site)
        self.ctl.send_signal(group, lambda seq, key: builders.price_forecast(
            group, self.ctl.address, seq, now, 3600, prices, 0, key=key))
        sent = 0
        for i in range(0, len(self.addresses), every):
            a = self.addresses[i]
            self.ctl.send_command(a, lambda seq, key, a=a: builders.demand(
                a, self.ctl.address, seq, messages.DR_REDUCE,
                Analog(20, 3), None, 7200, key=key), "reduce 20 % for 2 h")
            sent += 1
        time.sleep(0.2)  # queued at the broker before the devices wake
        return sent

    def _signals_through_the_api(self, now: int, prices: list[int], every: int) -> int:
        """The same forecast and commands, sent as an operator would: through the service's
        API, which checks each against the device's capability record (known from the
        first round), seals, stores and publishes it."""
        tb = self.cloud
        assert tb is not None
        tb.api("POST", f"/api/sites/{self.site}/prices",
               {"start": now, "interval_s": 3600, "prices": [float(p) for p in prices]})
        ids = [tb.api("POST", f"/api/devices/{a:08x}/commands",
                      {"kind": "reduce", "percent": 20, "duration_s": 7200})["id"]
               for a in self.addresses[::every]]
        for cid in ids:  # queued at the broker before the devices wake
            tb.wait_command(cid, ("published",))
        return len(ids)

    def round(self) -> Round:
        t0 = time.monotonic()
        ok = applied = received = nbytes = 0
        for cfg in self.cfgs:
            node, res = self.fw.wake_once(cfg)
            ok += bool(res.ok)
            received += res.received
            nbytes += res.bytes_in + res.bytes_out
            applied += node.applied
        return Round(len(self.cfgs), round(time.monotonic() - t0, 2), ok, applied, received, nbytes)


def run(n: int, first: bool = True, cloud: bool = False) -> Round:
    """Provision n devices, make their sessions (a first round), queue signals, time a round.
    With cloud, the cloud service is the devices' cloud (it needs the first round: a
    command is checked against the capability record the device reports then)."""
    from host_tools.cloud.broker import Broker

    with tempfile.TemporaryDirectory(prefix="spot-fleet-") as tmp, Broker() as broker, ExitStack() as stack:
        tb = None
        if cloud:
            from host_tools.cloud.testbed import CloudTestbed

            tb = stack.enter_context(CloudTestbed(Path(tmp) / "cloud", broker=broker))
            first = True
        fleet = Fleet(n, Path(tmp), broker.port, cloud=tb)
        try:
            if first:
                fleet.round()  # sessions at the broker, first contact
            fleet.signals()
            return fleet.round()
        finally:
            fleet.close()


def figures(sizes: tuple[int, ...] = (250, 500, 1000), cloud: bool = False) -> dict[str, float]:
    """The largest fleet (of `sizes`, tried in turn) whose every device completes a
    wake within the 60 s window, the time its round took and the window it used."""
    best = None
    for n in sizes:
        r = run(n, cloud=cloud)
        if not r.complete:
            break
        best = r
    if best is None:
        return {"fleet_devices": 0, "fleet_cycle_seconds": 0.0}
    return {"fleet_devices": best.devices, "fleet_cycle_seconds": best.seconds,
            "fleet_window_used_pct": round(100 * best.seconds / WINDOW_S, 1),
            "fleet_wake_ms_per_device": round(1000 * best.seconds / best.devices, 1)}


def add_parser(sub: Any) -> None:
    p = sub.add_parser("fleet", help="emulate a fleet of devices (the firmware under CPython)",
                       description="Provision DEVICES devices in a throw-away registry, run each "
                                   "one's firmware with its role on a virtual board against a "
                                   "private Mosquitto, and time one wake round.")
    p.add_argument("--devices", type=int, default=200, help="how many (default 200)")
    p.add_argument("--cloud", action="store_true",
                   help="the cloud service (spot cloud serve, SQLite) answers the devices, and the "
                        "forecast and commands go through its API (default: an in-process controller)")
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    r = run(args.devices, cloud=args.cloud)
    t = Table(title=f"one wake round of {r.devices} devices"
                    + (" through the cloud service" if args.cloud else ""))
    for col in ("devices", "seconds", "woke well", "commands applied", "frames received", "bytes"):
        t.add_column(col, justify="right")
    t.add_row(str(r.devices), f"{r.seconds:.2f}", str(r.ok), str(r.commands_applied),
              str(r.received), f"{r.bytes:,}")
    Console().print(t)
    return 0 if r.complete else 1
