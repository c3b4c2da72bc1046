"""`spot ctl`: send commands to devices and watch them, as a client of the cloud's API.

Every command goes the same way: POST /api/devices/{address}/commands on the
cloud (`spot cloud serve`), which checks it against the device's capabilities,
stores it, hands it to the device's queue and follows it to the device's ACK.
Where there is no cloud, `--direct` sends the same commands straight to a
broker as the old in-process controller did (host_tools/cloud/controller.py,
the JSON registry's keys), and follows them while it runs.
"""
from __future__ import annotations

import argparse
import json
import os
import queue
import re
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable

from rich.console import Console
from rich.table import Table

from host_tools.cloud.api_client import (DEFAULT_URL, OPEN_STATES, CloudClient, CloudError, Event,
                                         describe, detail_text, outcome, parse_device, state_text)

EPILOG = f"""\
through the cloud (the default): the API at --cloud URL (or $SPOT_CLOUD_URL, default
{DEFAULT_URL}) with a token from `spot cloud token NAME --scopes read,command`
(--token or $SPOT_CLOUD_TOKEN):
  spot ctl devices
  spot ctl setpoint 00001101 21.5 --for 3600      # 202: stored, queued for the device
  spot ctl wait 7                                 # until the device's ACK: applied, adapted, ...
  spot ctl relay 00001102 on --wait 30 --json     # send and wait in one go, JSON for scripts

without a cloud: --direct talks to the broker itself with the JSON registry's keys
(spot provision's; --registry or $SPOT_REGISTRY); it hears ACKs and answers time
requests only while it runs (pending / resend keep what is unacknowledged):
  spot ctl --direct --mqtt 127.0.0.1:1883 reduce 0x1101 20 --for 7200 --wait 30

DEVICE is the address in hex, as `spot ctl devices` shows it (00001101 or 0x1101).
Exit status: 0 done; 1 the cloud or broker unreachable (or a 5xx), or no ACK in time;
2 the API refused the request (4xx: its reason is printed); 3 the device refused,
the command expired or was unsupported or cancelled.
"""
SG_WORDS = {"blocked": 1, "normal": 2, "recommended": 3, "forced": 4}
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


# the parser ------------------------------------------------------------------------------
def _options(p: argparse.ArgumentParser, reg_help: str, top: bool) -> None:
    """Connection and output options, accepted before the action and after it.

    On the actions they default to SUPPRESS, so a value given before the action
    (spot ctl --json devices) is not overwritten by the action's default."""
    def d(value: Any) -> Any:
        return value if top else argparse.SUPPRESS

    g = p.add_argument_group("the cloud")
    g.add_argument("--cloud", metavar="URL", default=d(None),
                   help=f"the cloud's API (default $SPOT_CLOUD_URL or {DEFAULT_URL})")
    g.add_argument("--token", default=d(None), help="API token (default $SPOT_CLOUD_TOKEN)")
    g.add_argument("--json", action="store_true", default=d(False),
                   help="print the API's JSON (watch: one event per line), for scripts")
    g = p.add_argument_group("without a cloud")
    g.add_argument("--direct", action="store_true", default=d(False),
                   help="send straight to the broker with the registry's keys (no cloud)")
    g.add_argument("--mqtt", metavar="HOST:PORT", default=d(None),
                   help="with --direct: the broker (default 127.0.0.1:1883)")
    g.add_argument("--registry", type=Path, default=d(None), help=f"with --direct: {reg_help}")
    g.add_argument("--as", dest="sender", default=d(None),
                   help="with --direct: send as this paired controller (default: the cloud)")


