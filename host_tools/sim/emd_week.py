"""A simulated week of site requests: the energy manager against the naive split.

The devices are the real role firmware on virtual boards with the models of the
role week (host_tools/sim/role_sim.py builds them): a thermostat is a 2 kW heater
in a 1R1C room following the user's weekly program, a smart plug has a cycling
heater behind it, a heat pump heats from an 800 l buffer store. They are mains
powered and connected: frames reach them at the next minute, and they report
their state every minute (telemetry_s 60, set by a command at the start, with any
settings the site gives them, such as a plug's longest shed).

Two weeks are run, and the figures give both:
  SINGLE  one site, "house": a thermostat, a plug with a 1.5 kW heater (the plug's
          default longest shed, 1 h), a heat pump. The week this module began with.
  MULTI   four sites, the house and three whose devices differ in what they can shed
          and for how long (the bench's floors are judged on this week):
    hp_home  a heat pump on its store, a 2 kW water heater on a plug that may be off
             45 min at most, a thermostat; reductions 1.5-3 kW, caps 3 or 3.5 kW;
    office   four panel heaters on plugs (1.5, 1.5, 1, 1 kW) that may each be off
             30 min at most, a thermostat; reductions 1-2 kW, caps 2.5-3.5 kW;
    flat     two rooms with thermostats (one smaller, faster to cool) and two panel
             heaters on plugs (1.5 and 1 kW, 30 min at most); reductions 1.5-2.5 kW,
             caps 2-3 kW.
  Where the naive split loses: a request longer than what a device may shed (a plug's
  30 or 45 min, a heat pump's 2 h block) is one command to it for the whole request, so
  every device adapts to its own longest shed at the same moment and all come back
  together, with the request still running; the manager staggers and re-asks devices
  after their rest (rotation). The gap is widest where many devices may shed only
  briefly (office), narrowest where one heat pump and one plug carry most of it
  (house); host_tools/bench/emd_figures.py prints each site's figures.

Commands go the cloud's way: each planner's order is checked and sealed by
host_tools/cloud/command_kinds.py, and every frame a device sends (ACKs, state
reports, capability records) is verified with the cloud's keys and named by
host_tools/cloud/uplink.py before a planner sees it.

The grid (seeded, requests_for) asks each site, every day, one request starting
in each of the windows 06:00-09:00, 11:00-14:00 (skipped with probability 0.4) and
16:00-19:00 (on a quarter hour), announced two hours ahead: with probability 0.55
"reduce the site by W for 1, 1.5 or 2 h" (the house: 1.5-2.5 kW in 100 W steps),
otherwise "keep the site under W for 2, 3 or 4 h" (the house: 3, 3.5 or 4.2 kW);
each site its own seeded draws, its own watts (SiteSpec). Requests are not kept
apart: a 4 h cap may still run when the next request starts (the manager adds
them; the naive split sends each its own percentage). For scale: the house draws
about 3.5 kW on average (thermostat ~1.3, plug ~0.9, heat pump ~1.3) and 6 kW at most;
seed 1 gives 20 requests in the week (15 reductions, 5 caps), most of the asked
W x min in the reductions (a cap of 3-4.2 kW asks 0.2-1.1 kW on average).

Each week runs three times with the same seed: with no requests (the
baseline), with the energy manager, with the naive split (every device the same
"reduce P %"). Delivery is judged per 15-minute interval (as imbalance
settlement does) on the site's mean power against the baseline's:
  reduce: asked min(watts, baseline), delivered clamp(baseline - actual, 0, asked);
  cap:    asked max(0, baseline - cap), delivered clamp(baseline - actual, 0, asked);
          an interval the baseline kept under the cap but the run did not counts
          its excess as asked and not delivered.
`met_pct` = delivered / asked over all intervals (W x minutes). The models judge
the devices' limits, as in the role week.
"""
from __future__ import annotations

import random
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from host_tools.sim import role_sim
from host_tools.sim.role_sim import DAY, MIN, T0

ROLES = ("thermostat", "smart_plug", "heat_pump")
PARAMS = {"thermostat": dict(role_sim.ROOM), "heat_pump": dict(role_sim.STORE),
          "smart_plug": {"load": "heater"}}


