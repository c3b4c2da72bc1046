"""The library's install descriptions list exactly the device modules."""
from __future__ import annotations

import json
import re

from conftest import ROOT

from host_tools.board import build

SPOT = ROOT / "lib" / "spot"


def _device_modules() -> set[str]:
    return {p.name for p in build.device_sources()}


def test_mip_package_json_lists_every_device_module() -> None:
    pkg = json.loads((SPOT / "package.json").read_text())
    assert {dest.split("/", 1)[1] for dest, _ in pkg["urls"]} == _device_modules()
    assert all(src == dest.split("/", 1)[1] for dest, src in pkg["urls"])


def test_freeze_manifest_lists_every_device_module() -> None:
    text = (SPOT / "manifest.py").read_text()
    assert set(re.findall(r'"([a-z_]+\.py)"', text)) == _device_modules()


def test_firmware_manifest_lists_every_application_module() -> None:
    text = (ROOT / "firmware" / "manifest.py").read_text()
    listed = set(re.findall(r'"([a-z_0-9]+\.py)"', text))
    # ota.py is the ESP32's own: its board manifest adds it.
    assert listed == {p.name for p in build.firmware_sources()} - {"ota.py"}


def test_device_code_has_no_cpython_only_imports() -> None:
    allowed = {"micropython", "array", "spot", "gc", "sys", "time", "json", "struct", "os",
               "hashlib", "cryptolib", "select", "socket", "umqtt",
               "binascii",  # C on every board port (hexlify; firmware's crc32 too)
               "errno",  # C on every port (the link's timeout codes: 116 on the ESP32)
               "ssl"}  # MicroPython >= 1.23 (the TLS link to the broker)
    for path in (ROOT / "lib").rglob("*.py"):
        if path.name in build.HOST_ONLY or path.name == "manifest.py":
            continue
        for mod in re.findall(r"^\s*(?:from|import)\s+([a-zA-Z_][\w]*)", path.read_text(), re.M):
            assert mod in allowed, f"{path.relative_to(ROOT)} imports {mod}"


def test_freezing_into_a_unix_port_names_its_arch() -> None:
    """mpy-cross without -march refuses the viper hot path ("invalid arch"), and the
    unix port's build passes none unless told: the freeze docs must say so (issue 15)."""
    import subprocess
    import sys
    import tempfile
    from pathlib import Path

    cross = Path(sys.executable).parent / "mpy-cross"
    src = ROOT / "lib" / "spot" / "hotpath.py"
    with tempfile.TemporaryDirectory() as tmp:
        bare = subprocess.run([str(cross), "-o", f"{tmp}/h.mpy", str(src)], capture_output=True, text=True)
        named = subprocess.run([str(cross), "-march=x64", "-o", f"{tmp}/h.mpy", str(src)],
                               capture_output=True, text=True)
    assert bare.returncode and "invalid arch" in bare.stderr + bare.stdout
    assert named.returncode == 0, named.stderr
    for doc in ("boards/README.md", "firmware/manifest.py"):
        assert "MPY_CROSS_FLAGS=-march=x64" in (ROOT / doc).read_text(), doc
