"""The virtual board (host_tools/board/virtual_board/) driven by the stock mpremote CLI.

Every test talks to a VirtualBoardServer through the real `mpremote` (a
subprocess, as a person would run it) over socket:// or the pty, and checks
what a board would do: the REPL's bytes, the filesystem under the board's root,
resets and what they keep, deep sleep, the watchdog, pins on the models. Each
server's interpreter processes must be gone once it stops.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import select
import signal
import socket
import subprocess
import sys
import termios
import time
from contextlib import contextmanager
from pathlib import Path

import pytest

from conftest import ROOT

from host_tools.board.virtual_board import (_PTY_STALL, DEEPSLEEP_RESET, HARD_RESET, SOFT_RESET,
                                      WDT_RESET, VirtualBoardServer)

MPREMOTE = Path(sys.executable).parent / "mpremote"
pytestmark = pytest.mark.skipif(not MPREMOTE.exists(), reason="mpremote is not installed")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@contextmanager
def serve(root: Path, chip: str = "esp32", role: str = "thermostat", **kw):
    vb = VirtualBoardServer(chip, role, root, **kw).start()
    try:
        yield vb
    finally:
        vb.stop()
    left = [pid for pid in vb.pids if _alive(pid)]
    assert vb.pids and not left, f"interpreters left running: {left}"


@pytest.fixture
def board(tmp_path):
    with serve(tmp_path / "flash", pty=True) as vb:
        yield vb


def mp(device: str, *args: str, check: bool = True, timeout: float = 30) -> str:
    """Run `mpremote connect DEVICE ARGS...`; its stdout (and stderr when it fails)."""
    r = subprocess.run([str(MPREMOTE), "connect", device, *args], capture_output=True,
                       text=True, timeout=timeout)
    if check:
        assert r.returncode == 0, f"mpremote {' '.join(args)} -> {r.returncode}\n{r.stdout}{r.stderr}"
        return r.stdout
    return r.stdout + r.stderr


def wait_for(cond, timeout: float = 10.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(0.02)
    return False


# ---------------------------------------------------------------------------


@pytest.mark.timeout(60)
def test_exec_eval_and_run_over_socket_and_pty(board, tmp_path):
    assert board.url.startswith("socket://127.0.0.1:")
    assert board.pty_path.startswith("/dev/")
    assert mp(board.url, "exec", "print(1+1)").strip() == "2"
    assert mp(board.pty_path, "exec", "print(6*7)").strip() == "42"
    assert mp(board.url, "eval", "1+2").strip() == "3"

    script = tmp_path / "script.py"
    script.write_text("import sys\nfor i in range(3):\n    print('line', i)\nprint(sys.path)\n")
    out = mp(board.pty_path, "run", str(script)).splitlines()
    assert out[:3] == ["line 0", "line 1", "line 2"]
    assert out[3] == "['', '.frozen', '/lib']"  # a board's path, so mip finds /lib

    bad = tmp_path / "bad.py"
    bad.write_text("x = 1\n\ndef f():\n    return 1 / 0\n\nf()\n")
    out = mp(board.url, "run", str(bad), check=False)
    assert "ZeroDivisionError: divide by zero" in out
    assert 'File "<stdin>", line 6, in <module>' in out
    assert "vboard_boot" not in out  # the board's own machinery stays out of tracebacks


@pytest.mark.timeout(60)
def test_fs_copy_in_and_out_list_cat_hash_mkdir_rm(board, tmp_path):
    flash = board.root
    data = bytes(range(256)) * 12  # every byte value, more than one raw-paste window
    src = tmp_path / "data.bin"
    src.write_bytes(data)
    text = tmp_path / "hello.py"
    text.write_text("print('hello')\n")
    out = mp(board.url, "fs", "cp", str(src), ":data.bin", "+", "fs", "mkdir", ":sub", "+",
             "fs", "cp", str(text), ":/sub/hello.py", "+", "fs", "ls", ":")
    assert (flash / "data.bin").read_bytes() == data
    assert (flash / "sub" / "hello.py").read_text() == "print('hello')\n"  # "/" is the root
    assert "        3072 data.bin" in out and "sub/" in out

    back = tmp_path / "back.bin"
    out = mp(board.pty_path, "fs", "cp", ":data.bin", str(back), "+", "fs", "cat", ":sub/hello.py",
             "+", "fs", "sha256sum", ":data.bin")
    assert back.read_bytes() == data
    assert "print('hello')" in out
    assert hashlib.sha256(data).hexdigest() in out

    mp(board.url, "fs", "rm", ":data.bin", "+", "fs", "rm", ":sub/hello.py", "+", "fs", "rmdir", ":sub")
    assert not (flash / "data.bin").exists() and not (flash / "sub").exists()
    out = mp(board.url, "df")
    assert "2097152" in out  # the ESP32 image's 2 MB filesystem, not the host's disk


def _open_pty(path: str) -> int:
    """Open the board's pty as pyserial does: the input the kernel holds is flushed."""
    fd = os.open(path, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
    termios.tcflush(fd, termios.TCIFLUSH)
    return fd


def _read_for(fd: int, seconds: float) -> bytes:
    out = bytearray()
    end = time.monotonic() + seconds
    while (left := end - time.monotonic()) > 0:
        if select.select([fd], [], [], left)[0]:
            out += os.read(fd, 65536)
    return bytes(out)


@pytest.mark.timeout(60)
def test_pty_output_nobody_reads_is_lost_as_on_a_board(board):
    """What the board printed while no one read the pty (here another client's 250 KB raw-REPL
    session over TCP) is gone, as a board's USB output is: the next pty client gets only
    fresh bytes, and mpremote does not wade through the old ones."""
    out = mp(board.url, "exec", "for i in range(2500): print('y' * 99)")
    assert out.splitlines() == ["y" * 99] * 2500
    time.sleep(_PTY_STALL + 0.2)  # mpremote's own exit takes longer; made sure of here
    fd = _open_pty(board.pty_path)
    try:
        stale = _read_for(fd, 0.5)
    finally:
        os.close(fd)
    assert len(stale) <= 4096, f"{len(stale)} stale bytes reach a new pty client: {stale[:60]!r}"

    t0 = time.monotonic()
    assert mp(board.pty_path, "exec", "print(1)") == "1\n"
    took = time.monotonic() - t0
    assert took < 2.5, f"mpremote over the pty took {took:.1f} s"


@pytest.mark.timeout(60)
def test_a_pty_reader_that_lags_still_gets_all_the_output(board):
    """Output while a client reads the pty arrives in full, even when it reads late and
    slowly: ~200 KB, far more than the kernel buffers for a pty."""
    n = 2000
    assert board.wait_idle()
    fd = _open_pty(board.pty_path)
    buf = bytearray()
    try:
        os.write(fd, b"for i in range(%d): print('%%04d' %% i + 'z' * 95)\r\r" % n)
        time.sleep(_PTY_STALL / 2)  # not reading for a while: the output waits
        last = b"%04d" % (n - 1) + b"z" * 95 + b"\r\n>>> "
        end = time.monotonic() + 20
        while last not in buf and time.monotonic() < end:
            if select.select([fd], [], [], 0.5)[0]:
                buf += os.read(fd, 4096)
                time.sleep(0.001)  # a slow reader
    finally:
        os.close(fd)
    got = [int(i) for i in re.findall(rb"(\d{4})z{95}\r\n", buf)]
    assert got == list(range(n)), f"{len(got)} of {n} lines: {bytes(buf[:200])!r}"


@pytest.mark.timeout(60)
def test_state_lives_within_a_boot_and_reset_clears_it_but_not_the_files(board):
    # `resume` skips mpremote's soft reset, so globals survive from one command to the next
    mp(board.url, "resume", "exec", "x = 41\nimport machine\nmachine.RTC().memory(b'kept?')")
    assert mp(board.url, "resume", "exec", "print(x + 1)").strip() == "42"
    mp(board.url, "fs", "cp", str(ROOT / "firmware" / "role.py"), ":role.py")
    boots = board.boots

    mp(board.url, "reset")  # machine.reset() after 100 ms, without waiting for it
    assert wait_for(lambda: board.boots > boots and board.running is None)
    assert board.reset_cause == HARD_RESET
    out = mp(board.url, "resume", "exec",
             "import machine\nprint('x' in globals(), machine.reset_cause(), machine.RTC().memory())")
    assert out.split() == ["False", str(HARD_RESET), "b''"]  # a hard reset loses RTC memory
    assert (board.root / "role.py").exists()


@pytest.mark.timeout(60)
def test_soft_reset_gives_a_fresh_interpreter(board):
    mp(board.url, "resume", "exec", "y = 1\nimport machine\nmachine.RTC().memory(b'rtc')")
    pids = len(board.pids)
    mp(board.url, "soft-reset")
    assert len(board.pids) == pids + 1  # a new process: a fresh heap, as after a soft reset
    out = mp(board.url, "resume", "exec",
             "import machine\nprint('y' in globals(), machine.reset_cause() == machine.SOFT_RESET,"
             " machine.RTC().memory())")
    assert out.split() == ["False", "True", "b'rtc'"]


@pytest.mark.timeout(60)
def test_boot_py_and_a_main_py_that_loops_forever(board, tmp_path):
    (tmp_path / "boot.py").write_text("with open('boot.log', 'a') as f:\n    f.write('boot\\n')\n")
    (tmp_path / "main.py").write_text("n = 0\nwhile True:\n    n += 1\n")
    mp(board.url, "fs", "cp", str(tmp_path / "boot.py"), ":boot.py", "+",
       "fs", "cp", str(tmp_path / "main.py"), ":main.py")
    mp(board.url, "reset")
    assert wait_for(lambda: board.reset_cause == HARD_RESET and board.running == "main.py")
    time.sleep(0.2)
    assert board.running == "main.py"  # it runs forever...

    # ... until mpremote's Ctrl-C; its globals are still there (no soft reset with `resume`)
    assert mp(board.url, "resume", "exec", "print(n > 1000)", timeout=20).strip() == "True"
    # boot.py ran at the soft reset that `mpremote reset` starts with, then after the
    # reset, and now at this soft reset: in the raw REPL that runs boot.py, not main.py
    out = mp(board.url, "exec", "print(open('boot.log').read().count('boot'), 'n' in globals())")
    assert out.split() == ["3", "False"]


@pytest.mark.timeout(60)
def test_mip_install_of_a_local_package_writes_under_lib(board, tmp_path):
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "init.py").write_text("from .util import VALUE\n")
    (pkg / "util.py").write_text("VALUE = 'from tinypkg'\n")
    (pkg / "package.json").write_text(json.dumps({
        "urls": [["tinypkg/__init__.py", "init.py"], ["tinypkg/util.py", "util.py"]],
        "version": "1.0"}))
    out = mp(board.url, "mip", "install", str(pkg / "package.json"))
    assert "Done" in out
    assert (board.root / "lib" / "tinypkg" / "util.py").read_text() == "VALUE = 'from tinypkg'\n"
    assert mp(board.url, "exec", "import tinypkg\nprint(tinypkg.VALUE)").strip() == "from tinypkg"


