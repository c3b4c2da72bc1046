"""Per-role images (issue 12): a board carries its role's modules alone, and a wake
imports rare paths (schedule, key management, OTA, builders) only when they are used.

These fail if a role image grows another role's module, if the freeze manifest and
the image disagree, if a plug can no longer wake from its own image, or if one of
the rare-path imports goes back to the top of a module a wake loads.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

import mp32_runner
from conftest import ROOT, provision
from host_tools.bench import role_images
from host_tools.board import build, deploy

pytestmark = pytest.mark.timeout(300)
FOREIGN = {role: {m for r, mods in build.ROLE_MODULES.items() if r != role for m in mods}
           for role in build.ROLES}
# Imported on first use only: a quiet or command wake must not load them.
RARE = {"spot.schedule", "spot.key_admin", "spot.builders", "ota", "net", "modbus_rtu",
        # node.py's services a role's device does not use in such a wake, safe mode
        # (dropped after its one call), the link of a board without a transport
        "svc_dr", "svc_price", "svc_schedule", "svc_keys", "svc_status", "safe_mode",
        "spot.offline"}


@pytest.mark.parametrize("arch", ["xtensawin", "armv6m", build.BYTECODE])
@pytest.mark.parametrize("role", build.ROLES)
def test_a_role_image_carries_its_own_modules_and_no_other_roles(role: str, arch: str) -> None:
    build.build_role(arch, role)
    image = build.role_image_dir(arch, role)
    files = {p.relative_to(image).as_posix() for p in image.rglob("*") if p.is_file()}
    meta = json.loads((image / "image.json").read_text())
    assert set(meta["bytes"]) | {"image.json", "manifest.py"} == files
    stems = {Path(f).stem for f in files if "/" not in f}
    for own in build.ROLE_MODULES[role]:
        assert own + ".mpy" in files
    assert not stems & FOREIGN[role], stems & FOREIGN[role]
    assert "spot/builders.mpy" not in files  # no firmware module imports it
    assert {"main.py", "device.mpy", "node.mpy", "role.mpy", "spot/cbor.mpy",
            "umqtt/simple.mpy"} <= files
    assert ("ota.mpy" in files) == (arch in build.ESP32_ARCHS)
    # The freeze manifest names exactly the image's modules.
    text = (image / "manifest.py").read_text()
    frozen = {m for m in re.findall(r'module\("(\w+)\.py"', text)}
    assert frozen == {f[:-4] for f in files if "/" not in f and f.endswith(".mpy")}
    spot = set(re.findall(r'^    "(\w+)\.py",$', text, re.M))
    assert spot == {f[5:-4] for f in files if f.startswith("spot/")}
    assert ('require("ds18x20")' in text) == (role in build.ONE_WIRE)


def test_the_image_drops_a_module_that_left_it(tmp_path: Path) -> None:
    build.build_role("x64", "smart_plug")
    image = build.role_image_dir("x64", "smart_plug")
    (image / "thermostat.mpy").write_bytes(b"stale")
    build.build_role("x64", "smart_plug")
    assert not (image / "thermostat.mpy").exists()


def _loaded(r: dict) -> set[str]:
    return set(r["modules"])


def test_a_plug_wakes_from_its_own_image_and_loads_no_rare_path() -> None:
    # The unix port, MICROPYPATH the plug's x64 image (and the virtual board): a whole
    # wake with a device command queued, verified, applied, acknowledged.
    r = role_images.run_image("smart_plug", "x64", role_images.boot_modules("smart_plug"))
    assert r["cycle"]["ok"] and r["applied"] == 1, r["cycle"]
    assert any(e.get("ev") == "acked" for e in r["events"])
    loaded = _loaded(r)
    assert "smart_plug" in loaded and not loaded & FOREIGN["smart_plug"]
    assert not loaded & RARE, loaded & RARE
    image = role_images.image_modules("x64", "smart_plug")
    assert not FOREIGN["smart_plug"] & set(image)


@pytest.mark.parametrize("kind", ["quiet", "schedule"])
def test_schedule_parsing_loads_only_when_a_schedule_arrives(kind: str) -> None:
    r = role_images.run_image("thermostat", "x64", [], kind)
    assert r["cycle"]["ok"], r["cycle"]
    loaded = _loaded(r)
    assert ("spot.schedule" in loaded) == (kind == "schedule"), sorted(loaded)
    assert ("svc_schedule" in loaded) == (kind == "schedule"), sorted(loaded)
    assert not loaded & (RARE - {"spot.schedule", "svc_schedule"})
    if kind == "schedule":
        assert r["applied"] == 1


def test_a_deploy_as_another_role_removes_the_old_roles_modules(tmp_path: Path) -> None:
    from host_tools.board.virtual_board import VirtualBoardServer

    provision(tmp_path, "home", 0x1001)
    root = tmp_path / "flash"
    with VirtualBoardServer("esp32", "thermostat", root) as vb:
        kw = dict(device_dir=tmp_path / "fs", broker="127.0.0.1:1883", show=False)
        deploy.deploy(vb.url, role="thermostat", **kw)
        assert (root / "thermostat.mpy").exists() and not (root / "smart_plug.mpy").exists()
        plug = deploy.deploy(vb.url, role="smart_plug", **kw)
        assert (root / "smart_plug.mpy").exists() and not (root / "thermostat.mpy").exists()
        assert plug["removed"] == 1
        on_board = {p.relative_to(root).as_posix() for p in root.rglob("*.mpy")}
        assert on_board == {r for r, _ in deploy.image_files("x64", "smart_plug")
                            if r.endswith(".mpy")}


def test_32bit_figures_of_a_plug_image() -> None:
    try:
        mp32_runner.ensure()
    except mp32_runner.Unavailable as e:
        pytest.skip(str(e))
    r = role_images.run_image("smart_plug", "32bit", role_images.boot_modules("smart_plug"))
    assert r["cycle"]["ok"] and r["applied"] == 1, r["cycle"]
    assert not _loaded(r) & FOREIGN["smart_plug"] and not _loaded(r) & RARE
    x64 = role_images.run_image("smart_plug", "x64", role_images.boot_modules("smart_plug"))
    # The same code, 4-byte pointers: never more heap than on x64, and some at all.
    assert 20_000 < r["import"] <= x64["import"]
    assert r["import"] < r["peak"]
    print(f"\nsmart plug image: import {r['import'] / 1024:.1f} KB 32-bit, "
          f"{x64['import'] / 1024:.1f} KB x64; wake peak {r['peak'] / 1024:.1f} KB 32-bit, "
          f"{x64['peak'] / 1024:.1f} KB x64")


_COLLECTS_AT_TOP_LEVEL = """
import gc, js
gc.collect()
base = gc.mem_alloc()
junk = [bytearray(1000) for _ in range(50)]
junk = None
gc.collect()
inside = gc.mem_alloc() - base
await js.Promise.resolve(0)
print(inside, gc.mem_alloc() - base)
"""


def test_the_32bit_port_collects_only_between_calls_from_javascript(tmp_path: Path) -> None:
    # Why role32_wasm.py measures from top-level awaits and calls its in-wake figure a
    # bound: on this port gc.collect() inside a call frees nothing; back in JS it does.
    try:
        mp32_runner.ensure()
    except mp32_runner.Unavailable as e:
        pytest.skip(str(e))
    script = tmp_path / "collect.py"
    script.write_text(_COLLECTS_AT_TOP_LEVEL)
    res = mp32_runner.run(script, top_level_await=True)
    inside, after = map(int, res.stdout.split())
    assert inside >= 50_000 and after < 5_000, res.stdout + res.stderr


def test_32bit_wake_figures_bracket_the_live_heap() -> None:
    try:
        mp32_runner.ensure()
    except mp32_runner.Unavailable as e:
        pytest.skip(str(e))
    runs = {port: role_images.run_image("smart_plug", port, role_images.boot_modules("smart_plug"))
            for port in ("32bit", "x64")}
    w = runs["32bit"]
    # Each phase collected at top level: the wake holds more after it than before it,
    # and allocates more than it holds; the estimate lies between the bounds.
    assert w["import"] < w["live_pre"] < w["live_post"] < w["alloc"] == w["peak"]
    assert w["live_post"] <= role_images.estimate_peak(runs) <= w["alloc"]
    # The wake's collection points (device.wake_phases, wake.steps): before loading,
    # after it, after connecting, after the queue; then the end. The bound is the
    # highest phase, each above the live heap it began with.
    assert len(w["phases"]) == 5 and max(w["phases"]) == w["peak"], w["phases"]
    assert w["phases"][0] >= w["live_pre"]
