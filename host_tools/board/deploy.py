"""`spot deploy`: the built firmware, board file, config and keys onto a board; only what changed.

    spot deploy --port /dev/ttyUSB0 --role thermostat --device-dir dev1001 --broker 192.168.1.2:1883
    spot deploy --port socket://127.0.0.1:50001 --role smart_plug --broker 127.0.0.1:1883

Everything goes through stock mpremote (`python -m mpremote`), so --port is whatever
its `connect` takes: a serial port, a pty, socket://HOST:PORT. One `exec` asks the
board for its .mpy version and architecture, what it is (os.uname), its free space,
whether it can write its filesystem (a probe file made and removed), the device it
already is, and the sha256 of every file this deploy would write.
Only when every check passes does a second mpremote run (its commands chained with
`+`) create the folders and write the files that differ. A refused deploy leaves
the board as it was.

Files travel as base64 in `exec` commands of up to 4 KB each, not through `fs cp`
(which sends 256 bytes per raw-REPL round trip: 30 s instead of 2 s for the whole
tree on a virtual board). Each file lands as NAME.new, is hashed on the board and
only then renamed over NAME: an interrupted or damaged copy never replaces a good
file, and the next deploy sends what is still missing. A NAME.py that would hide
NAME.mpy is removed only once NAME.mpy is in place (an old device's journal.json
once the new identity and keys are). A board that stops answering mid-copy is given
up on at a deadline, not waited for.

On the board (paths relative to the working directory: "/" on a board, the root
folder of a virtual board), the build tree's layout as is:

    main.py                 boots device.main()
    device.mpy node.mpy role.mpy thermostat.mpy hal.mpy ...   the firmware
    spot/*.mpy              the SPOT library (import spot.cbor, ...)
    umqtt/simple.mpy        micropython-lib's MQTT client
    board.py                the board's pin map: boards/esp32_devkitc or rp2040_picow
                            (a plain unix port: boards/virtual/board.py + models.py)
    config.json             written by this command (firmware/device.py's format)
    identity.json keys.json from `spot provision --out DIR` (--device-dir)

MicroPython searches '' (the working directory) first, so these win over anything
frozen into the firmware. A device that has changed its own keys.json since it was
provisioned (pairing, rotation) keeps it: the folder's copy is older.
"""
from __future__ import annotations

import argparse
import base64
import errno
import hashlib
import json
import math
import queue
import re
import shlex
import signal
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from host_tools.board import build

ROOT = build.ROOT
BOARDS = ROOT / "boards"
ROLES = ("thermostat", "smart_plug", "heat_pump")
TARGETS = sorted(build.TARGETS)  # esp32, esp32c3, esp32c6, esp32s3, rp2040, rp2350, unix
DEVICE_FILES = ("identity.json", "keys.json")
BOARD_FILES = ("board.py", "models.py")  # asked about whichever board files are chosen
CONFIG = "config.json"
DEFAULT_WAKE_MS = 60000
CHUNK = 4096  # raw bytes per exec: its base64 and the decoded copy fit a small heap

# sys.implementation._mpy: bits 0-7 the .mpy version, 8-9 the sub-version (native
# code), 10-13 the native architecture (MicroPython's py/persistentcode.h).
ARCH_NAMES = ("none", "x86", "x64", "armv6", "armv6m", "armv7m", "armv7em", "armv7emsp",
              "armv7emdp", "xtensa", "xtensawin", "rv32imc", "rv64imc")
_ARM_THUMB = range(4, 9)  # armv6m..armv7emdp: a board loads Thumb code up to its own level
# What a board's native architecture says it is: the target to deploy for it.
TARGET_FOR_ARCH = {2: "unix", 4: "rp2040", 5: "rp2350", 6: "rp2350", 7: "rp2350", 8: "rp2350",
                   10: "esp32", 11: "esp32c3"}
# What os.uname().sysname says: the board directory whose pin map it gets.
BOARD_FOR_SYSNAME = {"esp32": "esp32_devkitc", "rp2": "rp2040_picow"}


from host_tools.board.refusal import Refused  # noqa: E402 (callers also use it from here)


# --- what goes on the board ------------------------------------------------------------

@dataclass
class LocalFile:
    remote: str  # relative to the board's working directory
    path: Path
    size: int = 0
    sha256: str = ""

    def __post_init__(self) -> None:
        data = self.path.read_bytes()
        self.size = len(data)
        self.sha256 = hashlib.sha256(data).hexdigest()