@dataclass(frozen=True)
class DeviceSpec:
    """One device of a site: its name there (the planner's id for it), its role, its
    model's parameters, and settings the cloud sends it first (with telemetry_s 60)."""
    name: str
    role: str
    params: dict = field(default_factory=dict)
    settings: dict = field(default_factory=dict)


@dataclass(frozen=True)
class SiteSpec:
    """A site: its devices and what the grid asks of it (see requests_for)."""
    name: str
    devices: tuple[DeviceSpec, ...]
    reduce_w: tuple[int, int] = (1500, 2500)  # a reduction's watts, drawn in 100 W steps
    caps_w: tuple[int, ...] = (3000, 3500, 4200)  # a cap's watts, one of


# The single-site week: a thermostat, a plug with a cycling heater, a heat pump on its store.
HOUSE = SiteSpec("house", tuple(DeviceSpec(r, r, dict(PARAMS[r])) for r in ROLES))
SINGLE = (HOUSE,)


def _plug(name: str, watts: int, max_shed_s: int) -> DeviceSpec:
    """A plug with a cycling heater of `watts` that its owner lets be off `max_shed_s` at most."""
    return DeviceSpec(name, "smart_plug", {"load": "heater", "power_w": watts}, {"max_shed_s": max_shed_s})


_ROOM = dict(role_sim.ROOM)
# The multi-site week (see the module doc): the house again, and three sites whose devices
# differ in what they can shed and for how long.
HP_HOME = SiteSpec("hp_home", (
    DeviceSpec("heat_pump", "heat_pump", dict(role_sim.STORE)),
    _plug("boiler", 2000, 2700),  # an electric water heater: 45 min off at most
    DeviceSpec("room", "thermostat", dict(_ROOM))), reduce_w=(1500, 3000), caps_w=(3000, 3500))
OFFICE = SiteSpec("office", (
    _plug("heater1", 1500, 1800), _plug("heater2", 1500, 1800),  # panel heaters: 30 min off at most
    _plug("heater3", 1000, 1800), _plug("heater4", 1000, 1800),
    DeviceSpec("room", "thermostat", dict(_ROOM))), reduce_w=(1000, 2000), caps_w=(2500, 3000, 3500))
FLAT = SiteSpec("flat", (
    DeviceSpec("room1", "thermostat", dict(_ROOM)),
    DeviceSpec("room2", "thermostat", dict(_ROOM, c=2e6, ua=60.0)),  # a smaller room
    _plug("panel1", 1500, 1800), _plug("panel2", 1000, 1800)), reduce_w=(1500, 2500), caps_w=(2000, 2500, 3000))
MULTI = (HOUSE, HP_HOME, OFFICE, FLAT)
STEP_MS = 30_000  # thermostat and heat pump; the plug steps every second (its meter's sample)
INTERVAL_MIN = 15
NOTICE_S = 2 * 3600


@dataclass
class Run:
    planner: str
    power_w: list[list[float]] = field(default_factory=list)  # per site, per minute
    device_w: list[dict[str, list[float]]] = field(default_factory=list)  # per site, role, minute
    violations: dict[str, int] = field(default_factory=dict)
    acks: dict[str, int] = field(default_factory=dict)
    orders: int = 0
    comfort_minutes_below: int = 0  # the room under the user's program - 1 C
    refused_by_cloud: int = 0


def requests_for(site: int, seed: int, days: int, spec: SiteSpec = HOUSE) -> list[Any]:
    """The grid's requests for one site: 2-3 a day (see the module doc)."""
    from host_tools.cloud.energy_manager import SiteRequest

    rng = random.Random(seed * 1009 + site * 31)
    out = []
    for d in range(days):
        day0 = T0 // 1000 + d * 86400
        for n, (lo, hi) in enumerate(((6, 9), (11, 14), (16, 19))):
            if n == 1 and rng.random() < 0.4:
                continue
            start = day0 + rng.randrange(lo * 3600, hi * 3600, 900)
            if rng.random() < 0.55:
                w = rng.randrange(spec.reduce_w[0], spec.reduce_w[1] + 1, 100)
                dur = rng.choice([3600, 5400, 7200])
                out.append(SiteRequest(f"s{site}d{d}r{n}", "reduce", w, start, start + dur))
            else:
                w = rng.choice(list(spec.caps_w))
                dur = rng.choice([7200, 10800, 14400])
                out.append(SiteRequest(f"s{site}d{d}c{n}", "cap", w, start, start + dur))
    return out


