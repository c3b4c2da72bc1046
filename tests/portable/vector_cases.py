"""The messages behind SPEC.md's test vectors, built with the library's own builders."""
from spot import frame, messages
from spot.objects import UNIT_W, UNIT_WH, Analog

CONTROLLER = 0x00010001  # a site controller
PLUG = 0x00000107  # a smart plug's device id
SITE_GROUP = 0x80000001  # every device of one site
T0 = 1795651200  # 2026-11-26T00:00:00Z
PRICES = [8520, 8015, 7840, 7695, 7730, 8210, 9560, 11825, 13140, 12005, 10470, 9630,
          9215, 9080, 9445, 10360, 12590, 14830, 15275, 13910, 11745, 10120, 9385, 8860]


def valid():
    """(name, frame bytes) for one frame of every message kind."""
    return [
        ("command-reduce-power", messages.reduce_power(PLUG, CONTROLLER, 1001, 20, T0 + 17 * 3600, 7200)),
        ("info-price-forecast", messages.price_forecast(SITE_GROUP, CONTROLLER, 1002, T0, 3600, PRICES, -2)),
        ("report-meter", messages.meter_report(CONTROLLER, PLUG, 77, T0 + 12 * 3600,
                                               Analog(12345, UNIT_W, -1), Analog(987654, UNIT_WH, -1), True)),
        ("ack-applied", messages.ack(CONTROLLER, PLUG, 78, 1001, messages.ACK_APPLIED)),
        ("timesync", messages.time_sync(frame.BROADCAST, CONTROLLER, 1003, T0 + 43200, 250)),
        ("discovery-unsecured", messages.discovery(frame.BROADCAST, CONTROLLER, 1004)),
    ]