@pytest.mark.timeout(60)
def test_files_persist_across_server_restarts(tmp_path):
    root = tmp_path / "flash"
    with serve(root) as vb:
        mp(vb.url, "exec", "import machine\nmachine.RTC().memory(b'x')\n"
                           "with open('/keep.txt', 'w') as f:\n f.write('still here')")
    with serve(root, chip="rp2040") as vb:  # power off and on (another chip, same flash)
        out = mp(vb.url, "fs", "cat", ":keep.txt", "+", "exec",
                 "import machine\nprint(machine.RTC().memory())")
    assert out == "still hereb''\n"  # the file is there; RTC memory did not outlive the power cut


@pytest.mark.timeout(60)
def test_deep_sleep_keeps_rtc_memory_esp32(board):
    t0 = time.monotonic()
    mp(board.url, "exec", "import machine; machine.RTC().memory(b'abc'); machine.deepsleep(500)")
    assert time.monotonic() - t0 < 10  # mpremote returns: the exec ends as the chip sleeps
    assert wait_for(lambda: board.reset_cause == DEEPSLEEP_RESET, 5)
    assert time.monotonic() - t0 >= 0.5
    out = mp(board.url, "resume", "exec", "import machine; print(machine.reset_cause()"
                                          "==machine.DEEPSLEEP_RESET, machine.RTC().memory())")
    assert out.split() == ["True", "b'abc'"]
    # an ESP32 reports SOFT_RESET after mpremote's own soft reset; the memory stays
    out = mp(board.url, "exec", "import machine; print(machine.reset_cause(), machine.RTC().memory())")
    assert out.split() == [str(SOFT_RESET), "b'abc'"]


