"""`spot ctl`: talk to devices through the broker as the cloud (or a paired controller).

    spot ctl command 0x1001 --reduce 20 --for 7200 --mqtt 127.0.0.1:1883 --wait 30
    spot ctl price home --prices 85.2,80.15,... --mqtt 127.0.0.1:1883
    spot ctl pending            # commands sent, not yet acknowledged (queued for sleepers)
    spot ctl watch --seconds 60 --mqtt 127.0.0.1:1883
    spot ctl resend --mqtt 127.0.0.1:1883
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table



def add_parser(sub: argparse._SubParsersAction, reg_help: str) -> None:
    ctl = sub.add_parser("ctl", help="send commands and signals, see ACKs, reports and queues",
                         description="Talk to devices through the broker, as the cloud or as a "
                                     "paired controller (--as).")
    csub = ctl.add_subparsers(dest="ctl_command", required=True, metavar="ACTION")

    def common(p: argparse.ArgumentParser, mqtt: bool = True) -> None:
        p.add_argument("--registry", type=Path, help=reg_help)
        p.add_argument("--as", dest="sender", help="send as this controller (default: the cloud)")
        if mqtt:
            p.add_argument("--mqtt", metavar="HOST:PORT", default="127.0.0.1:1883",
                           help="the broker (default 127.0.0.1:1883)")

    p = csub.add_parser("command", help="reduce a device's power for a while (acknowledged end to end)")
    p.add_argument("device")
    p.add_argument("--reduce", type=int, required=True, metavar="PERCENT")
    p.add_argument("--for", dest="duration", type=int, default=3600, metavar="SECONDS")
    p.add_argument("--start", type=int, help="epoch seconds (default: now)")
    p.add_argument("--valid-for", type=int, metavar="SECONDS",
                   help="the device refuses it (ACK: expired) if it wakes later than this")
    p.add_argument("--wait", type=float, default=0, metavar="SECONDS",
                   help="wait this long for the device's ACK (it may be asleep)")
    common(p)
    p.set_defaults(ctl=_command)

    p = csub.add_parser("price", help="publish a price forecast to a site (retained)")
    p.add_argument("site")
    p.add_argument("--prices", required=True, help="comma-separated prices per MWh, 2 decimals")
    p.add_argument("--start", type=int, help="epoch seconds of the first step (default: this hour)")
    p.add_argument("--interval", type=int, default=3600, metavar="SECONDS")
    common(p)
    p.set_defaults(ctl=_price)

    p = csub.add_parser("pending", help="commands sent and not yet acknowledged")
    common(p, mqtt=False)
    p.set_defaults(ctl=_pending)

    p = csub.add_parser("resend", help="publish every unacknowledged command again")
    common(p)
    p.set_defaults(ctl=_resend)

    p = csub.add_parser("watch", help="show ACKs and reports as devices send them")
    p.add_argument("--site", help="default: every site in the registry")
    p.add_argument("--seconds", type=float, default=60)
    common(p)
    p.set_defaults(ctl=_watch)


def run(args: argparse.Namespace) -> int:
    return args.ctl(args)


def _controller(args: argparse.Namespace, site: str | None = None, connect: bool = True):
    from host_tools.cloud.controller import Controller
    from host_tools.cloud.registry import Registry, parse_address

    reg = Registry(args.registry)
    sender = parse_address(args.sender) if args.sender else reg.cloud
    if site is None:
        sites = list(reg.data["sites"]) or ["-"]
        site = sites[0]
    c = Controller(reg, site, getattr(args, "mqtt", "127.0.0.1:1883"), sender)
    if connect:
        try:
            c.connect()
        except ConnectionError as e:
            raise SystemExit(f"{e}; is Mosquitto running?") from None
    return reg, c


def _command(args: argparse.Namespace) -> int:
    from host_tools.cloud.registry import Registry, parse_address
    from spot import builders, messages

    reg = Registry(args.registry)
    device = parse_address(args.device)
    site = reg.device(device)["site"]
    _, c = _controller(args, site)
    now = int(time.time())
    start = args.start or now
    until = now + args.valid_for if args.valid_for else None
    try:
        p = c.send_command(device, lambda seq, key: builders.reduce_power(
            device, c.address, seq, args.reduce, start, args.duration, key=key, valid_until=until),
            f"reduce {args.reduce} % for {args.duration} s")
        print(f"sent: {p.label} to {device:08x}, seq {p.seq}, {len(p.frame)} B; "
              "queued at the broker until the device wakes")
        if args.wait:
            end = time.monotonic() + args.wait
            while time.monotonic() < end and any(w.seq == p.seq for w in c.waiting()):
                time.sleep(0.05)
            acks = [a for a in c.stats.acks if a.body.get(messages.K_ACK_SEQ) == p.seq]
            if not acks:
                print(f"no ACK within {args.wait:.0f} s: the device is asleep; `spot ctl pending` "
                      "shows it, `spot ctl resend` sends it again")
                return 1
            from host_tools.cloud.controller import STATUS_NAMES

            status = acks[0].body.get(messages.K_ACK_STATUS)
            print(f"ACK from {device:08x}: {STATUS_NAMES.get(status, status)}")
    finally:
        c.close()
    return 0


def _price(args: argparse.Namespace) -> int:
    from spot import builders, messages

    _, c = _controller(args, args.site)
    try:
        prices = [round(float(x) * 100) for x in args.prices.split(",") if x.strip()]
    except ValueError:
        raise SystemExit("--prices takes numbers separated by commas, e.g. 85.2,80.15") from None
    start = args.start or int(time.time()) // 3600 * 3600
    group = c.reg.site_group(args.site)
    try:
        raw = c.send_signal(group, lambda seq, key: builders.price_forecast(
            group, c.address, seq, start, args.interval, prices, -2, key=key))
        print(f"sent: {len(prices)}-step price forecast to site {args.site} ({group:08x}), "
              f"{len(raw)} B, retained")
    finally:
        c.close()
    return 0


def _pending(args: argparse.Namespace) -> int:
    _, c = _controller(args, connect=False)
    t = Table(title="commands waiting for their ACK (queued for sleeping devices)")
    for col in ("device", "seq", "command", "sends", "bytes"):
        t.add_column(col)
    for p in c.waiting():
        t.add_row(f"{p.device:08x}", str(p.seq), p.label, str(p.sends), str(len(p.frame)))
    Console().print(t)
    return 0


def _resend(args: argparse.Namespace) -> int:
    _, c = _controller(args)
    try:
        n = c.resend_pending()
    finally:
        c.close()
    print(f"resent {n} command(s)")
    return 0


def _watch(args: argparse.Namespace) -> int:
    from host_tools.cloud.controller import STATUS_NAMES
    from spot import messages

    console = Console()

    def show(up) -> None:
        if up.cls == 3:
            status = up.body.get(messages.K_ACK_STATUS)
            console.print(f"{time.strftime('%H:%M:%S')}  {up.src:08x}  ACK of seq "
                          f"{up.body.get(messages.K_ACK_SEQ)}: {STATUS_NAMES.get(status, status)}")
        else:
            console.print(f"{time.strftime('%H:%M:%S')}  {up.src:08x}  report seq {up.seq}: "
                          + ", ".join(f"{k}={v}" for k, v in sorted(up.body.items())))

    _, c = _controller(args, args.site)
    c.on_uplink = show
    console.print(f"watching uplinks for {args.seconds:.0f} s (Ctrl-C to stop)")
    try:
        time.sleep(args.seconds)
    except KeyboardInterrupt:
        pass
    finally:
        c.close()
    return 0
