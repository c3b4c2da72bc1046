"""The command line: python -m host_tools.board.virtual_board --chip esp32 --role thermostat --root DIR [--pty]
serves one board until SIGTERM or Ctrl-C, after printing its endpoints."""
from __future__ import annotations

import argparse
import signal
import threading

from .chips import CHIPS, ROLES
from .server import VirtualBoardServer


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m host_tools.board.virtual_board",
        description="Serve a virtual MicroPython board (the unix port behind a raw REPL) "
                    "that stock mpremote can drive: mpremote connect URL fs ls")
    ap.add_argument("--chip", choices=sorted(CHIPS), default="esp32", help="the chip it plays")
    ap.add_argument("--role", choices=ROLES, default="thermostat",
                    help="the peripheral models behind its pins (boards/virtual)")
    ap.add_argument("--root", required=True, help="the board's flash: a directory, kept across runs")
    ap.add_argument("--port", type=int, default=0, help="TCP port on 127.0.0.1 (0: any free one)")
    ap.add_argument("--no-tcp", action="store_true", help="no TCP endpoint")
    ap.add_argument("--pty", action="store_true", help="also serve a pseudo-terminal (/dev/pts/N)")
    ap.add_argument("--host", default="127.0.0.1", help="address to listen on")
    ap.add_argument("--seed", type=int, default=1, help="the peripheral models' seed")
    ap.add_argument("--heap", help="the interpreter's heap, e.g. 256k (default: the unix port's)")
    args = ap.parse_args(argv)
    if args.no_tcp and not args.pty:
        ap.error("--no-tcp needs --pty")
    done = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: done.set())
    vb = VirtualBoardServer(args.chip, args.role, args.root, None if args.no_tcp else args.port,
                            args.pty, host=args.host, seed=args.seed, heap=args.heap)
    with vb:
        for endpoint in (vb.url, vb.pty_path):
            if endpoint:
                print(endpoint, flush=True)
        while not done.wait(0.5):
            pass
    return 0
