"""A private Mosquitto for tests and demos: own port, own config, own data dir.

    with Broker() as b:           # starts on a free 127.0.0.1 port
        connect to b.port ...
        b.stop(kill=True)         # crash it (SIGKILL) ...
        b.start()                 # ... and bring it back: same port, same data

Persistence is on and saved after every change, so a restart (even after
SIGKILL, once the change has been saved) loses neither retained messages nor
queued QoS 1 messages of persistent sessions. Never touches the system broker.
"""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Callable

_SEARCH = ("/usr/sbin", "/usr/local/sbin", "/opt/homebrew/sbin", "/usr/local/opt/mosquitto/sbin")
MISSING = "Mosquitto is missing: install it (Debian/Ubuntu: sudo apt-get install mosquitto)"
_MTIME_SLACK_S = 0.02  # coarser than any kernel timestamp tick


class BrokerError(RuntimeError):
    """Mosquitto is missing, would not start, or would not stop."""


def find_mosquitto() -> str:
    """The mosquitto executable, or BrokerError saying how to install it."""
    path = os.pathsep.join([os.environ.get("PATH", ""), *_SEARCH])
    exe = shutil.which("mosquitto", path=path)
    if not exe:
        raise BrokerError(MISSING)
    return exe


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _death_signal() -> Callable[[], None] | None:
    """A preexec_fn that has the kernel SIGTERM the broker when we die (Linux).

    If the Python process is killed outright the broker goes too instead of
    lingering on its port; the context manager remains the real clean-up.
    Resolved here, in the parent: the child between fork and exec must not
    import anything (another thread may hold the import lock).
    """
    if not sys.platform.startswith("linux"):
        return None
    try:
        import ctypes

        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None

    def set_pdeathsig() -> None:
        prctl(1, int(signal.SIGTERM))  # PR_SET_PDEATHSIG

    return set_pdeathsig


_PREEXEC = _death_signal()


class Broker:
    """One private Mosquitto process; restartable on the same port and data dir.

    The port is free_port()'s pick unless given; if another process takes it
    before Mosquitto binds, the first start() picks again. On Linux the broker
    also dies with the thread that started it (PR_SET_PDEATHSIG): start it
    from a thread that outlives its use.
    """

    def __init__(self, port: int | None = None, workdir: Path | None = None,
                 start_timeout: float = 10.0, bind: str = "127.0.0.1",
                 access: Path | None = None) -> None:
        self.exe = find_mosquitto()
        # access: a folder `spot broker-config` wrote (passwd, acl, and tls/ for a TLS
        # listener on tls_port): no anonymous clients, each account its topics.
        self.access = Path(access).resolve() if access else None
        self.tls = self.access is not None and (self.access / "tls" / "server.pem").exists()
        self.tls_port = free_port() if self.tls else None
        self.bind = bind  # 0.0.0.0 for a bench whose real boards reach it over the LAN
        self._may_move = port is None  # until the first start succeeds
        self.port = port or free_port()
        self._own_dir = workdir is None
        self.dir = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix="spot-broker-"))
        self.dir.mkdir(parents=True, exist_ok=True)
        self.conf = self.dir / "mosquitto.conf"
        self.log = self.dir / "mosquitto.log"
        self.db = self.dir / "mosquitto.db"
        self.start_timeout = start_timeout
        self.proc: subprocess.Popen[bytes] | None = None
        self._write_config()

    def _write_config(self) -> None:
        lines = [f"listener {self.port} {self.bind}", "allow_anonymous true"]
        if self.access is not None:
            a = self.access
            lines = ["per_listener_settings false", "allow_anonymous false",
                     f"password_file {a / 'passwd'}", f"acl_file {a / 'acl'}",
                     f"listener {self.port} {self.bind}"]
            if self.tls:
                lines += [f"listener {self.tls_port} {self.bind}", f"cafile {a / 'tls' / 'ca.pem'}",
                          f"certfile {a / 'tls' / 'server.pem'}", f"keyfile {a / 'tls' / 'server.key'}"]
        lines += [
            "persistence true",
            f"persistence_location {self.dir}/",
            "persistence_file mosquitto.db",
            # Save after every change, not every 30 min: a restart test must find
            # everything that was acknowledged before the crash.
            "autosave_interval 1",
            "autosave_on_changes true",
            # Nagle plus delayed ACKs adds ~40 ms to small messages: noise in
            # latency figures and slower tests.
            "set_tcp_nodelay true",
            # A sleeping device's backlog must never be cut short (SPEC.md 8.2).
            "max_queued_messages 10000",
            f"log_dest file {self.log}",
            "log_type error",
            "log_type warning",
            "log_type notice",
            "log_type information",
            "connection_messages true",
        ]
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            # As root, Mosquitto 2 switches to user "mosquitto", who cannot
            # write our private data dir.
            lines.append("user root")
        self.conf.write_text("\n".join(lines) + "\n")

    # life cycle ----------------------------------------------------------------
    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self) -> "Broker":
        """Start (or restart) the broker; returns once the port accepts connections."""
        if self.running:
            return self
        for attempt in range(3):
            try:
                self._start_once()
                self._may_move = False
                return self
            except BrokerError:
                if not self._may_move or attempt == 2:
                    raise
                self.port = free_port()  # lost a race for the port: pick another
                if self.tls:
                    self.tls_port = free_port()
                self._write_config()
        return self

    def _start_once(self) -> None:
        self.proc = subprocess.Popen(
            [self.exe, "-c", str(self.conf)], stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            start_new_session=True,  # Ctrl-C reaches us, and we stop it in order
            preexec_fn=_PREEXEC)
        deadline = time.monotonic() + self.start_timeout
        while True:
            if self.proc.poll() is not None:
                err = self.proc.stderr.read().decode(errors="replace") if self.proc.stderr else ""
                self.proc = None
                last = (err.strip() or self.log_tail()).splitlines()
                raise BrokerError(f"mosquitto exited at start on port {self.port}: "
                                  f"{last[-1] if last else 'no message'}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    pass
                if self.proc.poll() is None:  # ours answered, not a port thief
                    return
                continue
            except OSError:
                if time.monotonic() > deadline:
                    self.stop(kill=True)
                    raise BrokerError(f"mosquitto did not listen on 127.0.0.1:{self.port} "
                                      f"within {self.start_timeout:.0f} s") from None
                time.sleep(0.02)

    def stop(self, kill: bool = False, timeout: float = 5.0) -> None:
        """Stop the broker: SIGTERM (saves its database) or SIGKILL (a crash)."""
        proc, self.proc = self.proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout)
        if proc.stderr:
            proc.stderr.close()

    def reload(self) -> None:
        """SIGHUP: Mosquitto reads its password and ACL files again (after provisioning)."""
        if self.running and self.proc is not None:
            self.proc.send_signal(signal.SIGHUP)

    def close(self) -> None:
        """Stop the broker and, if we made it, remove its data dir."""
        self.stop()
        if self._own_dir:
            shutil.rmtree(self.dir, ignore_errors=True)

    def wait_saved(self, since: float, timeout: float = 3.0) -> bool:
        """True once the database file was written after `since` (a time.time())."""
        # File times come from the kernel's coarse clock, which can lag
        # time.time() by a tick: a save just after `since` may carry an mtime
        # a few ms before it.
        since -= _MTIME_SLACK_S
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.db.exists() and self.db.stat().st_mtime >= since:
                return True
            time.sleep(0.05)
        return False

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def __enter__(self) -> "Broker":
        try:
            return self.start()
        except BaseException:
            self.close()
            raise

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"Broker(127.0.0.1:{self.port}, {state}, {self.dir})"