def add_parser(sub: argparse._SubParsersAction, reg_help: str) -> None:
    ctl = sub.add_parser("ctl", help="commands to devices through the cloud's API; devices, queues, events",
                         description="Send commands to devices and watch them through the cloud's API\n"
                                     "(spot cloud serve): one action per command kind, each checked against\n"
                                     "the device's capabilities and followed to its ACK; --json on any action\n"
                                     "for scripts. --direct works without a cloud.",
                         epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    _options(ctl, reg_help, top=True)
    csub = ctl.add_subparsers(dest="ctl_command", required=True, metavar="ACTION")

    def action(name: str, helptext: str, fn: Callable[..., int], body: Callable[..., dict] | None = None,
               send: bool = False) -> argparse.ArgumentParser:
        p = csub.add_parser(name, help=helptext, description=helptext)
        if send:
            p.add_argument("device", help="the device's address (hex)")
        _options(p, reg_help, top=False)
        if send:
            p.add_argument("--wait", type=float, default=0, metavar="SECONDS",
                           help="then wait this long for the device's ACK (it may be asleep)")
        p.set_defaults(ctl=fn, body=body)
        return p

    def duration(p: argparse.ArgumentParser, required: bool = False, default: int | None = None) -> None:
        p.add_argument("--for", dest="duration", type=int, metavar="SECONDS", required=required,
                       default=default, help="how long" + ("" if required else " (default: until changed)"))

    p = action("setpoint", "thermostat: hold a temperature", _send, _setpoint, send=True)
    p.add_argument("celsius", type=float, help="5..30 C")
    p.add_argument("--for", dest="duration", type=int, metavar="SECONDS",
                   help="how long (default: until the weekly program's next step)")
    p = action("comfort-band", "thermostat: keep the room within LOW..HIGH C (demand response)",
               _send, _comfort_band, send=True)
    p.add_argument("low", type=float)
    p.add_argument("high", type=float)
    duration(p, required=True)
    p = action("relay", "smart plug: switch the relay", _send, _relay, send=True)
    p.add_argument("on", choices=("on", "off"))
    p = action("sg", "heat pump: SG Ready state 1 blocked, 2 normal, 3 recommended on, 4 forced on",
               _send, _sg, send=True)
    p.add_argument("state", help="1..4 or blocked|normal|recommended|forced")
    duration(p)
    p = action("reduce", "any device: reduce consumption by PERCENT for a while", _send, _reduce, send=True)
    p.add_argument("percent", type=int)
    duration(p, required=True)
    p.add_argument("--start", metavar="WHEN", help="epoch s, +SECONDS from now, or now (default)")
    p.add_argument("--valid-for", type=int, metavar="SECONDS",
                   help="the device refuses it (ACK: expired) if it wakes later than this")
    p = action("limit", "any device: keep consumption under WATTS for a while", _send, _limit, send=True)
    p.add_argument("watts", type=int)
    duration(p, required=True)
    action("restore", "any device: end demand response now", _send, lambda a: {"kind": "restore"}, send=True)
    p = action("config", "settings by name: telemetry_s, power_on, cal_u, cal_i, cal_p, limit_ma, hysteresis, "
                         "frost, min_on_s, min_off_s, max_shed_s, max_block_day_s, modbus_unit, setpoint",
               _send, _config, send=True)
    p.add_argument("settings", nargs="+", metavar="NAME=VALUE", help="integers, in the setting's unit")
    p = action("program", "thermostat: a weekly program of setpoints", _send, _program, send=True)
    p.add_argument("--week-origin", metavar="WHEN",
                   help="epoch s the week starts (default: this week's Monday 00:00, local time)")
    p.add_argument("--step", action="append", required=True, metavar="OFFSET=C",
                   help="a setpoint from OFFSET into the week: seconds, or a day and time (mon-07:00=21)")
    p = action("event", "any device: a timed event, started within a random spread window", _send, _event,
               send=True)
    p.add_argument("--id", dest="event_id", type=int, required=True, help="the event's id (0..65535)")
    p.add_argument("--start", metavar="WHEN", help="epoch s, +SECONDS from now, or now (default)")
    duration(p, required=True)
    p.add_argument("--window", type=int, default=0, metavar="SECONDS", help="random start spread")
    p.add_argument("--value", type=int, default=1, help="the event's signal value (default 1)")

    p = action("price", "a price forecast to every device of a site (retained for sleepers)", _price)
    p.add_argument("site")
    p.add_argument("--prices", required=True, help="comma-separated prices per MWh, 2 decimals")
    p.add_argument("--interval", type=int, default=3600, metavar="SECONDS", help="per price (default 3600)")
    p.add_argument("--start", metavar="WHEN", help="epoch s of the first price (default: this hour)")

    p = action("cancel", "cancel a command the broker has not been given yet", _cancel)
    p.add_argument("id", type=int)
    p = action("wait", "wait for a command's end: the device's ACK (exit 0 applied or adapted, 3 other)",
               _wait)
    p.add_argument("id", type=int)
    p.add_argument("--timeout", type=float, default=60, metavar="SECONDS", help="default 60")

    p = action("devices", "every device: role, availability, last state, commands waiting", _devices)
    p.add_argument("--site")
    p = action("state", "one device's shadow: state, capabilities, open commands", _state)
    p.add_argument("device")
    p = action("commands", "recent commands (of one device) and where each is", _commands)
    p.add_argument("device", nargs="?")
    p.add_argument("--state", help="only those in this state (applied, published, ...)")
    p.add_argument("--limit", type=int, default=30)
    action("pending", "commands not yet acknowledged: mostly queued for sleeping devices", _pending)
    p = action("watch", "the live stream: command states, reports, availability", _watch)
    p.add_argument("--seconds", type=float, help="stop after this long (default: until Ctrl-C)")
    p.add_argument("--device", help="only this device's events")
    p.add_argument("--site", help="with --direct: only this site (default: the registry's first)")
    action("resend", "with --direct: publish again what is not yet acknowledged", _resend)


def run(args: argparse.Namespace) -> int:
    if args.mqtt and not args.direct:
        return _fail(args, "--mqtt talks to a broker directly: add --direct (without a cloud), or drop "
                           "--mqtt to go through the cloud's API")
    try:
        return args.ctl(args)
    except CloudError as e:
        detail = e.detail
        if e.status == 401 and not _client_token(args):
            detail += "; give a token with --token or $SPOT_CLOUD_TOKEN"
        if e.status is not None:
            detail = f"HTTP {e.status}: {detail}"
        return _fail(args, detail, 2 if e.client_side else 1)


def _fail(args: argparse.Namespace, text: str, code: int = 2) -> int:
    print(f"spot ctl {args.ctl_command}: {text}", file=sys.stderr)
    return code


def _client_token(args: argparse.Namespace) -> str:
    return args.token or os.environ.get("SPOT_CLOUD_TOKEN", "")


def _client(args: argparse.Namespace) -> CloudClient:
    return CloudClient(args.cloud, args.token)


def _print_json(value: Any) -> None:
    print(json.dumps(value, indent=2, sort_keys=True))


def _console() -> Console:
    return Console(width=None if sys.stdout.isatty() else 140)


# command bodies: one per kind, the same JSON for the API and for --direct -------------------
def _when(text: str | None, default: int | None = None) -> int | None:
    """A time as people give it: epoch seconds, +SECONDS from now, or now."""
    if text is None or text == "now":
        return default
    try:
        return int(time.time()) + int(text[1:]) if text.startswith("+") else int(text)
    except ValueError:
        raise ValueError(f"time {text!r}: epoch seconds, +SECONDS from now, or now") from None


def _setpoint(a: argparse.Namespace) -> dict:
    return {"kind": "setpoint", "value_c": a.celsius, "duration_s": a.duration or 0}


def _comfort_band(a: argparse.Namespace) -> dict:
    return {"kind": "comfort_band", "low_c": a.low, "high_c": a.high, "duration_s": a.duration}


def _relay(a: argparse.Namespace) -> dict:
    return {"kind": "relay", "on": a.on == "on"}


def _sg(a: argparse.Namespace) -> dict:
    text = a.state.lower()
    state = SG_WORDS.get(text) or (int(text) if text.isdigit() else None)
    if state is None:
        raise ValueError(f"SG Ready state {a.state!r}: 1..4 or {'|'.join(SG_WORDS)}")
    return {"kind": "sg_state", "state": state, "duration_s": a.duration or 0}


def _reduce(a: argparse.Namespace) -> dict:
    body: dict[str, Any] = {"kind": "reduce", "percent": a.percent, "duration_s": a.duration}
    if a.start:
        body["start"] = _when(a.start)
    if a.valid_for:
        body["valid_for_s"] = a.valid_for
    return body


def _limit(a: argparse.Namespace) -> dict:
    return {"kind": "limit", "watts": a.watts, "duration_s": a.duration}


def _config(a: argparse.Namespace) -> dict:
    settings = {}
    for item in a.settings:
        name, eq, value = item.partition("=")
        if not eq or not value.strip().lstrip("-").isdigit():
            raise ValueError(f"setting {item!r}: NAME=INTEGER, e.g. telemetry_s=60")
        settings[name.strip()] = int(value)
    return {"kind": "config", "settings": settings}


def _week_offset(text: str) -> int:
    text = text.strip().lower()
    if text.isdigit():
        return int(text)
    m = re.fullmatch(r"(mon|tue|wed|thu|fri|sat|sun)[- ]?(\d{1,2}):(\d{2})", text)
    if not m:
        raise ValueError(f"program step offset {text!r}: seconds into the week, or a day and time (mon-07:00)")
    return DAYS.index(m[1]) * 86400 + int(m[2]) * 3600 + int(m[3]) * 60


def _this_monday() -> int:
    now = time.localtime()
    midnight = time.mktime((now.tm_year, now.tm_mon, now.tm_mday, 0, 0, 0, 0, 0, -1))
    return int(midnight) - now.tm_wday * 86400


def _program(a: argparse.Namespace) -> dict:
    steps = []
    for item in a.step:
        offset, eq, value = item.rpartition("=")
        if not eq:
            raise ValueError(f"program step {item!r}: OFFSET=CELSIUS, e.g. mon-07:00=21")
        steps.append([_week_offset(offset), float(value)])
    steps.sort()
    return {"kind": "program", "week_origin": _when(a.week_origin, _this_monday()), "steps": steps}


def _event(a: argparse.Namespace) -> dict:
    return {"kind": "event", "event_id": a.event_id, "start": _when(a.start, int(time.time())),
            "duration_s": a.duration, "window_s": a.window, "value": a.value}


# sending --------------------------------------------------------------------------------------
def _send(args: argparse.Namespace) -> int:
    body = args.body(args)
    device = parse_device(args.device)
    if args.direct:
        return _direct_send(args, device, body)
    with _client(args) as cloud:
        accepted = cloud.send(device, body)
        cid = accepted["id"]
        if not args.wait:
            if args.json:
                _print_json(accepted)
            else:
                print(f"command {cid} accepted: {describe(body['kind'], body)} -> {device:08x} "
                      f"(seq {accepted['seq']}, {accepted['frame_bytes']} B); it waits in the device's "
                      f"queue while it sleeps: spot ctl wait {cid}")
            return 0
        return _show_wait(args, cloud.wait(cid, args.wait), args.wait)


def _show_wait(args: argparse.Namespace, c: dict, timeout: float) -> int:
    if args.json:
        _print_json(c)
    elif c["state"] in OPEN_STATES:
        print(f"command {c['id']} is still {c['state']} after {timeout:g} s: the device is asleep; "
              f"it gets it at its next wake (spot ctl wait {c['id']})")
    else:
        print(f"command {c['id']} ({describe(c['kind'], c['params'])}) -> {c['device']}: {outcome(c)}")
    if c["state"] in OPEN_STATES:
        return 1
    return 0 if c["state"] in ("applied", "adapted") else 3


def _price(args: argparse.Namespace) -> int:
    try:
        prices = [float(x) for x in args.prices.split(",") if x.strip()]
    except ValueError:
        raise ValueError("--prices takes numbers separated by commas, e.g. 85.2,80.15") from None
    start = _when(args.start)
    if args.direct:
        return _direct_price(args, prices, start)
    with _client(args) as cloud:
        r = cloud.send_prices(args.site, prices, args.interval, start)
    if args.json:
        _print_json(r)
    else:
        print(f"sent: {r['steps']}-step price forecast to site {r['site']} ({r['group']}), "
              f"{r['frame_bytes']} B, retained for devices that sleep")
    return 0


def _cancel(args: argparse.Namespace) -> int:
    _cloud_only(args)
    with _client(args) as cloud:
        c = cloud.cancel(args.id)
    if args.json:
        _print_json(c)
    else:
        print(f"command {c['id']} ({describe(c['kind'], c['params'])}) -> {c['device']}: {c['state']}")
    return 0


def _wait(args: argparse.Namespace) -> int:
    _cloud_only(args)
    with _client(args) as cloud:
        return _show_wait(args, cloud.wait(args.id, args.timeout), args.timeout)


def _cloud_only(args: argparse.Namespace) -> None:
    if args.direct:
        raise ValueError(f"`spot ctl {args.ctl_command}` reads the cloud's records (commands, shadows): "
                         "drop --direct")


# looking -----------------------------------------------------------------------------------
def _ago(t: float | None) -> str:
    if not t:
        return "-"
    s = time.time() - t
    if s < 0:
        return f"in {-s:.0f} s"
    if s < 120:
        return f"{s:.0f} s ago"
    if s < 7200:
        return f"{s / 60:.0f} min ago"
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(t))


