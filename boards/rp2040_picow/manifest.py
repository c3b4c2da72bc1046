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

# The drivers it needs from micropython-lib, the SPOT library and the device
# application: one list, in firmware/manifest.py.
include("../../firmware/manifest.py")

# This board's pin map: `import board; board.make("thermostat")`.
module("board.py")
