"""What a virtual board plays: the chips (their ROM lines, clocks, flash), the roles,
the reset causes, and the surroundings behind its pins (boards/virtual's models)."""
from __future__ import annotations

import ast
import importlib.util
import sys
from typing import Any

from host_tools.paths import ROOT, VIRTUAL, board_import_path

# reset causes (machine_board's numbers)
PWRON_RESET, HARD_RESET, WDT_RESET, DEEPSLEEP_RESET, SOFT_RESET = 1, 2, 3, 4, 5
HAL_CAUSES = {PWRON_RESET: "power_on", HARD_RESET: "hard", WDT_RESET: "watchdog",
              DEEPSLEEP_RESET: "deep_sleep", SOFT_RESET: "soft"}

CHIPS: dict[str, dict[str, Any]] = {
    "esp32": {
        "board_dir": "esp32_devkitc",
        "machine": "ESP32 module (virtual) with ESP32",
        "sysname": "esp32",
        "freq": 160_000_000,
        "uid_len": 6,
        "gpios": 40,
        "flash": 2 * 1024 * 1024,  # the vfs partition of a 4 MB ESP32 image
        # esp32's reset_cause() says SOFT_RESET after a soft reset; rp2 reads the chip's
        # reset register, which a soft reset does not touch.
        "soft_cause": True,
        "rom": {PWRON_RESET: "0x1 (POWERON_RESET)", HARD_RESET: "0xc (SW_CPU_RESET)",
                WDT_RESET: "0x7 (TG0WDT_SYS_RESET)", DEEPSLEEP_RESET: "0x5 (DEEPSLEEP_RESET)"},
    },
    "rp2040": {
        "board_dir": "rp2040_picow",
        "machine": "Raspberry Pi Pico W (virtual) with RP2040",
        "sysname": "rp2",
        "freq": 125_000_000,
        "uid_len": 8,
        "gpios": 30,
        "flash": 848 * 1024,  # the Pico W image's filesystem
        "soft_cause": False,
        "rom": {},
    },
}
ROLES = ("thermostat", "smart_plug", "heat_pump")


def pin_map(chip: str) -> tuple[dict[str, int], dict[str, dict]]:
    """PINS and OPTIONS of the real board the chip stands for, read without importing it."""
    path = ROOT / "boards" / CHIPS[chip]["board_dir"] / "board.py"
    found: dict[str, Any] = {"PINS": {}, "OPTIONS": {}}
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            name = getattr(node.targets[0], "id", None)
            if name in found:
                found[name] = ast.literal_eval(node.value)
    return found["PINS"], found["OPTIONS"]


def make_models(role: str, chip: str, seed: int = 1):
    """boards/virtual/board.py's make(role, clock="wall"): the board's surroundings."""
    board_import_path(virtual=True)
    mod = sys.modules.get("spot_virtual_board")
    if mod is None:
        spec = importlib.util.spec_from_file_location("spot_virtual_board", VIRTUAL / "board.py")
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        sys.modules["spot_virtual_board"] = mod
    return mod.make(role, seed=seed, clock="wall", chip=chip)
