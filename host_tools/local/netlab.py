"""Several hosts on one machine for local-control tests and benches (SPEC.md 13).

Lan makes a Linux bridge with an address of its own (this process's host on the
LAN) and, per host, a network namespace joined to the bridge by a veth pair,
with a multicast route, so devices and controllers each have their own
address and discovery crosses real network stacks. It needs root and
iproute2; Lan.available() says why not when it cannot. LocalDevice runs the
built firmware under the MicroPython unix port (in a namespace, or on this
host's loopback), its events read as they come.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from host_tools.paths import ROOT


def _ip(*args: str, ns: str | None = None, check: bool = True) -> subprocess.CompletedProcess:
    cmd = ["ip", *(["-n", ns] if ns else []), *args]
    return subprocess.run(cmd, capture_output=True, text=True, check=check, timeout=20)


class Lan:
    """A bridge 10.83.N.1/24 and namespaced hosts 10.83.N.(10+i) on it."""

    _made = 0  # Lans made by this process: names never repeat while the kernel tidies up

    def __init__(self, hosts: int) -> None:
        Lan._made += 1
        tag = f"{os.getpid() % 1000}{Lan._made % 100:02d}"  # interface names: 15 bytes at most
        self.net = 10 + (os.getpid() + Lan._made) % 240
        self.bridge = f"s83b{tag}"
        self.address = f"10.83.{self.net}.1"
        self.hosts: list[str] = []  # namespace names
        self.addresses: list[str] = []
        self._n = hosts
        self._tag = tag

    @staticmethod
    def available() -> str | None:
        """None if namespaces can be made here, else the reason they cannot."""
        if shutil.which("ip") is None:
            return "iproute2 (ip) is not installed"
        if os.geteuid() != 0:
            return "network namespaces need root"
        probe = f"s83probe{os.getpid()}"
        r = _ip("netns", "add", probe, check=False)
        if r.returncode:
            return f"ip netns add failed: {r.stderr.strip()}"
        _ip("netns", "del", probe, check=False)
        return None

    def __enter__(self) -> "Lan":
        try:
            _ip("link", "add", self.bridge, "type", "bridge")
            _ip("link", "set", self.bridge, "type", "bridge", "mcast_snooping", "0", check=False)
            _ip("addr", "add", f"{self.address}/24", "dev", self.bridge)
            _ip("link", "set", self.bridge, "up")
            for i in range(self._n):
                ns = f"s83-{self._tag}-{i}"
                veth, peer = f"s83v{self._tag}{i}", f"s83p{self._tag}{i}"
                _ip("netns", "add", ns)
                self.hosts.append(ns)
                _ip("link", "add", veth, "type", "veth", "peer", "name", peer)
                _ip("link", "set", peer, "netns", ns)
                _ip("link", "set", veth, "master", self.bridge)
                _ip("link", "set", veth, "up")
                addr = f"10.83.{self.net}.{10 + i}"
                _ip("addr", "add", f"{addr}/24", "dev", peer, ns=ns)
                _ip("link", "set", peer, "up", ns=ns)
                _ip("link", "set", "lo", "up", ns=ns)
                _ip("route", "add", "224.0.0.0/4", "dev", peer, ns=ns)
                self.addresses.append(addr)
        except Exception:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc: Any) -> None:
        for i in range(self._n):
            _ip("link", "del", f"s83v{self._tag}{i}", check=False)  # both ends, at once
        for ns in self.hosts:
            _ip("netns", "del", ns, check=False)
        _ip("link", "del", self.bridge, check=False)
        self.hosts.clear()

    def link(self, i: int, up: bool) -> None:
        """Plug host i's cable in or out (its veth on the bridge side)."""
        _ip("link", "set", f"s83v{self._tag}{i}", "up" if up else "down")

    def prefix(self, i: int) -> list[str]:
        return ["ip", "netns", "exec", self.hosts[i]]


class LocalDevice:
    """The built firmware under the unix port, with local control on; events as they come."""

    def __init__(self, tmp: Path, fs: Path, conf: dict[str, Any], prefix: list[str] | None = None,
                 name: str = "device") -> None:
        micropython = Path(sys.executable).parent / "micropython"
        path = tmp / f"{name}.json"
        path.write_text(json.dumps({"dir": str(fs), "stdin_stop": True, **conf}))
        image = ROOT / "build" / "mpy" / "x64"
        env = dict(os.environ, MICROPYPATH=os.pathsep.join(
            [".frozen", str(image), str(ROOT / "build" / "virtual")]))
        self.events: list[dict] = []
        self.lock = threading.Lock()
        self.proc = subprocess.Popen([*(prefix or []), str(micropython), str(image / "main.py"), str(path)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if line.startswith("{"):
                try:
                    ev = json.loads(line)
                except ValueError:
                    continue
                with self.lock:
                    self.events.append(ev)

    def of(self, kind: str) -> list[dict]:
        with self.lock:
            return [e for e in self.events if e.get("ev") == kind]

    def wait(self, kind: str, count: int = 1, timeout: float = 20.0, **match: Any) -> list[dict]:
        end = time.monotonic() + timeout
        while True:
            got = [e for e in self.of(kind) if all(e.get(k) == v for k, v in match.items())]
            if len(got) >= count:
                return got
            if time.monotonic() > end or self.proc.poll() is not None:
                err = self.proc.stderr.read()[-2000:] if self.proc.poll() is not None and self.proc.stderr else ""
                raise TimeoutError(f"{count} {kind!r} events {match} did not come; got {len(got)}; "
                                   f"last events {self.events[-5:]} {err}")
            time.sleep(0.02)

    def stop(self, timeout: float = 20.0) -> dict:
        """Ask it to stop (stdin); its summary event."""
        if self.proc.poll() is None:
            try:
                assert self.proc.stdin is not None
                self.proc.stdin.write("stop\n")
                self.proc.stdin.flush()
            except (BrokenPipeError, OSError):
                pass
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._reader.join(5)
        s = self.of("summary")
        return s[-1] if s else {}