def board_dir(target: str, sysname: str | None = None) -> str:
    """The boards/ directory for a board: by what it says it is, else by the target."""
    if sysname in BOARD_FOR_SYSNAME:
        return BOARD_FOR_SYSNAME[sysname]
    if target == "unix":
        return "virtual"
    return "rp2040_picow" if target.startswith("rp") else "esp32_devkitc"


def default_board_files(target: str, sysname: str | None = None) -> list[Path]:
    d = BOARDS / board_dir(target, sysname)
    return [d / name for name in BOARD_FILES if (d / name).exists()]


def tree_files(arch: str) -> list[tuple[str, Path]]:
    """The build tree for arch as (remote path, local path), built or refreshed first."""
    if not build.UMQTT.exists():
        raise Refused(f"{build.UMQTT.relative_to(ROOT)} is missing: run `make setup` "
                      f"(or `python -m host_tools.board.fetch_umqtt`) to fetch umqtt.simple")
    try:
        outs = build.build_all([arch])[arch]
    except FileNotFoundError as e:
        raise Refused(f"could not build the {arch} tree: {e.filename} not found; "
                      f"run `make setup` (it installs mpy-cross)") from None
    tree = build.BUILD / "mpy" / arch
    return sorted((p.relative_to(tree).as_posix(), p) for p in outs)


def image_files(arch: str, role: str) -> list[tuple[str, Path]]:
    """One role's image (build.build_role) as (remote path, local path), built first."""
    if not build.UMQTT.exists():
        tree_files(arch)  # refuses, saying how to fetch umqtt.simple
    try:
        outs = build.build_role(arch, role)
    except FileNotFoundError as e:
        raise Refused(f"could not build the {role} image for {arch}: {e.filename} not found; "
                      f"run `make setup` (it installs mpy-cross)") from None
    image = build.role_image_dir(arch, role)
    return sorted((p.relative_to(image).as_posix(), p) for p in outs)


def tree_names() -> list[str]:
    """The board paths of the build tree (the same for every architecture), as
    build.build_arch lays them out, known before anything is built."""
    names = [src.relative_to(build.LIB).with_suffix(".mpy").as_posix()
             for src in build.device_sources()]
    names += [src.relative_to(build.FIRMWARE).with_suffix(".mpy").as_posix()
              for src in build.firmware_sources()]
    names += ["umqtt/simple.mpy", "main.py"]
    return sorted(names)


def _check_name(remote: str) -> None:
    if not re.fullmatch(r"[\w.-]+(/[\w.-]+)*", remote):
        raise Refused(f"cannot deploy a file named {remote!r}: use letters, digits, . _ -")


def config_for(role: str | None, broker: str, wake_ms: int, board: dict, settings: dict) -> dict:
    """config.json as firmware/device.py reads it; "dir" "." is the board's working folder."""
    host, port = parse_broker(broker)
    cfg: dict = {"dir": ".", "broker": {"host": host, "port": port}, "wake_ms": wake_ms,
                 "stdin_stop": False}
    if role:
        cfg["role"] = role
        cfg["board"] = dict(board)
    cfg.update(settings)
    return cfg