def _availability(d: dict) -> str:
    a = d.get("availability") or "never seen"
    if a == "asleep" and d.get("next_wake"):
        due = d["next_wake"] - time.time()  # the device announces it in whole seconds
        if due >= 1:
            return f"asleep (wakes {_ago(d['next_wake'])})"
        if due > -10:
            return "asleep (wakes now)"
        return f"asleep (wake due {_ago(d['next_wake'])})"
    return a


def _devices(args: argparse.Namespace) -> int:
    _cloud_only(args)
    with _client(args) as cloud:
        devices = cloud.devices(args.site)
        waiting: dict[str, int] = {}
        for c in cloud.pending():
            waiting[c["device"]] = waiting.get(c["device"], 0) + 1
    if args.json:
        _print_json(devices)
        return 0
    t = Table(title=f"devices ({len(devices)})")
    for col in ("device", "site", "role", "availability", "last seen", "state", "waiting"):
        t.add_column(col)
    for d in devices:
        role = (d.get("capabilities") or {}).get("role") or (d.get("state") or {}).get("role") or "-"
        t.add_row(d["address"], d["site"], role.replace("_", " "), _availability(d), _ago(d.get("last_seen")),
                  state_text(d.get("state")), str(waiting.get(d["address"], 0) or ""))
    _console().print(t)
    return 0