@pytest.mark.timeout(60)
def test_deep_sleep_keeps_rtc_memory_rp2040(tmp_path):
    with serve(tmp_path / "flash", chip="rp2040") as vb:
        out = mp(vb.url, "exec", "import os; print(os.uname().machine)")
        assert out.strip() == "Raspberry Pi Pico W (virtual) with RP2040"
        mp(vb.url, "exec", "import machine; machine.RTC().memory(b'abc'); machine.deepsleep(500)")
        time.sleep(1.0)
        # rp2's reset cause is the chip's: a soft reset does not change it
        out = mp(vb.url, "exec", "import machine; print(machine.reset_cause()==machine.DEEPSLEEP_RESET,"
                                 " machine.RTC().memory())")
        assert out.split() == ["True", "b'abc'"]


@pytest.mark.timeout(60)
def test_pins_sensors_and_watchdog_on_the_models(board):
    # ESP32-DevKitC thermostat: heat relay on GPIO26 (active low), window on 33, DS18B20 on 4
    mp(board.url, "resume", "exec", "import machine\nheat = machine.Pin(26, machine.Pin.OUT, value=0)")
    with board.lock:
        assert board.board.relay("heat").on is True
        board.board.model.open_window(600)
    out = mp(board.url, "resume", "exec",
             "import onewire, ds18x20\nw = machine.Pin(33, machine.Pin.IN, machine.Pin.PULL_UP)\n"
             "ds = ds18x20.DS18X20(onewire.OneWire(machine.Pin(4)))\nrom = ds.scan()[0]\n"
             "ds.convert_temp()\nprint(w.value(), ds.read_temp(rom))\nheat.value(1)")
    window, temp = out.split()
    with board.lock:
        assert board.board.relay("heat").on is False
        assert abs(float(temp) - board.board.temperature("room")) < 0.5
    assert window == "1"

    # a watchdog nobody feeds resets the board; it kept running through mpremote's soft reset
    mp(board.url, "exec", "import machine\nmachine.WDT(timeout=300)")
    assert wait_for(lambda: board.reset_cause == WDT_RESET, 5)
    out = mp(board.url, "resume", "exec", "import machine\nprint(machine.reset_cause())")
    assert out.strip() == str(WDT_RESET)


