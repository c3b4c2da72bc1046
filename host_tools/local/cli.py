"""`spot local discover | command | state`: a controller on the local network (SPEC.md 13).

No broker and no cloud on the way: discovery by multicast, commands by UDP to the
device, sealed under the pairwise key `spot pair` issued (the registry file is the
one the cloud keeps, or a copy of the controller's part of it). The command kinds
are those of `spot ctl`; tables for people, --json for scripts.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

EPILOG = """examples:
  spot local discover                               who is on this network
  spot local command 0x3101 relay on=true --as 0x200
  spot local command 0x3101 setpoint value_c=21.5 --host 192.168.1.40 --as 0x200
  spot local state 0x3101 --as 0x200 --json
A command's fields are those of `spot ctl` (NAME=VALUE, values as JSON: true, 21.5, "x").
The controller (--as) must be paired with the device: spot pair CONTROLLER DEVICE
--classes command,discovery (discovery lets it read the device's state)."""


def _value(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


def command_body(kind: str, fields: list[str]) -> dict[str, Any]:
    body: dict[str, Any] = {"kind": kind.replace("-", "_")}
    for f in fields:
        name, eq, value = f.partition("=")
        if not eq:
            raise ValueError(f"{f!r} is not NAME=VALUE")
        body[name.replace("-", "_")] = _value(value)
    return body


def _controller(args: argparse.Namespace):
    from host_tools.cloud.registry import Registry, parse_address
    from host_tools.local.controller import LocalController

    return LocalController(Registry(args.registry), parse_address(args.sender), args.port,
                           args.group, interface=args.interface)


def _host(c: Any, device: int, host: str | None, timeout: float) -> str:
    """The device's address: given, else asked secured (only the device can answer: an
    unsecured answer could come from anyone on the LAN, who would then hold the sealed
    command and could deliver it late), else, if the pairing does not allow DISCOVERY,
    from the group's unsecured answers, said on stderr."""
    if host:
        return host
    for d in c.discover(timeout / 2, device=device):
        if d.address == device and d.secured:
            return d.host
    for d in c.discover(timeout / 2):
        if d.address == device:
            print(f"{device:08x} found by an unsecured answer (pair with --classes command,discovery "
                  "to have it verified, or give --host)", file=sys.stderr)
            return d.host
    raise ValueError(f"device {device:08x} did not answer discovery within {timeout:g} s "
                     "(asleep, or on another network: give --host)")


def _discover(args: argparse.Namespace) -> int:
    with _controller(args) as c:
        found = c.discover(args.timeout)
    if args.json:
        print(json.dumps([d.as_dict() for d in found]))
        return 0
    from rich.console import Console
    from rich.table import Table

    t = Table(title=f"devices answering on {args.group}:{args.port}")
    for col in ("address", "host", "role", "services (id: classes)", "secured"):
        t.add_column(col)
    for d in found:
        t.add_row(f"{d.address:08x}", d.host, d.role or "-",
                  ", ".join(f"{s[0]}: {s[1]:#04x}" for s in d.services), "yes" if d.secured else "no")
    Console().print(t)
    if not found:
        print("nobody answered (sleepy devices answer only while awake)")
    return 0


def _command(args: argparse.Namespace) -> int:
    from pydantic import TypeAdapter, ValidationError

    from host_tools.cloud import command_kinds
    from host_tools.cloud.registry import parse_address

    try:
        cmd = TypeAdapter(command_kinds.Command).validate_python(command_body(args.kind, args.fields))
        need = command_kinds.ROLE_KINDS.get(cmd.kind)
        command_kinds.check(cmd, min(need) if need else None, None)
    except ValidationError as e:
        raise ValueError("; ".join(f"{'.'.join(map(str, x['loc']))}: {x['msg']}"
                                   for x in e.errors(include_url=False))) from None
    except command_kinds.Refused as e:
        raise ValueError(str(e)) from None
    device = parse_address(args.device)
    with _controller(args) as c:
        host = _host(c, device, args.host, args.timeout)
        r = c.command(device, host, command_kinds.sealer(cmd, int(time.time())), cmd.kind,
                      timeout=args.timeout)
    if args.json:
        print(json.dumps(r.as_dict() | {"host": host}))
    else:
        from host_tools.cloud.uplink import REASONS

        why = f" ({REASONS.get(r.reason, r.reason)})" if r.reason else ""
        print(f"{cmd.kind} -> {device:08x} at {host}: {r.status or 'no answer'}{why} "
              f"in {r.ms:.1f} ms, {r.sends} send{'s' if r.sends != 1 else ''}")
    return 0 if r.status in ("applied", "adapted") else 1


def _state(args: argparse.Namespace) -> int:
    from host_tools.cloud.registry import parse_address

    device = parse_address(args.device)
    with _controller(args) as c:
        host = _host(c, device, args.host, args.timeout)
        d = c.state(device, host, args.timeout)
    if d is None:
        print(f"device {device:08x} at {host} did not answer (asleep, or the pairing lacks "
              "discovery)", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(d.as_dict()))
        return 0
    from rich.console import Console
    from rich.table import Table

    t = Table(title=f"{device:08x} at {host} ({d.role or 'no role'})")
    t.add_column("field")
    t.add_column("value")
    for k, v in (d.state or {}).items():
        t.add_row(k, str(v))
    Console().print(t)
    return 0


def add_parser(sub: argparse._SubParsersAction, reg_help: str) -> None:
    from spot.udp_link import GROUP, PORT

    p = sub.add_parser("local", help="direct local control over UDP: discover, command, state",
                       description="A controller on the local network (SPEC.md 13): devices found by "
                                   "multicast, commanded over UDP under the pairwise key `spot pair` "
                                   "issued; no broker, no cloud.", epilog=EPILOG,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    lsub = p.add_subparsers(dest="local_command", required=True, metavar="ACTION")

    def common(q: argparse.ArgumentParser, paired: bool) -> None:
        q.add_argument("--registry", type=Path, help=reg_help)
        q.add_argument("--as", dest="sender", default="0x100" if not paired else None,
                       required=paired, help="this controller's address (paired with the device)")
        q.add_argument("--port", type=int, default=PORT, help=f"the devices' UDP port (default {PORT})")
        q.add_argument("--group", default=GROUP, help=f"the discovery group (default {GROUP})")
        q.add_argument("--interface", metavar="ADDRESS", help="the local address multicast leaves by")
        q.add_argument("--timeout", type=float, default=2.0, metavar="SECONDS", help="default 2")
        q.add_argument("--json", action="store_true", help="JSON for scripts")

    q = lsub.add_parser("discover", help="who is on this network (multicast, read-only)")
    common(q, paired=False)
    q.set_defaults(func=_discover)
    q = lsub.add_parser("command", help="a command of `spot ctl`, over UDP, to its ACK")
    q.add_argument("device", help="the device's address")
    q.add_argument("kind", help="relay, setpoint, comfort_band, sg_state, reduce, limit, restore, "
                                "config, program, event")
    q.add_argument("fields", nargs="*", metavar="NAME=VALUE")
    q.add_argument("--host", help="the device's IP address (default: found by discovery)")
    common(q, paired=True)
    q.set_defaults(func=_command)
    q = lsub.add_parser("state", help="a paired device's role, services and state")
    q.add_argument("device")
    q.add_argument("--host", help="the device's IP address (default: found by discovery)")
    common(q, paired=True)
    q.set_defaults(func=_state)