def _state(args: argparse.Namespace) -> int:
    _cloud_only(args)
    with _client(args) as cloud:
        d = cloud.device(args.device)
    if args.json:
        _print_json(d)
        return 0
    con = _console()
    role = (d.get("capabilities") or {}).get("role") or (d.get("state") or {}).get("role") or "role not reported yet"
    con.print(f"[bold]{d['address']}[/]  {role.replace('_', ' ')} in site {d['site']}: {_availability(d)}, "
              f"last seen {_ago(d.get('last_seen'))}, reset cause {d.get('reset_cause') or '-'}")
    con.print(f"state ({_ago(d.get('state_at'))}): {state_text(d.get('state'))}")
    for title, values in (("state", d.get("state")), ("capabilities", d.get("capabilities")),
                          ("meter", d.get("meter"))):
        if values:
            con.print(f"  {title}: " + ", ".join(f"{k}={v}" for k, v in sorted(values.items())))
    _command_table(con, d.get("open_commands") or [], "commands waiting for the device")
    return 0


def _command_table(con: Console, rows: list[dict], title: str) -> None:
    if not rows:
        con.print(f"{title}: none")
        return
    t = Table(title=title)
    for col in ("id", "device", "command", "state", "sends", "accepted", "answered"):
        t.add_column(col)
    for c in rows:
        colour = {"applied": "green", "adapted": "yellow", "refused": "red", "expired": "red",
                  "unsupported": "red", "cancelled": "dim"}.get(c["state"], "cyan")
        t.add_row(str(c["id"]), c["device"], describe(c["kind"], c["params"] or {}), f"[{colour}]{outcome(c)}[/]",
                  str(c["sends"]), _ago(c.get("created_at")), _ago(c.get("acked_at")))
    con.print(t)