def parse_broker(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise Refused(f"--broker {text!r} is not HOST:PORT (e.g. 192.168.1.2:1883)")
    return host.strip("[]"), int(port)


def parse_assignments(items: list[str] | None, what: str) -> dict:
    """KEY=VALUE pairs, each VALUE JSON if it parses (1, true, "x", [1,2]) else a string."""
    out: dict = {}
    for item in items or ():
        key, sep, value = item.partition("=")
        if not sep or not re.fullmatch(r"[A-Za-z_]\w*", key):
            raise Refused(f"{what} {item!r} is not KEY=VALUE")
        try:
            out[key] = json.loads(value)
        except ValueError:
            out[key] = value
    return out


# --- asking the board -------------------------------------------------------------------

_QUERY = """\
import sys,os
try:
 import hashlib,binascii
except ImportError:
 hashlib=None
print('spot:mpy',getattr(sys.implementation,'_mpy',-1))
try:
 print('spot:sys',os.uname().sysname)
except Exception:
 print('spot:sys')
try:
 s=os.statvfs('.')
 print('spot:vfs',s[0],s[1],s[4])
except Exception:
 print('spot:vfs')
try:
 f=open(W,'w')
 try:
  f.write('x')
 finally:
  try:
   f.close()
  except OSError:
   pass
  os.remove(W)
 print('spot:rw')
except OSError as e:
 print('spot:rw',e.args[0] if e.args and isinstance(e.args[0],int) else -1)
try:
 import json
 f=open('identity.json')
 print('spot:id',int(json.load(f)['address']))
 f.close()
except Exception:
 print('spot:id')
b=bytearray(1024)
m=memoryview(b)
for p in P:
 try:
  f=open(p,'rb')
 except OSError:
  print('spot:f',p);continue
 h=hashlib.sha256() if hashlib else None
 n=0
 while 1:
  k=f.readinto(b)
  if not k:break
  n+=k
  if h:h.update(m[:k])
 f.close()
 print('spot:f',p,n,binascii.hexlify(h.digest()).decode() if h else '?')
for p in Q:
 try:
  os.stat(p);print('spot:py',p)
 except OSError:pass
"""


@dataclass
class BoardState:
    mpy: int | None = None
    sysname: str | None = None  # os.uname().sysname: esp32, rp2, linux, ...
    vfs: tuple[int, int, int] | None = None  # f_bsize, f_frsize, f_bavail
    address: int | None = None  # the device its identity.json says
    files: dict[str, tuple[int, str]] = field(default_factory=dict)  # path -> (size, sha256)
    shadows: list[str] = field(default_factory=list)  # .py files that would hide our .mpy
    write_errno: int | None = None  # creating a file in its working folder failed with this


def mpremote(port: str, *args: str) -> list[str]:
    return [sys.executable, "-m", "mpremote", "connect", port, *args]


def _mpremote_error(output: str) -> str:
    lines = [ln.strip() for ln in output.splitlines() if ln.strip()]
    if not lines:
        return "no answer"
    last = lines[-1]
    for ln in reversed(lines):  # a traceback's last line, else mpremote's own message
        if ln.startswith("mpremote:") or re.match(r"^(?:\w+\.)*\w+(Error|Exception)\b", ln):
            last = ln
            break
    last = re.sub(r"^(?:\w+\.)+(?=\w+:)", "", last.removeprefix("mpremote: "))  # a module path
    return last.replace(" (it may be in use by another program)", "").rstrip(".")


# Created and removed by the query: can the board write its working folder at all?
PROBE = "_spot_probe.tmp"
# MicroPython's errno numbers are Linux's (py/mperrno.h); these mean "not writable".
_READ_ONLY = {errno.EROFS: "EROFS", errno.EACCES: "EACCES", errno.EPERM: "EPERM"}


def check_writable(write_errno: int | None) -> None:
    """Refuse if the query's probe file could not be created (a full board is left
    to the space check)."""
    if write_errno is None or write_errno == errno.ENOSPC:
        return
    name = errno.errorcode.get(write_errno, f"errno {write_errno}")
    if write_errno in _READ_ONLY:
        raise Refused(f"the board's filesystem is read-only (creating a file in its working "
                      f"folder fails with {name}); check its boot.py does not mount it read-only "
                      f"and no computer holds it as a USB drive, then deploy again")
    raise Refused(f"the board cannot create a file in its working folder ({name}); check its "
                  f"filesystem (`mpremote df`), then deploy again")


def _no_answer(port: str, why: str) -> Refused:
    return Refused(f"the board on {port} does not answer ({why}); check the port, close any "
                   f"other program using it, and press reset if a program holds the REPL")


def query_board(port: str, paths: list[str], shadows: list[str], timeout: float = 60) -> BoardState:
    """One mpremote exec: the board's .mpy ABI, kind, free space, identity and file hashes."""
    script = f"P={paths!r}\nQ={shadows!r}\nW={PROBE!r}\n" + _QUERY
    try:
        res = subprocess.run(mpremote(port, "exec", script), capture_output=True, text=True,
                             errors="replace", timeout=timeout)
    except subprocess.TimeoutExpired:
        raise _no_answer(port, f"nothing within {timeout:g} s") from None
    state = BoardState()
    seen = False
    for line in res.stdout.splitlines():
        parts = line.strip().split()
        if not parts or not parts[0].startswith("spot:"):
            continue
        seen = True
        kind, rest = parts[0], parts[1:]
        if kind == "spot:mpy" and rest:
            state.mpy = int(rest[0]) if int(rest[0]) >= 0 else None
        elif kind == "spot:sys" and rest:
            state.sysname = rest[0]
        elif kind == "spot:vfs" and len(rest) == 3:
            state.vfs = (int(rest[0]), int(rest[1]), int(rest[2]))
        elif kind == "spot:id" and rest:
            state.address = int(rest[0])
        elif kind == "spot:f" and len(rest) == 3:
            state.files[rest[0]] = (int(rest[1]), rest[2])
        elif kind == "spot:py" and rest:
            state.shadows.append(rest[0])
        elif kind == "spot:rw" and rest:
            state.write_errno = int(rest[0])
    if res.returncode or not seen:
        raise _no_answer(port, _mpremote_error(res.stdout + "\n" + res.stderr))
    return state


# --- the checks ---------------------------------------------------------------------------

def mpy_header(path: Path) -> tuple[int, int, int]:
    """(version, sub-version, arch) of a .mpy file; arch 0 = bytecode only."""
    head = path.read_bytes()[:3]
    if len(head) < 3 or head[0] != ord("M"):
        raise Refused(f"{path} is not a .mpy file; rebuild with `spot build`")
    return head[1], head[2] & 3, head[2] >> 2


def arch_name(arch: int) -> str:
    return ARCH_NAMES[arch] if 0 <= arch < len(ARCH_NAMES) else f"arch {arch}"


def check_mpy(board_mpy: int | None, headers: list[tuple[int, int, int]], target: str) -> None:
    """Refuse unless the board's MicroPython can import every one of these .mpy files.

    Bytecode needs the same .mpy version; native code also the same sub-version and
    an architecture the board runs (Thumb code loads on any later ARM level, as in
    MicroPython's MPY_FEATURE_ARCH_TEST)."""
    if board_mpy is None:
        raise Refused("the board's MicroPython is too old to load these .mpy files (it has no "
                      "sys.implementation._mpy); flash a current MicroPython with `spot flash`")
    version, sub, arch = board_mpy & 0xFF, board_mpy >> 8 & 3, board_mpy >> 10 & 0xF
    want = max(h[0] for h in headers)
    if version != want:
        older = version < want
        raise Refused(f"the board's MicroPython loads .mpy v{version}, these are v{want} "
                      f"(the board's firmware is {'older' if older else 'newer'} than mpy-cross "
                      f"here); " + ("flash a current MicroPython with `spot flash`" if older
                                    else "install the mpy-cross matching the board's firmware"))
    for v, s, a in sorted({h for h in headers if h[2]}):
        if s != sub:
            raise Refused(f"the board's MicroPython loads native .mpy v{version}.{sub}, these are "
                          f"v{v}.{s}; flash the MicroPython matching mpy-cross here "
                          f"with `spot flash`")
        ok = (a <= arch) if (a in _ARM_THUMB and arch in _ARM_THUMB) else a == arch
        if not ok:
            hint = TARGET_FOR_ARCH.get(arch)
            raise Refused(f"the board runs {arch_name(arch)} code, the {target} build is "
                          f"{arch_name(a)}; "
                          + (f"deploy with --target {hint}" if hint else
                             "this board cannot run the precompiled hot path"))


def blocks(size: int, block: int) -> int:
    return math.ceil(size / block) if size else 0


def check_space(vfs: tuple[int, int, int] | None, changes: list[tuple[int, int]]) -> int:
    """Bytes of free space the copy needs at its peak, Refused if the board has less.

    changes: (new size, old size) in copy order. Each file is written whole beside
    the one it replaces before that one goes, in whole blocks, plus a block of slack."""
    if vfs is None or not changes:
        return 0
    bsize, frsize, bavail = vfs
    block = max(bsize, frsize, 1)
    free = frsize * bavail
    used = peak = 0
    for new, old in changes:
        peak = max(peak, used + blocks(new, block))  # NAME.new beside NAME
        used += blocks(new, block) - blocks(old, block)
        peak = max(peak, used)
    need = (peak + 1) * block
    if need > free:
        raise Refused(f"the board has {free // 1024} KB free, this deploy needs {need // 1024} KB; "
                      f"remove old files from it (`mpremote fs rm ...`) and try again")
    return need


def _fmt_address(a: int) -> str:
    return f"{a:08x}"


# --- deploying ---------------------------------------------------------------------------

@dataclass
class Plan:
    files: list[LocalFile]
    copy: list[LocalFile]
    kept: list[str]  # device files the board keeps (it has newer ones)
    remove: list[str]  # shadowing .py, an old device's journal
    dirs: list[str]
    need: int


def plan(files: list[LocalFile], board: BoardState, device_address: int | None,
         reprovision: bool, port: str, stale: list[str] = ()) -> Plan:
    """Decide what to copy; every refusal happens here, before the board is touched.
    stale: modules on the board the image does not carry, removed once it is in place."""
    kept: list[str] = []
    remove = list(board.shadows) + [r for r in stale if r not in board.shadows]
    copy = []
    bring_identity = any(f.remote == "identity.json" for f in files)
    if not bring_identity and board.address is None:
        raise Refused(f"the board on {port} holds no device identity; give --device-dir, "
                      f"the folder `spot provision --out DIR` wrote for it")
    other = (device_address is not None and board.address is not None
             and board.address != device_address)
    if other and not reprovision:
        raise Refused(f"the board is device {_fmt_address(board.address)}, the --device-dir is for "
                      f"{_fmt_address(device_address)}; give its own folder, or --reprovision to "
                      f"make it {_fmt_address(device_address)} (its journal is cleared)")
    if other:
        remove.append("journal.json")
    for f in files:
        on_board = board.files.get(f.remote)
        if on_board is not None and on_board[1] == f.sha256:
            continue
        if (f.remote in DEVICE_FILES and on_board is not None and not reprovision
                and board.address == device_address):
            kept.append(f.remote)  # the device changed it (pairing, rotation): its copy is newer
            continue
        copy.append(f)
    if copy or remove:
        check_writable(board.write_errno)
    need = check_space(board.vfs, [(f.size, board.files.get(f.remote, (0, ""))[0]) for f in copy])
    dirs = sorted({"/".join(f.remote.split("/")[:i]) for f in copy
                   for i in range(1, f.remote.count("/") + 1)})
    return Plan(files, copy, kept, remove, dirs, need)


# Defined once per copy run (raw-REPL execs share their globals until a reset).
_WRITER = """\
import os,binascii
try:
 import hashlib
except ImportError:
 hashlib=None
for d in D:
 try:
  os.mkdir(d)
 except OSError:
  pass
def _r(p):
 try:
  os.remove(p)
 except OSError:
  pass
def _w(p,m,s):
 f=open(p+'.new',m)
 n=f.write(binascii.a2b_base64(s))
 f.close()
 print('spot:w',p,n)
def _f(p,h):
 t=p+'.new'
 if hashlib:
  g=hashlib.sha256()
  b=bytearray(1024)
  v=memoryview(b)
  f=open(t,'rb')
  while 1:
   k=f.readinto(b)
   if not k:break
   g.update(v[:k])
  f.close()
  if binascii.hexlify(g.digest()).decode()!=h:
   os.remove(t)
   raise OSError('%s arrived damaged, run the deploy again'%p)
 try:
  os.rename(t,p)
 except OSError:
  os.remove(p)
  os.rename(t,p)
"""


def removal_points(p: Plan) -> dict[str | None, list[str]]:
    """When each of p.remove goes: after the file that replaces it has landed (a shadow
    X.py after X.mpy, an old device's journal.json after its identity and keys), so a
    copy that fails first leaves it there; None: after every file is in place."""
    copying = [f.remote for f in p.copy]
    after: dict[str | None, list[str]] = {}
    for name in p.remove:
        if name.endswith(".py") and name[:-3] + ".mpy" in copying:
            key: str | None = name[:-3] + ".mpy"
        elif name == "journal.json" and any(r in DEVICE_FILES for r in copying):
            key = [r for r in copying if r in DEVICE_FILES][-1]
        else:
            key = None
        after.setdefault(key, []).append(name)
    return after


def write_scripts(p: Plan) -> list[str]:
    """The exec scripts of one copy run: the writer, then up to CHUNK bytes per script."""
    scripts = [f"D={p.dirs!r}\n" + _WRITER]
    after = removal_points(p)
    calls: list[str] = []
    budget = 0
    for f in p.copy:
        data = f.path.read_bytes()
        for off in range(0, max(len(data), 1), CHUNK):
            piece = data[off:off + CHUNK]
            if calls and budget + len(piece) > CHUNK:
                scripts.append("\n".join(calls))
                calls, budget = [], 0
            mode = "wb" if off == 0 else "ab"
            calls.append(f"_w({f.remote!r},{mode!r},{base64.b64encode(piece).decode()!r})")
            budget += len(piece)
        calls.append(f"_f({f.remote!r},{f.sha256!r})")
        calls += [f"_r({name!r})" for name in after.get(f.remote, ())]
    calls += [f"_r({name!r})" for name in after.get(None, ())]
    if calls:
        scripts.append("\n".join(calls))
    return scripts


def copy_command(port: str, p: Plan, reset: bool) -> list[str]:
    """One mpremote run: the writer, then the files, each exec chained with `+`."""
    cmd = mpremote(port)
    for i, script in enumerate(write_scripts(p)):
        cmd += (["+"] if i else []) + ["exec", script]
    if reset:
        cmd += ["+", "reset"]
    return cmd


def run_copy(port: str, p: Plan, reset: bool, console, show: bool, timeout: float) -> None:
    from rich.progress import (BarColumn, DownloadColumn, Progress, TextColumn,
                               TimeRemainingColumn)

    cmd = copy_command(port, p, reset)
    total = sum(f.size for f in p.copy)
    lines: list[str] = []
    progress = Progress(TextColumn("[bold]deploy[/] {task.description:<22}"), BarColumn(),
                        DownloadColumn(), TimeRemainingColumn(), console=console,
                        disable=not show)
    with progress:
        task = progress.add_task("", total=total)

        def seen(line: str) -> None:
            parts = line.split()
            if len(parts) == 3 and parts[0] == "spot:w":
                progress.update(task, advance=int(parts[2]), description=parts[1])

        rc, lines, timed_out = follow(cmd, timeout, seen)
        if rc == 0:
            progress.update(task, completed=total, description=f"{len(p.copy)} files")
    if timed_out:
        raise Refused(f"the board on {port} stopped answering during the copy (nothing more "
                      f"within {timeout:g} s); what was not yet copied is as it was: run the "
                      f"deploy again when it answers")
    if rc:
        if rc < 0:
            why = f"mpremote was killed by {_signal_name(-rc)}"
        else:
            why = _mpremote_error("".join(ln for ln in lines if not ln.startswith("spot:")))
        raise Refused(f"copying to the board on {port} failed ({why}); files not yet copied "
                      f"are as they were: run the deploy again")


def _signal_name(n: int) -> str:
    try:
        return signal.Signals(n).name
    except ValueError:
        return f"signal {n}"


def follow(cmd: list[str], timeout: float, seen) -> tuple[int, list[str], bool]:
    """Run cmd, handing each line of its output to seen() as it comes, for at most timeout
    seconds in all: (return code, the lines, timed out). On the deadline the process is
    killed, even if it has stopped writing mid-line (a board that no longer answers)."""
    try:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                errors="replace", bufsize=1)
    except OSError as e:
        raise Refused(f"could not start mpremote ({e.strerror or e}); run `make setup`") from None
    assert proc.stdout is not None
    out: queue.Queue[str | None] = queue.Queue()

    def pump() -> None:  # the only reader of the pipe; ends at EOF (also when killed)
        assert proc.stdout is not None
        for line in proc.stdout:
            out.put(line)
        out.put(None)

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    deadline = time.monotonic() + timeout
    lines: list[str] = []
    while True:
        try:
            line = out.get(timeout=max(deadline - time.monotonic(), 0))
        except queue.Empty:
            break
        if line is None:  # EOF: the process is ending
            proc.stdout.close()
            try:
                return proc.wait(max(deadline - time.monotonic(), 1)), lines, False
            except subprocess.TimeoutExpired:
                break
        lines.append(line)
        seen(line)
    proc.kill()
    proc.wait()
    reader.join(5)
    if not reader.is_alive():
        proc.stdout.close()
    return proc.returncode, lines, True


