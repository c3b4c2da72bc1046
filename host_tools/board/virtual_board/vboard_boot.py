# The boot script of a virtual board: the MicroPython side (host_tools/board/virtual_board).
# The server runs it as each boot's interpreter: micropython vboard_boot.py ROOT VDIR CFG CIN COUT.
# It installs `machine`, mounts the board's root as /, then executes what the server sends and
# reports how it ended. Its own frames are cut from tracebacks, so users see what a board would show.
# Messages both ways: b"<kind> <id> <len>\n" + payload.
#   server -> board: F (run a file if it exists), X (exec source), S (REPL line,
#                    "single" mode), R (reply to a call)
#   board -> server: G (the command is read: user code starts), C (a call from
#                    machine: JSON [name, args...]), A (the reply is read, user
#                    code goes on), D (done: "" ok, "X" SystemExit, "E"+traceback)
# This unix port raises KeyboardInterrupt from inside its SIGINT handler, i.e.
# anywhere, even half-way through a read() here. So the server sends SIGINT only
# between G and D and outside C..A: only user code (and the few lines that wrap
# it, which cope) can be struck. A Ctrl-C at any other time waits for that window.
# Comments, not a docstring: this is MicroPython code, read by the server, never imported.

import sys, os, vfs, json, io, gc
import micropython as _mpm
_root, _vdir, _cfg = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
_cin = open("/dev/fd/" + sys.argv[4], "rb")
_cout = open("/dev/fd/" + sys.argv[5], "wb")
_buf = bytearray()
_seq = [0]
_cmd = None
_owed = [None, None]  # [id, "D" payload] of the command not yet reported
_KI = "ETraceback (most recent call last):\nKeyboardInterrupt: \n"
_main = {"__name__": "__main__"}
_hide = (sys.argv[0], sys.argv[0].rpartition("/")[0] + "/machine_board.py")  # copied beside it
_errors = {"ValueError": ValueError, "OSError": OSError, "TypeError": TypeError}


def _send(kind, n, body=b""):
    if isinstance(body, str):
        body = body.encode()
    _cout.write(("%s %d %d\n" % (kind, n, len(body))).encode() + body)


def _take():
    while True:
        want = 1
        i = _buf.find(b"\n")
        if i >= 0:
            head = bytes(_buf[:i]).split()
            end = i + 1 + int(head[2])
            if len(_buf) >= end:
                body = bytes(_buf[i + 1:end])
                _buf[:end] = b""
                return head[0], int(head[1]), body
            want = end - len(_buf)
        c = _cin.read(want)
        _buf.extend(c)
        if not c:
            raise SystemExit  # the server is gone


def _rpc(name, *args):
    _seq[0] += 1
    n = _seq[0]
    _send("C", n, json.dumps([name] + list(args)))
    try:
        while True:
            k, m, body = _take()
            if k == b"R" and m == n:
                break
    except KeyboardInterrupt:  # struck before the server had C: no longer waiting
        _send("A", n)
        raise
    _send("A", n)
    r = json.loads(body)
    if "error" in r:
        raise _errors.get(r.get("type"), ValueError)(r["error"])
    return r.get("value")


def _tb(e):
    s = io.StringIO()
    sys.print_exception(e, s)
    keep = []
    for line in s.getvalue().split("\n"):
        if line.startswith('  File "') and (_hide[0] in line or _hide[1] in line):
            continue
        keep.append(line)
    return "\n".join(keep)


def _run(k, n, body):
    global _cmd
    _cmd = None
    _owed[1] = None
    _owed[0] = n
    err = None
    forced = False
    _send("G", n)
    try:
        if k == b"F":
            name = body.decode()
            try:
                mode = os.stat(name)[0]
            except OSError:
                mode = 0
            if mode & 0x8000:
                with open(name) as f:
                    src = f.read()
                _main["__file__"] = name
                exec(compile(src, name, "exec"), _main)
        else:
            if k == b"X":
                _main["__file__"] = "<stdin>"
            exec(compile(body.decode(), "<stdin>", "single" if k == b"S" else "exec"), _main)
    except SystemExit:
        forced = True
    except BaseException as e:
        err = e
    _unlock()
    try:
        _owed[1] = "X" if forced else ("" if err is None else "E" + _tb(err))
    except MemoryError:
        _owed[1] = "E" + repr(err) + "\n"
    _finish()


