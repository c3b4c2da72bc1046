"""ESP32-DevKitC (ESP32-WROOM-32): its pin map, and the board a role is handed (MIT licence).

One wiring serves all three roles: relay channel 1 (GPIO26) is the thermostat's
`heat`, the plug's `load` and the heat pump's `sg1`; input 1 (GPIO33) is `window`,
`button` or `compressor`; the 1-Wire bus (GPIO4) is `room` or `store`.
Kept clear of: strapping pins 0, 2, 5, 12, 15; flash pins 6-11; UART0 (1, 3: USB
serial, the REPL); 16 and 17 (PSRAM on WROVER modules). GPIO34-39 are input-only
and have no internal pulls: only the metering chip's CF/CF1 outputs (push-pull)
use them. Relays sit on RTC-capable pads (25-27, 32, 33) so their level is held
through deep sleep.
"""
import hal

NAME = "esp32_devkitc"
PORT = "esp32"
ARCH = "xtensawin"

PINS = {
    # relays (2-channel optocoupled module, IN low = energised)
    "heat": 26,
    "load": 26,
    "sg1": 26,
    "sg2": 27,
    # digital input (contact to GND, internal pull-up)
    "window": 33,
    "button": 33,
    "compressor": 33,
    # DS18B20 1-Wire data (external 4.7 kOhm pull-up to 3V3)
    "room": 4,
    "store": 4,
    # BL0937 metering chip
    "cf": 35,  # input-only pad: CF is a push-pull output
    "cf1": 34,  # input-only pad
    "sel": 25,
    # RS-485 transceiver (MAX3485-class) for Modbus RTU on UART2
    "modbus_tx": 19,
    "modbus_rx": 18,
    "modbus_de": 23,
}

OPTIONS = {
    "heat": {"active_low": True},
    "load": {"active_low": True},
    "sg1": {"active_low": True},
    "sg2": {"active_low": True},
    "window": {"pull": "up"},  # reed contact closed (window shut) pulls low: 1 = open
    "button": {"pull": "up", "inverted": True},  # 1 = pressed
    "compressor": {"pull": "up", "inverted": True},  # dry contact closed = running: 1
    "meter": {"sample_ms": 2000, "current_level": 0},  # BL0937: SEL low = current
    "modbus": {"uart": 2, "baudrate": 9600},
}

# What the board carries, for tools and people (the drivers are in firmware/hal.py).
PERIPHERALS = (
    "relay x2 (GPIO26, GPIO27)",
    "digital input (GPIO33)",
    "DS18B20 1-Wire (GPIO4)",
    "BL0937 power meter (CF GPIO35, CF1 GPIO34, SEL GPIO25)",
    "RS-485 Modbus RTU on UART2 (TX GPIO19, RX GPIO18, DE GPIO23)",
    "RTC memory 2 KB (kept through deep sleep)",
    "deep sleep",
    "OTA partitions with rollback (firmware/ota.py)",
)


def make(role, **options):
    """The board for a role: "thermostat", "smart_plug" or "heat_pump". Keyword
    arguments (a device config's "board" entry) replace OPTIONS entries by name,
    e.g. make("smart_plug", meter={"sample_ms": 4000, "current_level": 1})."""
    return hal.make(NAME, PORT, PINS, OPTIONS, role, options)