def _commands(args: argparse.Namespace) -> int:
    _cloud_only(args)
    with _client(args) as cloud:
        rows = cloud.commands(args.device, args.state, args.limit)
    if args.json:
        _print_json(rows)
    else:
        _command_table(_console(), rows, "commands" + (f" of {parse_device(args.device):08x}" if args.device else ""))
    return 0


def _pending(args: argparse.Namespace) -> int:
    if args.direct:
        return _direct_pending(args)
    with _client(args) as cloud:
        rows = cloud.pending()
    if args.json:
        _print_json(rows)
    else:
        _command_table(_console(), rows, "commands waiting for their ACK (queued for sleeping devices)")
    return 0


def event_text(ev: Event) -> str:
    """One event of the live stream in words."""
    d = ev.data
    dev = d.get("device", "")
    if ev.type == "command":
        what = f" ({d['kind']})" if d.get("kind") else ""
        why = f" ({d['reason_text']})" if d.get("reason_text") else ""
        return f"{dev or '':8}  command {d.get('id')}{what}: {d.get('state')}{why}"
    if ev.type == "state":
        return f"{dev:8}  state: {state_text(d.get('body'))}"
    if ev.type == "capabilities":
        b = d.get("body") or {}
        return f"{dev:8}  capabilities: {str(b.get('role', '?')).replace('_', ' ')}, nominal {b.get('nominal_w')} W, " \
               f"can shed {b.get('shed_w')} W now"
    if ev.type == "meter":
        return f"{dev:8}  meter: " + ", ".join(f"{k}={v}" for k, v in sorted((d.get("body") or {}).items()))
    if ev.type == "availability":
        return f"{dev:8}  {d.get('availability')}"
    return f"{dev:8}  {ev.type}: {d}"