def deploy(port: str, target: str | None = None, role: str | None = None,
           board_files: list[Path] | None = None, device_dir: Path | None = None,
           broker: str = "127.0.0.1:1883", wake_ms: int = DEFAULT_WAKE_MS,
           board_options: dict | None = None, settings: dict | None = None,
           reprovision: bool = False, reset: bool = False, dry_run: bool = False,
           show: bool = True) -> dict:
    """Deploy to the board on port and return the figures (files, copied, unchanged,
    kept, bytes, seconds, ...). Refused (exit status 2, one line) before anything is
    written if a check fails."""
    from rich.console import Console

    console = Console(quiet=not show)
    t0 = time.monotonic()
    if role is not None and role not in ROLES:
        raise Refused(f"--role {role!r} is not one of {', '.join(ROLES)}")
    board_options = dict(board_options or {})
    settings = dict(settings or {})
    parse_broker(broker)
    for bf in board_files or ():
        if not bf.is_file():
            raise Refused(f"board file {bf} not found; give --board-file boards/<board>/board.py")
    device: list[tuple[str, Path]] = []
    device_address = None
    if device_dir is not None:
        for name in DEVICE_FILES:
            if not (device_dir / name).is_file():
                raise Refused(f"{device_dir / name} not found; --device-dir is the folder "
                              f"`spot provision --out DIR` wrote")
            device.append((name, device_dir / name))
        try:
            device_address = int(json.loads((device_dir / "identity.json").read_text())["address"])
        except (ValueError, KeyError, TypeError):
            raise Refused(f"{device_dir / 'identity.json'} has no device address; "
                          f"provision the device again with `spot provision`") from None
    for bf in board_files or ():
        _check_name(bf.name)
    # One question to the board, for every file any build would put there.
    names = tree_names()
    ask = sorted(set(names) | set(DEVICE_FILES) | set(BOARD_FILES) | {CONFIG}
                 | {b.name for b in board_files or ()})
    shadows = [r[:-4] + ".py" for r in names if r.endswith(".mpy")]
    board = query_board(port, ask, shadows)
    if target is None:  # the board says what it is
        arch_bits = board.mpy >> 10 & 0xF if board.mpy is not None else None
        if arch_bits not in TARGET_FOR_ARCH:
            check_mpy(board.mpy, [(6, 0, 0)], "unknown")
            raise Refused(f"cannot tell which build the board on {port} needs "
                          f"({arch_name(arch_bits or 0)}); give --target ({', '.join(TARGETS)})")
        target = TARGET_FOR_ARCH[arch_bits]
    if target not in build.TARGETS:
        raise Refused(f"--target {target!r} is not one of {', '.join(TARGETS)}")
    arch = build.TARGETS[target]
    # A role's board gets that role's image alone; a plain node the whole tree.
    pairs = image_files(arch, role) if role else tree_files(arch)
    missed = [r for r, _ in pairs if r not in board.files and r not in ask]
    if missed:  # the build made a file tree_names() did not foresee: ask about it too
        more = query_board(port, missed, [])
        board.files.update(more.files)
    check_mpy(board.mpy, [mpy_header(p) for r, p in pairs if r.endswith(".mpy")], target)
    pairs += device
    if not board_files:
        board_files = default_board_files(target, board.sysname)
        if board_dir(target, board.sysname) == "virtual":
            board_options.setdefault("clock", "wall")  # the models keep the wall's time
    pairs += [(bf.name, bf) for bf in board_files]
    cfg = config_for(role, broker, wake_ms, board_options, settings)
    with tempfile.TemporaryDirectory(prefix="spot-deploy-") as tmp:
        cfg_path = Path(tmp) / CONFIG
        cfg_path.write_text(json.dumps(cfg, indent=1, sort_keys=True) + "\n")
        pairs.append((CONFIG, cfg_path))
        files = [LocalFile(remote, path) for remote, path in pairs]
        # Another role's modules (a board deployed before as something else) go.
        ours = {r for r, _ in pairs}
        stale = [r for r in names if r not in ours and r != "main.py" and r in board.files] \
            if role else []
        p = plan(files, board, device_address, reprovision, port, stale)
        if dry_run:
            for f in p.copy:
                console.print(f"would copy {f.remote} ({f.size} bytes)", markup=False,
                              highlight=False)
            if p.copy or p.remove or reset:
                cmd = copy_command(port, p, reset)
                console.print(f"in one run: {shlex.join(cmd[:5])} exec ... "
                              f"({cmd.count('exec')} execs chained with +)", markup=False,
                              highlight=False)
        elif p.copy or p.remove or reset:
            run_copy(port, p, reset, console, show, timeout=120 + sum(f.size for f in p.copy) / 500)
    seconds = time.monotonic() - t0
    figures = {"target": target, "arch": arch, "board": board.sysname,
               "board_files": [str(b) for b in board_files],
               "files": len(files), "copied": len(p.copy),
               "unchanged": len(files) - len(p.copy) - len(p.kept), "kept": len(p.kept),
               "removed": len(p.remove), "bytes": sum(f.size for f in p.copy),
               "bytes_total": sum(f.size for f in files), "seconds": round(seconds, 3),
               "dry_run": dry_run, "copied_files": [f.remote for f in p.copy]}
    if show:
        _summary(console, port, figures, p)
    return figures