class _Link:
    """The cloud's side of one device: commands sealed its way, uplinks verified and named."""

    def __init__(self, dev: Any) -> None:
        from spot import frame, messages
        from spot.filter_table import FilterTable

        self.dev = dev
        self.ring = dev.reg.keyring_for(dev.reg.cloud)
        self.table = FilterTable(dev.reg.cloud)
        self.table.set_service(messages.SVC_CORE, (frame.CLASS_ACK, frame.CLASS_REPORT,
                                                   frame.CLASS_TIMESYNC))
        self.table.set_service(messages.SVC_METER, (frame.CLASS_REPORT,))
        self.table.set_service(messages.SVC_DEVICE, (frame.CLASS_REPORT,))
        self.queue: list[bytes] = []
        self.open: dict[int, dict] = {}  # frame seq -> the command it carried
        self.caps: dict | None = None
        self.state: dict = {}
        self.seen = 0

    def send(self, command: dict, now_s: int) -> bool:
        """Check and seal a command the cloud's way; False if the cloud refuses it."""
        from pydantic import TypeAdapter, ValidationError

        from host_tools.cloud import command_kinds as ck

        try:
            cmd = TypeAdapter(ck.Command).validate_python(command)
            ck.check(cmd, self.caps.get("role") if self.caps else None, self.caps)
        except (ValidationError, ck.Refused):
            return False
        seal = ck.sealer(cmd, now_s)
        d = self.dev
        self.queue.append(d.frame(lambda seq, key: seal(d.address, d.reg.cloud, seq, key)))
        self.open[d.seq] = command
        return True

    def uplinks(self) -> list[tuple[str, Any]]:
        """What the device sent since the last call, verified and named."""
        from host_tools.cloud import uplink
        from spot import messages, secure

        out = []
        sent = self.dev.sent[self.seen:]
        self.seen = len(self.dev.sent)
        for raw in sent:
            f = secure.open_frame(raw, self.table, self.ring)
            what, value = uplink.classify(f, messages.read_payload(f))
            if what == "ack":
                seq, status, reason = value
                out.append(("ack", (self.open.pop(seq, None), status, reason)))
            elif what == "capabilities":
                self.caps = value
                out.append((what, value))
            elif what == "state":
                self.state = value
                out.append((what, value))
        return out


def _make_planner(name: str) -> Any:
    from host_tools.cloud.energy_manager import EnergyManager, NaiveSplit

    if name == "manager":
        return EnergyManager()
    if name == "naive":
        return NaiveSplit()
    return None


