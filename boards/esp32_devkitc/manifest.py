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

# The drivers it needs from micropython-lib, the SPOT library and the device
# application: one list, in firmware/manifest.py.
include("../../firmware/manifest.py")

# The ESP32 updater, with rollback (esp32.Partition).
module("ota.py", base_path="../../firmware")

# This board's pin map: `import board; board.make("thermostat")`.
module("board.py")
