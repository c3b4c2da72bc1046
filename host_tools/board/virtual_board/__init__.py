"""A virtual board that stock `mpremote` drives as if it were a MicroPython board on USB (MIT licence).

The endpoint is a serial line: a pty (/dev/pts/N) and/or a raw TCP socket
(pyserial's `socket://127.0.0.1:PORT`), one client at a time on each; both see
the same board. Behind it the real MicroPython unix port runs one process per
"boot" (power-on, reset, soft reset, deep-sleep wake), so every boot starts with
a fresh heap, as a chip does. This package plays the chip's ROM and REPL:

  * the friendly REPL (banner, `>>> `, line editing, history, Ctrl-E paste mode),
    Ctrl-C to interrupt running code (sent to the interpreter as SIGINT);
  * the raw REPL byte for byte as shared/runtime/pyexec.c speaks it: Ctrl-A
    enters ("raw REPL; CTRL-B to exit\\r\\n>"), code ends with Ctrl-D and gets
    "OK", its output, "\\x04", the traceback, "\\x04", ">"; Ctrl-D on an empty
    buffer is a soft reboot ("OK\\r\\nMPY: soft reboot\\r\\n" and the banner again);
    raw-paste mode (Ctrl-E "A" Ctrl-A) with its window flow control;
  * boot.py then main.py at every boot (main.py only in friendly mode and after
    a boot.py that did not fail); SystemExit is a soft reboot, as on a board;
  * the board's flash is a host directory (`root`), mounted as the interpreter's
    `/` (vfs.VfsPosix), with sys.path ['', '.frozen', '/lib'] as on a board, so
    `mpremote fs ...` and `mpremote mip install` put files where a board has them;
  * `machine` (boards/virtual/machine_board.py): pins on the peripheral models of
    boards/virtual (kept here, on the wall clock, across every reset), RTC and its
    memory, reset causes, deep sleep (the interpreter ends; it boots again after
    the sleep with DEEPSLEEP_RESET), watchdog, unique_id.

Output is "cooked" as a board's is: text's "\\n" leaves as "\\r\\n", sys.stdout.buffer's
bytes leave untouched (so `mpremote mount` and binary streams work).

Where it differs from a chip: a deep sleep or reset during a host's raw-REPL exec
ends that exec ("\\x04\\x04") so mpremote returns instead of hanging; while asleep
the board hears nothing. The pty is the fast endpoint: mpremote polls a socket
every 10 ms and pyserial sleeps 0.3 s when it closes one; `mpremote repl` needs
the pty (its console selects on a file descriptor a socket:// port lacks).
Output nobody reads on the pty is lost, as a board's on a USB port nobody has open:
past what the kernel buffers (pyserial flushes that when it opens the port), it is
dropped once the pty has taken nothing for half a second (MicroPython's USB CDC TX
timeout), so a pty client never gets what was printed before it came (another
client's raw-REPL session, say). A reader that reads gets all of it.
Debug trace of the line and the boots on stderr: VBOARD_DEBUG=1.

Python API:  with VirtualBoardServer("esp32", "thermostat", root, pty=True) as vb:
                 vb.url, vb.pty_path, vb.board (the models; hold vb.lock)
Command line: python -m host_tools.board.virtual_board --chip esp32 --role thermostat --root DIR [--pty]
"""
from __future__ import annotations

# The parts, each in its own module:
#   server.py          VirtualBoardServer: the event loop, boots, resets, deep sleep, Ctrl-C
#   serial_line.py     the TCP socket and pty endpoints
#   interpreter.py     the unix port process of each boot, and finding it
#   vboard_boot.py     the boot script that runs inside that interpreter (MicroPython)
#   repl.py            the friendly REPL, raw REPL and raw-paste mode
#   line_discipline.py the cooking of output ("\n" -> "\r\n", raw bytes untouched)
#   peripherals.py     pins, 1-Wire and UART on the role's models
#   chips.py           the chips, roles, reset causes, pin maps and models
#   cli.py             the command line
from .chips import (CHIPS, DEEPSLEEP_RESET, HAL_CAUSES, HARD_RESET, PWRON_RESET, ROLES,
                    SOFT_RESET, WDT_RESET, make_models)
from .cli import main
from .interpreter import find_micropython, micropython_version
from .line_discipline import RAW_MARK as _RAW_MARK, Output as _Output  # noqa: F401 (tests)
from .serial_line import PTY_STALL as _PTY_STALL  # noqa: F401 (tests)
from .server import VirtualBoardServer

__all__ = ["CHIPS", "DEEPSLEEP_RESET", "HAL_CAUSES", "HARD_RESET", "PWRON_RESET", "ROLES",
           "SOFT_RESET", "WDT_RESET", "VirtualBoardServer", "find_micropython", "main",
           "make_models", "micropython_version"]