def measure(chip: str = "esp32", role: str = "thermostat") -> dict[str, float]:
    """`make bench`'s figures: a full deploy to a fresh virtual board, then the same
    deploy again (nothing to copy), each timed from the command's start to its end."""
    from host_tools.cloud.registry import Registry
    from host_tools.board.virtual_board import VirtualBoardServer

    with tempfile.TemporaryDirectory(prefix="spot-deploy-bench-") as tmp:
        reg = Registry(Path(tmp) / "registry.json")
        address = reg.provision("bench", 0x7001)
        reg.save()
        reg.write_device_files(address, Path(tmp) / "device")
        with VirtualBoardServer(chip, role, Path(tmp) / "flash") as vb:
            kw = dict(role=role, device_dir=Path(tmp) / "device", broker="127.0.0.1:1883",
                      show=False)
            full = deploy(vb.url, **kw)
            noop = deploy(vb.url, **kw)
    return {"deploy_seconds_full": full["seconds"], "deploy_seconds_noop": noop["seconds"],
            "deploy_files": full["files"], "deploy_bytes": full["bytes"]}


def _summary(console, port: str, figures: dict, p: Plan) -> None:
    from rich.table import Table

    t = Table(min_width=64, title=f"spot deploy -> {port} ({figures['board'] or '?'}, "
                                  f"{figures['target']} build, {figures['arch']})")
    t.add_column("")
    t.add_column("files", justify="right")
    t.add_column("bytes", justify="right")
    t.add_row("would copy" if figures["dry_run"] else "copied", str(figures["copied"]),
              str(figures["bytes"]))
    unchanged = [f for f in p.files if f not in p.copy and f.remote not in p.kept]
    t.add_row("unchanged", str(len(unchanged)), str(sum(f.size for f in unchanged)))
    if p.kept:
        t.add_row("kept (the device's own)", str(len(p.kept)), ", ".join(p.kept))
    if p.remove:
        t.add_row("removed", str(len(p.remove)), ", ".join(p.remove))
    t.add_row("seconds", "", f"{figures['seconds']:.2f}")
    console.print(t)


