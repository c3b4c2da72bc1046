"""spot emulate: virtual boards that stock mpremote reaches, gone when stopped."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import ROOT

pytestmark = pytest.mark.timeout(120)
MPREMOTE = str(Path(sys.executable).parent / "mpremote")


def test_emulate_serves_boards_until_sigterm(tmp_path):
    p = subprocess.Popen([sys.executable, "-m", "host_tools", "emulate", "--root", str(tmp_path),
                          "--board", "esp32:thermostat", "--board", "rp2040:smart_plug"],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT)
    try:
        urls = {}
        deadline = time.monotonic() + 30
        while len(urls) < 2 and time.monotonic() < deadline:
            line = p.stdout.readline()
            parts = line.split()
            if len(parts) >= 3 and parts[2].startswith("socket://"):
                urls[parts[0]] = parts[2]
        assert set(urls) == {"esp32", "rp2040"}
        for chip, url in urls.items():
            out = subprocess.run([MPREMOTE, "connect", url, "exec", "import os; print(os.uname()[0])"],
                                 capture_output=True, text=True, timeout=30)
            assert out.stdout.strip() == {"esp32": "esp32", "rp2040": "rp2"}[chip], out
        p.send_signal(signal.SIGTERM)
        assert p.wait(timeout=20) == 0
    finally:
        if p.poll() is None:
            p.kill()
    left = subprocess.run(["pgrep", "-f", str(tmp_path)], capture_output=True, text=True)
    assert left.stdout.strip() == ""  # no interpreter of these boards left running
    assert (tmp_path / "0-esp32-thermostat").is_dir()


def test_emulate_refuses_a_bad_port_or_root_in_one_line(tmp_path):
    afile = tmp_path / "afile"
    afile.write_text("not a directory")
    for args in (["--port", "70000"], ["--root", str(afile)]):
        p = subprocess.run([sys.executable, "-m", "host_tools", "emulate", "--board",
                            "esp32:thermostat", *args], capture_output=True, text=True, cwd=ROOT,
                           timeout=60)
        assert p.returncode == 2, p.stderr
        lines = p.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("spot emulate: "), p.stderr


def test_build_writes_a_freeze_manifest_per_architecture():
    from host_tools.board import build

    build.build_arch("armv6m")
    build.build_arch("xtensawin")
    rp2 = (build.BUILD / "mpy" / "armv6m" / "manifest.py").read_text()
    esp = (build.BUILD / "mpy" / "xtensawin" / "manifest.py").read_text()
    assert "firmware/manifest.py" in rp2 and "ota.py" not in rp2
    assert "ota.py" in esp