@pytest.mark.timeout(60)
def test_the_repl_bytes_as_a_board_sends_them(board):
    host, port = board.url[len("socket://"):].split(":")
    s = socket.create_connection((host, int(port)), timeout=5)
    pending = [b""]

    def until(marker: bytes) -> bytes:
        buf = pending[0]
        while marker not in buf:
            chunk = s.recv(65536)
            assert chunk, buf
            buf += chunk
        i = buf.index(marker) + len(marker)
        pending[0] = buf[i:]
        return buf[:i]

    def take(n: int) -> bytes:
        buf = pending[0]
        while len(buf) < n:
            chunk = s.recv(65536)
            assert chunk, buf
            buf += chunk
        pending[0] = buf[n:]
        return buf[:n]

    try:
        # one client at a time, as a serial port
        other = socket.create_connection((host, int(port)), timeout=5)
        assert other.recv(10) == b""
        other.close()

        s.sendall(b"\x02")
        assert until(b">>> ").endswith(
            b"ESP32 module (virtual) with ESP32\r\nType \"help()\" for more information.\r\n>>> ")
        s.sendall(b"1+1\r")
        assert until(b">>> ") == b"1+1\r\n2\r\n>>> "
        s.sendall(b"\x01")
        assert until(b">") == b"\r\nraw REPL; CTRL-B to exit\r\n>"
        s.sendall(b"print('hi')\x04")
        assert until(b"\x04>") == b"OKhi\r\n\x04\x04>"
        s.sendall(b"1/0\x04")
        assert until(b"\x04>") == (b"OK\x04Traceback (most recent call last):\r\n"
                                   b"  File \"<stdin>\", line 1, in <module>\r\n"
                                   b"ZeroDivisionError: divide by zero\r\n\x04>")
        s.sendall(b"\x05A\x01")  # raw-paste: accepted, a window size, one window's credit
        assert take(5) == b"R\x01" + (1024).to_bytes(2, "little") + b"\x01"
        s.sendall(b"print('pasted')\x04")
        assert until(b"\x04>").endswith(b"\x04pasted\r\n\x04\x04>")
        s.sendall(b"\x04")  # Ctrl-D on an empty line: soft reboot
        assert until(b"raw REPL; CTRL-B to exit\r\n>").endswith(
            b"OK\r\nMPY: soft reboot\r\nraw REPL; CTRL-B to exit\r\n>")
    finally:
        s.close()


