# Freeze SPOT into a Raspberry Pi Pico W firmware image (MicroPython manifest format).
#
# A vendor builds their own image from a MicroPython checkout, e.g.
#   make -C ports/rp2 BOARD=RPI_PICO_W \
#        FROZEN_MANIFEST=/path/to/spot/boards/rp2040_picow/manifest.py
# (BOARD=RPI_PICO2_W for a Pico 2 W). The manifest tool runs each manifest from
# its own directory, so the relative paths below resolve from here, wherever the
# MicroPython tree is. The result is firmware.uf2, copied onto the BOOTSEL drive.

# The Pico W's own manifest: the port's frozen modules plus its networking bundle
# (the generic $(PORT_DIR)/boards/manifest.py would leave the Wi-Fi helpers out).
include("$(BOARD_DIR)/manifest.py")

# micropython-lib drivers the firmware uses (a second require of one is a no-op).
require("onewire")
require("ds18x20")
require("umqtt.simple")

# The SPOT library, through its own manifest: one file list, kept in step with
# lib/spot by `spot build`, and without the CPython-only files.
include("../../lib/spot/manifest.py")

# The device application and the shared board drivers (ota.py is ESP32-only).
for name in (
    "device.py",
    "node.py",
    "hal.py",
    "role.py",
    "thermostat.py",
    "smart_plug.py",
    "heat_pump.py",
    "sg_ready.py",
    "modbus_rtu.py",
    "net.py",
):
    module(name, base_path="../../firmware")

# This board's pin map: `import board; board.make("thermostat")`.
module("board.py")