def _watch(args: argparse.Namespace) -> int:
    if args.direct:
        return _direct_watch(args)
    only = f"{parse_device(args.device):08x}" if args.device else None
    q: queue.Queue[Event | BaseException | None] = queue.Queue()
    with _client(args) as cloud:
        stream = cloud.events()

        def pump() -> None:
            try:
                for ev in stream:
                    q.put(ev)
                q.put(None)
            except BaseException as e:  # noqa: BLE001 - handed to the main thread
                q.put(e)

        threading.Thread(target=pump, daemon=True).start()
        # Said once subscribed (events from here on are seen); on stderr with --json, so
        # stdout stays one JSON object per line.
        print(f"watching {cloud.url}/api/events" + (f" for {args.seconds:g} s" if args.seconds else "")
              + " (Ctrl-C to stop)", file=sys.stderr if args.json else sys.stdout, flush=True)
        end = time.monotonic() + args.seconds if args.seconds else None
        try:
            while end is None or time.monotonic() < end:
                try:
                    item = q.get(timeout=0.2 if end is None else max(0.01, min(0.2, end - time.monotonic())))
                except queue.Empty:
                    continue
                if item is None:
                    return _fail(args, "the cloud ended the stream", 1)
                if isinstance(item, BaseException):
                    raise item
                if only and item.data.get("device") not in (None, only):
                    continue
                if args.json:
                    print(json.dumps({"type": item.type, **item.data}), flush=True)
                else:
                    print(f"{time.strftime('%H:%M:%S')}  {event_text(item)}", flush=True)
        except KeyboardInterrupt:
            pass
        finally:
            stream.close()
    return 0