def _simulate_site(site: int, seed: int, days: int, planner_name: str, run: Run,
                   planner: Any = None, spec: SiteSpec = HOUSE) -> list[float]:
    from spot import builders

    dseed = seed * 100 + site * 10
    reqs = sorted(requests_for(site, seed, days, spec), key=lambda r: r.start_s)
    planner = planner if planner is not None else _make_planner(planner_name)
    power: list[float] = []
    per: dict[str, list[float]] = {d.name: [] for d in spec.devices}
    run.device_w.append(per)
    # The devices' flash (journal commits every minute) in RAM where there is some.
    ram = "/dev/shm" if Path("/dev/shm").is_dir() else None
    with tempfile.TemporaryDirectory(prefix="spot-emd-", dir=ram) as tmp:
        devs = {d.name: role_sim._Device(d.role, dseed + i, Path(tmp) / d.name, dict(d.params))
                for i, d in enumerate(spec.devices)}
        links = {n: _Link(d) for n, d in devs.items()}
        rooms = [n for n, d in devs.items() if d.role_name == "thermostat"]
        plugs = [n for n, d in devs.items() if d.role_name == "smart_plug"]
        slow = [n for n in devs if n not in plugs]  # thermostats and heat pumps: 30 s steps
        offs = [d * 86400 + o for d in range(7) for o, _ in role_sim._DAY_PROGRAM]
        vals = [v for _ in range(7) for _, v in role_sim._DAY_PROGRAM]
        for n in rooms:
            th = devs[n]
            links[n].queue.append(th.frame(lambda seq, key, th=th: builders.weekly_program(
                th.address, th.reg.cloud, seq, T0 // 1000, offs, vals, key=key, unit=4, scale=-1)))
        for d in spec.devices:
            links[d.name].send({"kind": "config", "settings": {"telemetry_s": 60, **d.settings}},
                               T0 // 1000)
        user_on = {n: False for n in plugs}  # the user switches a plug on once the cloud knows it
        end = T0 + days * DAY
        t = T0
        energy0 = _energy(devs)
        dev0 = {n: float(d.board.model.energy_wh) for n, d in devs.items()}
        pending = list(reqs)
        relay: dict[str, tuple[bool, int]] = {}  # a room's heater relay: (on, since)
        while t < end:
            now_s = t // 1000
            if t % MIN == 0:
                orders: list[Any] = []
                for n, d in devs.items():  # connected devices: frames in, reports out, each minute
                    link = links[n]
                    d.wake(link.queue)
                    link.queue = []
                    if planner is None:
                        link.uplinks()
                        continue
                    for what, v in link.uplinks():
                        if what == "capabilities":
                            planner.on_caps(n, v)
                        elif what == "state":
                            orders += planner.on_state(n, v, now_s)
                        elif what == "ack":
                            cmd, status, reason = v
                            run.acks[status] = run.acks.get(status, 0) + 1
                            if cmd is not None:
                                orders += planner.on_ack(n, cmd, status, reason, now_s)
                for n in plugs:
                    if not user_on[n] and links[n].caps:
                        user_on[n] = links[n].send({"kind": "relay", "on": True}, now_s)
                if planner is not None:
                    while pending and pending[0].start_s - NOTICE_S <= now_s:
                        orders += planner.add_request(pending.pop(0), now_s)
                    orders += planner.tick(now_s)
                    for o in orders:
                        run.orders += 1
                        if not links[o.device].send(o.command, now_s):
                            run.refused_by_cloud += 1
                if t > T0:
                    e = _energy(devs)
                    power.append((e - energy0) * 60.0)  # Wh in a minute -> W
                    energy0 = e
                    for n, d in devs.items():
                        x = float(d.board.model.energy_wh)
                        per[n].append((x - dev0[n]) * 60.0)
                        dev0[n] = x
                base = role_sim._program_setpoint(t)
                for n in rooms:
                    if devs[n].board.model.temp * 10 < base - 10:
                        run.comfort_minutes_below += 1
            for n in slow:
                devs[n].node.control()
            for n in rooms:  # the relay's minimum times, from its history
                th = devs[n]
                on = th.board.relay("heat").on
                was = relay.get(n)
                if was is None:
                    relay[n] = (on, t)
                elif on != was[0]:
                    g = th.node.role.guard
                    if t - was[1] < (g.min_on if was[0] else g.min_off):
                        k = "relay_min_on" if was[0] else "relay_min_off"
                        run.violations[k] = run.violations.get(k, 0) + 1
                    relay[n] = (on, t)
            for n in slow:
                devs[n].board.advance(STEP_MS)
            for _ in range(STEP_MS // 1000):  # a plug steps every second (its meter's sample)
                for n in plugs:
                    devs[n].node.control()
                    devs[n].board.advance(1000)
            t += STEP_MS
        power.append((_energy(devs) - energy0) * 60.0)
        for n, d in devs.items():
            per[n].append((float(d.board.model.energy_wh) - dev0[n]) * 60.0)
        for d in devs.values():
            for k, v in d.board.model.violations().items():
                if k in role_sim._COUNTED:
                    run.violations[k] = run.violations.get(k, 0) + v
    return power


def _energy(devs: dict) -> float:
    return sum(float(d.board.model.energy_wh) for d in devs.values())


def simulate(planner: str, seed: int = 1, days: int = 7,
             sites: tuple[SiteSpec, ...] = SINGLE) -> Run:
    """One week (or `days`) of `sites` under `planner`: "none", "manager" or "naive"
    (a planner of its own per site, as the cloud has)."""
    run = Run(planner)
    for i, spec in enumerate(sites):
        run.power_w.append(_simulate_site(i, seed, days, planner, run, spec=spec))
    return run


@dataclass
class Score:
    asked_wmin: float = 0.0
    delivered_wmin: float = 0.0
    intervals: int = 0

    @property
    def met_pct(self) -> float:
        return 100.0 * self.delivered_wmin / self.asked_wmin if self.asked_wmin else 100.0


def score(base: Run, run: Run, seed: int, days: int, sites: tuple[SiteSpec, ...] = SINGLE,
          only: int | None = None) -> Score:
    """Delivered against asked, per 15-minute interval of every request (see the module doc);
    `only`: one site's, by its index."""
    sc = Score()
    t0 = T0 // 1000
    for s, (pb, pr) in enumerate(zip(base.power_w, run.power_w)):
        if only is not None and s != only:
            continue
        for r in requests_for(s, seed, days, sites[s]):
            m0 = (r.start_s - t0) // 60
            m1 = (r.end_s - t0) // 60
            for a in range(m0, m1, INTERVAL_MIN):
                b = min(a + INTERVAL_MIN, m1, len(pb))
                if b <= a:
                    continue
                n = b - a
                mb = sum(pb[a:b]) / n
                mr = sum(pr[a:b]) / n
                if r.kind == "reduce":
                    asked = min(float(r.watts), mb)
                    got = min(max(mb - mr, 0.0), asked)
                else:
                    asked = max(0.0, mb - r.watts)
                    got = min(max(mb - mr, 0.0), asked)
                    if asked == 0.0 and mr > r.watts:
                        asked = mr - r.watts  # the run pushed the site over the cap
                sc.asked_wmin += asked * n
                sc.delivered_wmin += got * n
                sc.intervals += 1
    return sc


def _one(args: tuple[str, int, int, tuple[SiteSpec, ...]]) -> Run:
    return simulate(*args)


def compare(seed: int = 1, days: int = 7, sites: tuple[SiteSpec, ...] = SINGLE,
            parallel: bool = True) -> dict[str, Any]:
    """Baseline, manager and naive runs of the same week; their scores and violations."""
    jobs = [(p, seed, days, sites) for p in ("none", "manager", "naive")]
    if parallel:
        import multiprocessing as mp

        with mp.get_context("spawn").Pool(3) as pool:
            base, man, naive = pool.map(_one, jobs)
    else:
        base, man, naive = (_one(j) for j in jobs)
    sm, sn = score(base, man, seed, days, sites), score(base, naive, seed, days, sites)
    per_site = [(spec.name, score(base, man, seed, days, sites, i).met_pct,
                 score(base, naive, seed, days, sites, i).met_pct) for i, spec in enumerate(sites)]
    return {"baseline": base, "manager": man, "naive": naive, "score_manager": sm,
            "score_naive": sn, "per_site": per_site}


def figures(seed: int = 1, days: int = 7, sites: tuple[SiteSpec, ...] = SINGLE,
            parallel: bool = True) -> tuple[dict[str, float], dict[str, Any]]:
    """The energy manager's figures for make bench, and the runs behind them."""
    c = compare(seed, days, sites, parallel)
    sm, sn = c["score_manager"], c["score_naive"]
    man, naive = c["manager"], c["naive"]
    ratio = sm.met_pct / sn.met_pct if sn.met_pct else float("inf")
    return {
        "emd_site_target_met_pct": round(sm.met_pct, 1),
        "emd_vs_naive_ratio": round(ratio, 2),
        "emd_device_limit_violations": sum(man.violations.values()),
        "emd_naive_target_met_pct": round(sn.met_pct, 1),
        "emd_naive_device_limit_violations": sum(naive.violations.values()),
        "emd_comfort_minutes_below_manager": man.comfort_minutes_below,
        "emd_comfort_minutes_below_naive": naive.comfort_minutes_below,
        "emd_comfort_minutes_below_baseline": c["baseline"].comfort_minutes_below,
    }, c


if __name__ == "__main__":
    import sys
    import time

    t = time.time()
    d = int(sys.argv[1]) if len(sys.argv) > 1 else 7
    which = MULTI if sys.argv[2:] == ["multi"] else SINGLE
    f, c = figures(days=d, sites=which)
    for k, v in f.items():
        print(f"{k:40} {v}")
    for name, man, naive in c["per_site"]:
        print(f"site {name:12} manager {man:5.1f} %  naive {naive:5.1f} %")
    print("acks manager", c["manager"].acks, "naive", c["naive"].acks)
    print("violations manager", c["manager"].violations, "naive", c["naive"].violations)
    print(f"{time.time() - t:.1f} s")