# --- the command ---------------------------------------------------------------------------

def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "deploy", help="copy the built firmware, board file, config and keys to a board (mpremote)",
        description=textwrap.fill(
            "Put the .mpy build for the board's architecture, its board.py, a config.json and "
            "the device's identity and keys on a board running MicroPython, copying only the "
            "files whose sha256 differs from the board's. The board is checked first (it "
            "answers, its MicroPython loads this .mpy version and architecture, the files fit "
            "its free space); nothing is written if a check fails.", 78),
        epilog="examples:\n"
               "  spot provision --site home --out dev1001\n"
               "  spot deploy --port /dev/ttyUSB0 --role thermostat --device-dir dev1001 \\\n"
               "              --broker 192.168.1.2:1883 --reset\n"
               "  spot deploy --port /dev/ttyACM0 --target rp2040 --role smart_plug "
               "--broker mqtt.local:1883\n"
               "  spot deploy --port socket://127.0.0.1:50001 --role heat_pump \\\n"
               "              --set run_s=600 --broker 127.0.0.1:1883\n"
               "\n"
               "on the board: main.py, the firmware's .mpy, spot/*.mpy, umqtt/simple.mpy, board.py\n"
               "(plain unix port: + models.py), config.json, identity.json, keys.json",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--port", required=True,
                   help="the board, as mpremote connect takes it: /dev/ttyUSB0, COM3, a pty, "
                        "socket://HOST:PORT")
    p.add_argument("--target", choices=TARGETS,
                   help="which build to deploy (esp32 -> xtensawin, rp2040 -> armv6m, unix -> x64, "
                        "...); default: the architecture the board reports")
    p.add_argument("--role", choices=ROLES, help="what the device does (default: a plain node)")
    p.add_argument("--board-file", type=Path, action="append", metavar="PATH",
                   help="a board file to copy (repeat for more); default: by what the board says "
                        "it is, boards/esp32_devkitc/board.py (esp32) or boards/rp2040_picow/"
                        "board.py (rp2), on a plain unix port boards/virtual/board.py and models.py")
    p.add_argument("--device-dir", type=Path, metavar="DIR",
                   help="the device's identity.json and keys.json, from `spot provision --out DIR` "
                        "(needed on a board that has none)")
    p.add_argument("--broker", required=True, metavar="HOST:PORT",
                   help="the MQTT broker the device connects to (as the board reaches it)")
    p.add_argument("--wake-ms", type=int, default=DEFAULT_WAKE_MS, metavar="MS",
                   help=f"time between wakes (default {DEFAULT_WAKE_MS})")
    p.add_argument("--board-option", action="append", metavar="KEY=VALUE",
                   help="an argument for board.make(role, ...), into config.json's \"board\" "
                        "(e.g. meter='{\"current_level\": 1}', seed=3); repeat for more")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", dest="settings",
                   help="any other config.json key (budget_ms, control_ms, run_s, cycles, "
                        "watchdog_ms, ...); VALUE is JSON if it parses; repeat for more")
    p.add_argument("--reprovision", action="store_true",
                   help="replace the board's identity and keys with --device-dir's even if the "
                        "board is another device or has newer keys")
    p.add_argument("--reset", action="store_true",
                   help="reset the board afterwards, so it boots the new firmware")
    p.add_argument("--dry-run", action="store_true",
                   help="check the board and show what would be copied; write nothing")
    p.set_defaults(func=main)
    return p


def main(args: argparse.Namespace) -> int:
    try:
        deploy(args.port, args.target, args.role, args.board_file, args.device_dir, args.broker,
               args.wake_ms, parse_assignments(args.board_option, "--board-option"),
               parse_assignments(args.settings, "--set"), args.reprovision, args.reset,
               args.dry_run)
    except Refused as e:
        print(f"spot deploy: {e.message}", file=sys.stderr)
        raise
    return 0