def _resend(args: argparse.Namespace) -> int:
    if not args.direct:
        raise ValueError("the cloud resends what is not acknowledged by itself; resend is for --direct")
    _, c = _controller(args)
    if c is None:
        return 1
    try:
        n = c.resend_pending()
    finally:
        c.close()
    print(f"resent {n} command(s)")
    return 0


# --direct: straight to the broker, as the cloud, with the JSON registry ------------------------
def _controller(args: argparse.Namespace, site: str | None = None, connect: bool = True) -> tuple[Any, Any]:
    from host_tools.cloud.controller import Controller
    from host_tools.cloud.registry import Registry, parse_address

    reg = Registry(args.registry)
    sender = parse_address(args.sender) if args.sender else reg.cloud
    if site is None:
        site = next(iter(reg.data["sites"]), "-")
    c = Controller(reg, site, args.mqtt or "127.0.0.1:1883", sender)
    if connect:
        try:
            c.connect()
        except ConnectionError as e:
            print(f"spot ctl {args.ctl_command}: {e}; is Mosquitto running?", file=sys.stderr)
            return reg, None
    return reg, c


def _direct_send(args: argparse.Namespace, device: int, body: dict) -> int:
    from pydantic import TypeAdapter, ValidationError

    from host_tools.cloud import command_kinds
    from host_tools.cloud.controller import STATUS_NAMES
    from host_tools.cloud.uplink import REASONS
    from spot import messages

    try:
        cmd = TypeAdapter(command_kinds.Command).validate_python(body)
        # No shadow here to know the device's role by: checked as if it had the role the kind
        # is for (ranges, band order, settings); a device of another role answers "unsupported".
        need = command_kinds.ROLE_KINDS.get(cmd.kind)
        command_kinds.check(cmd, min(need) if need else None, None)
    except ValidationError as e:
        raise ValueError(detail_text(e.errors(include_url=False))) from None
    except command_kinds.Refused as e:
        raise ValueError(str(e)) from None
    from host_tools.cloud.registry import Registry

    site = Registry(args.registry).device(device)["site"]
    _, c = _controller(args, site)
    if c is None:
        return 1
    seal = command_kinds.sealer(cmd, int(time.time()))
    label = describe(body["kind"], body)
    try:
        p = c.send_command(device, lambda seq, key: seal(device, c.address, seq, key), label)
        if not args.wait:
            if args.json:
                _print_json({"device": f"{device:08x}", "seq": p.seq, "kind": body["kind"], "state": "published",
                             "frame_bytes": len(p.frame)})
            else:
                print(f"sent: {label} to {device:08x}, seq {p.seq}, {len(p.frame)} B; "
                      "queued at the broker until the device wakes")
            return 0
        end = time.monotonic() + args.wait
        while time.monotonic() < end and any(w.seq == p.seq for w in c.waiting()):
            time.sleep(0.05)
        acks = [x for x in c.stats.acks if x.body.get(messages.K_ACK_SEQ) == p.seq]
        if not acks:
            print(f"no ACK within {args.wait:g} s: the device is asleep; `spot ctl --direct pending` "
                  "shows it, `spot ctl --direct resend` sends it again")
            return 1
        status = STATUS_NAMES.get(acks[0].body.get(messages.K_ACK_STATUS), "?")
        reason = acks[0].body.get(messages.K_ACK_REASON)
        if args.json:
            _print_json({"device": f"{device:08x}", "seq": p.seq, "kind": body["kind"], "state": status,
                         "reason": reason, "reason_text": REASONS.get(reason or 0)})
        else:
            why = REASONS.get(reason or 0)
            print(f"ACK from {device:08x}: {status}" + (f" ({why})" if why else ""))
        return 0 if status in ("applied", "adapted") else 3
    finally:
        c.close()


