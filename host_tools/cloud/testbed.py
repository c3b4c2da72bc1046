"""A cloud on this machine for tests, benches and demos: a private Mosquitto, a registry,
the service as its own process (so it can be killed), and an API client.

    with CloudTestbed(tmp) as tb:
        tb.provision("home", 0x3101)
        tb.start()
        tb.api("POST", "/api/devices/00003101/commands", {"kind": "relay", "on": True})
"""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable

from host_tools.cloud.broker import Broker
from host_tools.cloud.registry import Registry
from host_tools.paths import ROOT


def wait_for(cond: Callable[[], Any], timeout: float = 10.0, what: str = "condition",
             step: float = 0.05) -> Any:
    """cond()'s first true value, asked every `step` s; TimeoutError naming `what` after `timeout` s."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        v = cond()
        if v:
            return v
        time.sleep(step)
    raise TimeoutError(f"{what} not met in {timeout} s")


def wake_devices(tb: "CloudTestbed", fs: dict[int, Path], roles: dict[int, str], cycles: int = 1,
                 extra: dict[int, dict] | None = None) -> None:
    """A wake (or `cycles`) of each device in roles (address -> role), side by side, from its
    files fs[address]; extra: more run_device arguments, by address."""
    with ThreadPoolExecutor(max(1, len(roles))) as pool:
        list(pool.map(lambda d: run_device(tb.tmp, fs[d], tb.broker.port, roles[d], cycles,
                                           **(extra or {}).get(d, {})), roles))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ApiError(RuntimeError):
    def __init__(self, status: int, detail: Any) -> None:
        super().__init__(f"HTTP {status}: {detail}")
        self.status = status
        self.detail = detail


class CloudTestbed:
    def __init__(self, tmp: Path, db: str | None = None, broker: Broker | None = None) -> None:
        self.tmp = Path(tmp)
        self.db = db or str(self.tmp / "cloud.sqlite")
        self.reg = Registry(self.tmp / "registry" / "registry.json")
        self._own_broker = broker is None
        self.broker = broker or Broker()
        self.procs: list[subprocess.Popen] = []
        self.port = 0
        self.token = ""
        self.log = self.tmp / "cloud.log"

    def __enter__(self) -> "CloudTestbed":
        if self._own_broker:
            self.broker.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()
        if self._own_broker:
            self.broker.__exit__(*exc)

    @property
    def broker_addr(self) -> str:
        return f"127.0.0.1:{self.broker.port}"

    def provision(self, site: str, dev: int, fs: Path | None = None) -> Path:
        """A device in the JSON registry, its files written for deploying; imported at start()."""
        self.reg.provision(site, dev)
        self.reg.save()
        fs = fs or self.tmp / f"fs-{dev:08x}"
        self.reg.write_device_files(dev, fs)
        return fs

    def cli(self, *args: str) -> str:
        p = subprocess.run([sys.executable, "-m", "host_tools", "cloud", *args, "--db", self.db],
                           capture_output=True, text=True, cwd=ROOT, timeout=60)
        if p.returncode:
            raise RuntimeError(f"spot cloud {' '.join(args)}: {p.stderr.strip() or p.stdout.strip()}")
        return p.stdout.strip()

    def start(self, worker: str = "0", shared: str | None = None, port: int | None = None,
              wait: bool = True, plugins: str | Path | None = None,
              broker_login: tuple[str, str] | None = None) -> subprocess.Popen:
        """The service as a subprocess; plugins: a TOML file enabling plugins (see cloud/plugins)."""
        if self.reg.path.exists():
            self.cli("import", str(self.reg.path))
        if not self.token:
            self.token = self.cli("token", f"test-{os.getpid()}-{time.monotonic_ns()}",
                                  "--scopes", "read,command,admin").splitlines()[-1]
        self.port = port or self.port or free_port()
        cmd = [sys.executable, "-m", "host_tools", "cloud", "serve", "--db", self.db, "--broker",
               self.broker_addr, "--port", str(self.port), "--worker", worker]
        if shared:
            cmd += ["--shared", shared]
        if plugins:
            cmd += ["--plugins", str(plugins)]
        env = None
        if broker_login:
            cmd += ["--broker-user", broker_login[0]]
            env = dict(os.environ, SPOT_BROKER_PASSWORD=broker_login[1])  # never on a command line
        out = open(self.log, "a")
        p = subprocess.Popen(cmd, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, env=env)
        self.procs.append(p)
        if wait:
            self.wait_ready(port=self.port)
        return p

    def wait_ready(self, timeout: float = 20.0, port: int | None = None) -> None:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            try:
                if self.api("GET", "/health", port=port).get("mqtt"):
                    return
            except (OSError, ApiError):
                pass
            time.sleep(0.05)
        raise TimeoutError(f"the cloud did not come up; its log:\n{self.log.read_text()[-3000:]}")

    def kill(self, p: subprocess.Popen | None = None) -> None:
        p = p or self.procs[-1]
        if p.poll() is None:
            p.send_signal(signal.SIGKILL)
            p.wait(10)

    def stop(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(10)
                except subprocess.TimeoutExpired:
                    p.kill()
        self.procs.clear()

    def api(self, method: str, path: str, body: Any = None, token: str | None = None,
            port: int | None = None) -> Any:
        import http.client

        conn = http.client.HTTPConnection("127.0.0.1", port or self.port, timeout=10)
        headers = {"Content-Type": "application/json"}
        tok = self.token if token is None else token
        if tok:
            headers["Authorization"] = f"Bearer {tok}"
        conn.request(method, path, json.dumps(body) if body is not None else None, headers)
        r = conn.getresponse()
        data = r.read()
        conn.close()
        value = json.loads(data) if data else None
        if r.status >= 400:
            raise ApiError(r.status, (value or {}).get("detail") if isinstance(value, dict) else value)
        return value

    def wait_command(self, cid: int, states: tuple[str, ...], timeout: float = 10.0) -> dict:
        end = time.monotonic() + timeout
        c: dict = {}
        while time.monotonic() < end:
            c = self.api("GET", f"/api/commands/{cid}")
            if c["state"] in states:
                return c
            time.sleep(0.05)
        raise TimeoutError(f"command {cid} is {c.get('state')}, not {states}")


def run_device(tmp: Path, fs: Path, broker_port: int, role: str, cycles: int, chip: str = "esp32",
               wake_ms: int = 100, timeout: float = 60, **extra: Any) -> list[dict]:
    """The built firmware under the MicroPython unix port for some wake cycles; its events.
    Wake cycles are the sleepy mode's: "power" is "sleepy" unless extra says otherwise
    (start_device runs a connected one)."""
    micropython = Path(sys.executable).parent / "micropython"
    conf = {"dir": str(fs), "broker": {"host": "127.0.0.1", "port": broker_port}, "cycles": cycles,
            "wake_ms": wake_ms, "run_s": 30, "role": role, "control_ms": 50, "power": "sleepy",
            "board": {"chip": chip, "clock": "wall", "seed": 3}, **extra}
    path = tmp / f"device-{fs.name}.json"
    path.write_text(json.dumps(conf))
    image = ROOT / "build" / "mpy" / "x64"
    env = dict(os.environ, MICROPYPATH=os.pathsep.join([".frozen", str(image), str(ROOT / "build" / "virtual")]))
    p = subprocess.run([str(micropython), str(image / "main.py"), str(path)], capture_output=True,
                       text=True, env=env, cwd=ROOT, timeout=timeout)
    if p.returncode:
        raise RuntimeError(p.stdout[-2000:] + p.stderr[-2000:])
    return [json.loads(line) for line in p.stdout.splitlines() if line.startswith("{")]


class DeviceProcess:
    """The built firmware under the unix port as a process that keeps running (a connected
    device); its events read line by line on a thread. stop() says "stop" on stdin."""

    def __init__(self, tmp: Path, fs: Path, broker_port: int, role: str = "smart_plug",
                 chip: str = "esp32", **extra: Any) -> None:
        import threading

        micropython = Path(sys.executable).parent / "micropython"
        conf = {"dir": str(fs), "broker": {"host": "127.0.0.1", "port": broker_port}, "run_s": 300,
                "role": role, "control_ms": 50, "stdin_stop": True,
                "board": {"chip": chip, "clock": "wall", "seed": 3}, **extra}
        path = tmp / f"device-{fs.name}.json"
        path.write_text(json.dumps(conf))
        image = ROOT / "build" / "mpy" / "x64"
        env = dict(os.environ, MICROPYPATH=os.pathsep.join([".frozen", str(image), str(ROOT / "build" / "virtual")]))
        self.proc = subprocess.Popen([str(micropython), str(image / "main.py"), str(path)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True, env=env, cwd=ROOT)
        self.events: list[dict] = []
        self.lines: list[str] = []
        self.errors: list[str] = []  # stderr, drained on its own thread: the pipe never fills
        self._cv = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self._err = threading.Thread(target=self._drain_stderr, daemon=True)
        self._err.start()

    def _drain_stderr(self) -> None:
        assert self.proc.stderr
        for line in self.proc.stderr:
            self.errors.append(line)

    def _read(self) -> None:
        assert self.proc.stdout
        for line in self.proc.stdout:
            with self._cv:
                self.lines.append(line)
                if line.startswith("{"):
                    try:
                        self.events.append(json.loads(line))
                    except ValueError:
                        pass
                self._cv.notify_all()

    def wait_for(self, pred: Any, timeout: float = 10.0) -> dict:
        """The first event (from the start) for which pred(event) is true."""
        end = time.monotonic() + timeout
        with self._cv:
            while True:
                for e in self.events:
                    if pred(e):
                        return e
                left = end - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"no such event; the device said:\n{''.join(self.lines[-40:])}")
                self._cv.wait(min(left, 0.5))

    def count(self, ev: str) -> int:
        with self._cv:
            return sum(1 for e in self.events if e.get("ev") == ev)

    def stop(self, timeout: float = 20.0) -> dict:
        """Ask it to stop; its summary."""
        if self.proc.poll() is None:
            try:
                assert self.proc.stdin
                self.proc.stdin.write("stop\n")
                self.proc.stdin.flush()
            except OSError:
                pass
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        # The process is gone: its stdout ends, and the reader has every line once it ends.
        self._reader.join(timeout)
        self._err.join(2)
        with self._cv:
            s = [e for e in self.events if e.get("ev") == "summary"]
        if not s:
            err = "".join(self.errors)
            raise RuntimeError(f"no summary; rc {self.proc.returncode}: {''.join(self.lines[-30:])}{err[-2000:]}")
        return s[-1]

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def __enter__(self) -> "DeviceProcess":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.kill()
