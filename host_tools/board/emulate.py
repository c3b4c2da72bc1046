"""spot emulate: virtual boards that stock mpremote drives, until Ctrl-C.

Each board is the MicroPython unix port behind a serial endpoint (TCP, and a
pty with --pty) that behaves like a board's USB REPL: friendly and raw REPL,
soft reboot, a flash directory that persists, a `machine` module with the
board's pins, RTC and deep sleep, and the peripheral models of its role
(host_tools/board/virtual_board/). Deploy to one with `spot deploy --port URL`.

    spot emulate                                   # esp32:thermostat rp2040:smart_plug esp32:heat_pump
    spot emulate --board rp2040:smart_plug --pty
"""
from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path
from typing import Any

DEFAULT = ("esp32:thermostat", "rp2040:smart_plug", "esp32:heat_pump")


def add_parser(sub: Any) -> None:
    p = sub.add_parser("emulate", help="start virtual boards that mpremote and spot deploy drive",
                       description="Start virtual boards (MicroPython unix port behind a REPL "
                                   "endpoint, peripherals modelled) and print their endpoints; "
                                   "runs until Ctrl-C or SIGTERM.")
    p.add_argument("--board", action="append", metavar="CHIP:ROLE",
                   help="a board to start, chip esp32|rp2040, role thermostat|smart_plug|"
                        f"heat_pump (repeatable; default: {' '.join(DEFAULT)})")
    p.add_argument("--root", type=Path, default=Path("build/boards"),
                   help="where the boards' flash directories live (kept between runs; "
                        "default build/boards)")
    p.add_argument("--pty", action="store_true", help="also serve each board on a pty")
    p.add_argument("--port", type=int, default=0,
                   help="TCP port of the first board (the others follow; default: any free)")
    p.set_defaults(func=main)


def start(specs: list[str], root: Path, pty: bool = False, port: int = 0) -> list[Any]:
    """Start a board per CHIP:ROLE; one line (Refused, exit 2) for anything wrong."""
    from host_tools.board.refusal import Refused
    from host_tools.board.virtual_board import VirtualBoardServer

    if port and not 1024 <= port <= 65535 - len(specs):
        raise Refused(f"--port {port} is not a free TCP port number (1024..65535)")
    servers = []
    try:
        for n, spec in enumerate(specs):
            chip, _, role = spec.partition(":")
            if not role:
                raise ValueError(f"--board {spec!r}: give CHIP:ROLE, e.g. esp32:thermostat")
            servers.append(VirtualBoardServer(chip, role, root / f"{n}-{chip}-{role}",
                                              port=port + n if port else 0, pty=pty).start())
    except (OSError, RuntimeError) as e:
        for s in servers:
            s.stop()
        raise Refused(f"cannot start the virtual boards: {e}; pick another --port or --root") \
            from e
    except BaseException:
        for s in servers:
            s.stop()
        raise
    return servers


def main(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from host_tools.board.refusal import Refused

    try:
        servers = start(list(args.board or DEFAULT), args.root, args.pty, args.port)
    except Refused as e:
        print(f"spot emulate: {e.message}", file=sys.stderr)
        raise
    t = Table(title="virtual boards (Ctrl-C stops them)")
    for col in ("board", "role", "mpremote connect", "pty", "flash"):
        t.add_column(col)
    for s in servers:
        t.add_row(f"virtual:{s.chip}", s.role, s.url or "-", s.pty_path or "-", str(s.root))
    Console(width=None if sys.stdout.isatty() else 160).print(t)
    for s in servers:  # one plain line each, for scripts
        print(f"{s.chip} {s.role} {s.url}" + (f" {s.pty_path}" if s.pty_path else ""), flush=True)
    print("e.g.  spot deploy --port " + (servers[0].url or "") + " --role " + servers[0].role +
          " --device-dir DIR --broker 127.0.0.1:1883", flush=True)
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    try:
        done.wait()
    except KeyboardInterrupt:
        pass
    finally:
        for s in servers:
            s.stop()
    return 0