@pytest.mark.timeout(60)
def test_text_is_cooked_buffer_bytes_are_not_and_mount_works(board, tmp_path):
    r = subprocess.run([str(MPREMOTE), "connect", board.url, "exec",
                        "import sys\nsys.stdout.buffer.write(b'1\\n2')\nprint('3')"],
                       capture_output=True, timeout=30)
    assert r.stdout == b"1\n23\r\n"  # print's newline as a board sends it, raw bytes as they are
    local = tmp_path / "local"
    local.mkdir()
    (local / "mod.py").write_text("VALUE = 'mounted'\n")
    out = mp(board.url, "mount", str(local), "exec",
             "import mod\nprint(mod.VALUE)\nwith open('/remote/out.bin', 'wb') as f:\n"
             " f.write(bytes(range(256)))")
    assert out.splitlines()[-1] == "mounted"
    assert (local / "out.bin").read_bytes() == bytes(range(256))


def test_output_decoder_survives_any_split():
    from host_tools.board.virtual_board import _RAW_MARK, _Output

    stream = (b"a\nb" + _RAW_MARK + (3).to_bytes(4, "little") + b"x\ny" + b"\x1bc\n"
              + _RAW_MARK + (0).to_bytes(4, "little") + b"end\x1b")
    want = b"a\r\nbx\ny\x1bc\r\nend\x1b"
    for cut in range(len(stream) + 1):
        for cut2 in range(cut, len(stream) + 1):
            o = _Output()
            got = o.feed(stream[:cut]) + o.feed(stream[cut:cut2]) + o.feed(stream[cut2:]) + o.flush()
            assert got == want, (cut, cut2, got)


@pytest.mark.timeout(60)
def test_cli_prints_its_endpoints_and_leaves_nothing_on_sigterm(tmp_path):
    root = tmp_path / "cli-flash"
    proc = subprocess.Popen([sys.executable, "-m", "host_tools.board.virtual_board", "--chip", "esp32",
                             "--role", "heat_pump", "--root", str(root), "--pty"],
                            cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        url = proc.stdout.readline().strip()
        pty = proc.stdout.readline().strip()
        assert url.startswith("socket://127.0.0.1:") and pty.startswith("/dev/")
        assert mp(url, "exec", "print('via tcp')").strip() == "via tcp"
        assert mp(pty, "exec", "print('via pty')").strip() == "via pty"
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == 0
    left = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                cmd = (d / "cmdline").read_bytes()
            except OSError:
                continue
            if str(root).encode() in cmd:
                left.append(d.name)
    assert not left, f"processes left behind: {left}"
