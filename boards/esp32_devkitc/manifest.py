# Freeze SPOT into an ESP32 firmware image (MicroPython manifest format).
#
# A vendor builds their own image from a MicroPython checkout, e.g.
#   make -C ports/esp32 BOARD=ESP32_GENERIC \
#        FROZEN_MANIFEST=/path/to/spot/boards/esp32_devkitc/manifest.py
# (BOARD=ESP32_GENERIC_S3 for an ESP32-S3). The manifest tool runs each manifest
# from its own directory, so the relative paths below resolve from here,
# wherever the MicroPython tree is.

# The port's usual frozen modules (asyncio, networking, ...).
include("$(PORT_DIR)/boards/manifest.py")

# micropython-lib drivers the firmware uses (a second require of one is a no-op).
require("onewire")
require("ds18x20")
require("umqtt.simple")

# The SPOT library, through its own manifest: one file list, kept in step with
# lib/spot by `spot build`, and without the CPython-only files.
include("../../lib/spot/manifest.py")

# The device application and the shared board drivers.
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
    "ota.py",
):
    module(name, base_path="../../firmware")

# This board's pin map: `import board; board.make("thermostat")`.
module("board.py")
