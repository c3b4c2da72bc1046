"""Raspberry Pi Pico W (RP2040 + CYW43439): its pin map, and the board a role is handed (MIT licence).

One wiring serves all three roles: relay channel 1 (GP16) is the thermostat's
`heat`, the plug's `load` and the heat pump's `sg1`; input 1 (GP14) is `window`,
`button` or `compressor`; the 1-Wire bus (GP22) is `room` or `store`.
Kept clear of: GP23, GP24, GP25 and GP29, which the Pico W gives to the CYW43
radio (power, SPI data/IRQ, chip select, clock; GP29 also reads VSYS), and GP0/GP1
(UART0, left for a debug console). The same pin map serves the Pico 2 W (RP2350).
"""
import hal

NAME = "rp2040_picow"
PORT = "rp2"
ARCH = "armv6m"

PINS = {
    # relays (transistor/SSR drivers, high = energised)
    "heat": 16,
    "load": 16,
    "sg1": 16,
    "sg2": 17,
    # digital input (contact to GND, internal pull-up)
    "window": 14,
    "button": 14,
    "compressor": 14,
    # DS18B20 1-Wire data (external 4.7 kOhm pull-up to 3V3)
    "room": 22,
    "store": 22,
    # BL0937 metering chip
    "cf": 10,
    "cf1": 11,
    "sel": 12,
    # RS-485 transceiver for Modbus RTU on UART1 (TX must be GP4/8/20, RX GP5/9/21)
    "modbus_tx": 4,
    "modbus_rx": 5,
    "modbus_de": 6,
}

OPTIONS = {
    "window": {"pull": "up"},  # reed contact closed (window shut) pulls low: 1 = open
    "button": {"pull": "up", "inverted": True},  # 1 = pressed
    "compressor": {"pull": "up", "inverted": True},  # dry contact closed = running: 1
    "meter": {"sample_ms": 2000, "current_level": 0},  # BL0937: SEL low = current
    "modbus": {"uart": 1, "baudrate": 9600},
}

PERIPHERALS = (
    "relay x2 (GP16, GP17)",
    "digital input (GP14)",
    "DS18B20 1-Wire (GP22)",
    "BL0937 power meter (CF GP10, CF1 GP11, SEL GP12)",
    "RS-485 Modbus RTU on UART1 (TX GP4, RX GP5, DE GP6)",
    "lightsleep (chained, at most 71 min a step)",
    "CYW43439 Wi-Fi (powered down around lightsleep)",
)


def make(role, **options):
    """The board for a role: "thermostat", "smart_plug" or "heat_pump". Keyword
    arguments (a device config's "board" entry) replace OPTIONS entries by name,
    e.g. make("smart_plug", meter={"sample_ms": 4000, "current_level": 1})."""
    return hal.make(NAME, PORT, PINS, OPTIONS, role, options)