def _direct_price(args: argparse.Namespace, prices: list[float], start: int | None) -> int:
    from spot import builders

    from host_tools.cloud.registry import Registry

    Registry(args.registry).site_group(args.site)  # an unknown site fails here, before connecting
    _, c = _controller(args, args.site)
    if c is None:
        return 1
    cents = [round(x * 100) for x in prices]
    start = start or int(time.time()) // 3600 * 3600
    group = c.reg.site_group(args.site)
    try:
        raw = c.send_signal(group, lambda seq, key: builders.price_forecast(
            group, c.address, seq, start, args.interval, cents, -2, key=key))
    finally:
        c.close()
    if args.json:
        _print_json({"site": args.site, "group": f"{group:08x}", "steps": len(cents), "frame_bytes": len(raw)})
    else:
        print(f"sent: {len(cents)}-step price forecast to site {args.site} ({group:08x}), {len(raw)} B, retained")
    return 0


def _direct_pending(args: argparse.Namespace) -> int:
    _, c = _controller(args, connect=False)
    rows = c.waiting()
    if args.json:
        _print_json([{"device": f"{p.device:08x}", "seq": p.seq, "command": p.label, "sends": p.sends,
                      "frame_bytes": len(p.frame)} for p in rows])
        return 0
    t = Table(title="commands waiting for their ACK (queued for sleeping devices)")
    for col in ("device", "seq", "command", "sends", "bytes"):
        t.add_column(col)
    for p in rows:
        t.add_row(f"{p.device:08x}", str(p.seq), p.label, str(p.sends), str(len(p.frame)))
    _console().print(t)
    return 0


def _direct_watch(args: argparse.Namespace) -> int:
    from host_tools.cloud.controller import STATUS_NAMES
    from spot import messages

    only = parse_device(args.device) if args.device else None

    def show(up: Any) -> None:
        if only is not None and up.src != only:
            return
        if up.cls == 3:
            status = STATUS_NAMES.get(up.body.get(messages.K_ACK_STATUS), up.body.get(messages.K_ACK_STATUS))
            line = {"type": "ack", "device": f"{up.src:08x}", "seq": up.body.get(messages.K_ACK_SEQ),
                    "state": status}
            text = f"ACK of seq {line['seq']}: {status}"
        else:
            line = {"type": "report", "device": f"{up.src:08x}", "seq": up.seq,
                    "body": {str(k): repr(v) if not isinstance(v, (int, float, str)) else v
                             for k, v in up.body.items()}}
            text = f"report seq {up.seq}: " + ", ".join(f"{k}={v}" for k, v in sorted(up.body.items()))
        if args.json:
            print(json.dumps(line), flush=True)
        else:
            print(f"{time.strftime('%H:%M:%S')}  {up.src:08x}  {text}", flush=True)

    _, c = _controller(args, args.site)
    if c is None:
        return 1
    c.on_uplink = show
    if not args.json:
        print(f"watching uplinks at {c.host}:{c.port}" + (f" for {args.seconds:g} s" if args.seconds else "")
              + " (Ctrl-C to stop)", flush=True)
    try:
        time.sleep(args.seconds if args.seconds else 1e9)
    except KeyboardInterrupt:
        pass
    finally:
        c.close()
    return 0