def _finish():
    # Report how the command ended. A KeyboardInterrupt may strike anywhere here
    # (or just before): the loop in _serve calls this again until it is done; a
    # repeated D is dropped by the server.
    while _owed[0] is not None:
        try:
            _unlock()
            res = _owed[1]
            _send("D", _owed[0], _KI if res is None else res)
            _owed[0] = None
        except KeyboardInterrupt:
            pass


def _unlock():
    # A KeyboardInterrupt that struck inside the allocator leaves the heap locked
    # (pyexec's REPL unlocks it after every command, and so do we); one that struck
    # inside a collection leaves it marked "collecting": a new collection ends that.
    _mpm.heap_lock()
    while _mpm.heap_unlock():
        pass
    try:
        bytearray(16)
    except MemoryError:
        gc.collect()


def _ilistdir(path=""):
    # a board's filesystems give each entry's size; VfsPosix does not
    base = path if path.endswith("/") or not path else path + "/"
    for e in os.ilistdir(path):
        size = 0
        if e[1] & 0x8000:
            try:
                size = os.stat(base + e[0])[6]
            except OSError:
                pass
        yield (e[0], e[1], e[2], size)


def _used(path):
    n = 0
    for e in os.ilistdir(path):
        p = path.rstrip("/") + "/" + e[0]
        if e[1] & 0x4000:
            n += 1 + _used(p)
        else:
            try:
                n += 1 + os.stat(p)[6] // 4096
            except OSError:
                pass
    return n


def _statvfs(path):
    # the board's flash filesystem (4096-byte blocks), not the host's disk
    total = _cfg["flash"] // 4096
    free = max(0, total - 2 - _used("/"))
    return (4096, 4096, total, free, free, 0, 0, 0, 0, 255)


def _setup():
    import micropython
    from collections import namedtuple

    import machine_board  # copied beside this script (the unix port's first import path)
    machine_board._attach(_rpc, _cfg)
    machine_board._install()
    del sys.modules["machine_board"]

    class _Module:
        pass

    mp = _Module()  # micropython.kbd_intr must tell the server, not unhook SIGINT
    for k in dir(micropython):
        if not k.startswith("__"):
            setattr(mp, k, getattr(micropython, k))
    mp.__name__ = "micropython"
    mp.kbd_intr = lambda c: _rpc("kbd_intr", c)
    sys.modules["micropython"] = mp

    uname = namedtuple("uname_result", ("sysname", "nodename", "release", "version", "machine"))
    u = uname(*_cfg["uname"])
    o = _Module()  # os with the board's uname()
    for k in dir(os):
        if not k.startswith("__"):
            setattr(o, k, getattr(os, k))
    o.__name__ = "os"
    o.uname = lambda: u
    o.ilistdir = _ilistdir
    o.statvfs = _statvfs
    sys.modules["os"] = o

    class _Raw:  # sys.stdout.buffer: bytes that reach the host as they are
        def write(self, b, *a):
            b = memoryview(b)
            if len(a) == 1:
                b = b[:a[0]]
            elif len(a) == 2:
                b = b[a[0]:a[0] + a[1]]
            b = bytes(b)
            sys.stdout.buffer.write(b"\x1b_VBRAW" + len(b).to_bytes(4, "little") + b)
            return len(b)

        def flush(self):
            pass

    class _Text(io.IOBase):  # sys.stdout: text, which the server turns "\n" into "\r\n" in
        def __init__(self):
            self.buffer = _Raw()

        def write(self, t):
            return sys.stdout.write(t)

        def __repr__(self):
            return repr(sys.stdout)

        def __getattr__(self, k):
            return getattr(sys.stdout, k)

    sy = _Module()  # sys, with a board's stdout: text cooked, its buffer raw
    for k in dir(sys):
        if not k.startswith("__"):
            setattr(sy, k, getattr(sys, k))
    sy.__name__ = "sys"
    sy.stdout = _Text()
    sys.modules["sys"] = sy

    vfs.umount("/")
    vfs.mount(vfs.VfsPosix(_root), "/")
    os.chdir("/")
    sys.path[:] = ["", ".frozen", "/lib"]
    sys.argv[:] = []


def _serve():
    global _cmd
    while True:
        try:
            _finish()
            if _cmd is None:
                _cmd = _take()
            if _cmd[0] == b"R":
                _cmd = None  # the answer to a call that a Ctrl-C abandoned
                continue
            _run(*_cmd)
        except KeyboardInterrupt:
            pass
        except MemoryError:
            _unlock()


_setup()
while True:
    try:
        try:
            _serve()
        except KeyboardInterrupt:
            pass
    except KeyboardInterrupt:
        pass
