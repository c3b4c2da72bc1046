"""The messages behind SPEC.md's test vectors, built with the library's own builders.

The keys here are published test keys: never use them on a real device.
"""
from spot import builders, frame, messages
from spot.keyring import GROUP_CLASSES, Key
from spot.objects import UNIT_W, UNIT_WH, Analog

CONTROLLER = 0x00010001  # a site controller
PLUG = 0x00000107  # a smart plug's device id
SITE_GROUP = 0x80000001  # every device of one site
T0 = 1795651200  # 2026-11-26T00:00:00Z
PRICES = [8520, 8015, 7840, 7695, 7730, 8210, 9560, 11825, 13140, 12005, 10470, 9630,
          9215, 9080, 9445, 10360, 12590, 14830, 15275, 13910, 11745, 10120, 9385, 8860]
# A day of quarter-hour prices (EU day-ahead since 2025): each hour's price
# stepped linearly towards the next hour's, in whole EUR/MWh (scale 0).
PRICES96 = [(PRICES[i // 4] * (4 - i % 4) + PRICES[min(i // 4 + 1, 23)] * (i % 4) + 200) // 400
            for i in range(96)]
PAIR_SECRET = bytes(range(32))  # controller <-> plug, key id 1
GROUP_SECRET = bytes(range(32, 64))  # the site's group key, key id 200
PAIR_ID = 1
GROUP_ID = 200


# What the plug keeps (its filter table), as its discovery answer says it:
# core (COMMAND, TIMESYNC, DISCOVERY), demand response, forecasts, schedules, roles.
PLUG_SERVICES = [(1, 0x31, 1, 1), (2, 0x01, 1, 1), (3, 0x02, 1, 1), (5, 0x01, 1, 1), (6, 0x01, 1, 1)]


def plug_keys():
    """The plug's view: what the controller may send it, under which key."""
    return [Key(PAIR_ID, CONTROLLER, PAIR_SECRET, 0xFF, admin=True),
            Key(GROUP_ID, CONTROLLER, GROUP_SECRET, GROUP_CLASSES, group=True)]


def controller_keys():
    """The controller's view: what the plug may send it."""
    return [Key(PAIR_ID, PLUG, PAIR_SECRET, (1 << frame.CLASS_REPORT) | (1 << frame.CLASS_ACK)
                | (1 << frame.CLASS_DISCOVERY))]


def valid():
    """(name, frame bytes) for one frame of every message kind."""
    pair = plug_keys()[0]
    group = plug_keys()[1]
    power, energy = Analog(12345, UNIT_W, -1), Analog(987654, UNIT_WH, -1)
    return [
        ("command-reduce-power", builders.reduce_power(PLUG, CONTROLLER, 1001, 20, T0 + 17 * 3600, 7200, key=pair)),
        ("info-price-forecast", builders.price_forecast(SITE_GROUP, CONTROLLER, 1002, T0, 3600, PRICES, -2, key=group)),
        ("report-meter", builders.meter_report(CONTROLLER, PLUG, 77, T0 + 12 * 3600, power, energy, True, key=pair)),
        ("report-meter-encrypted", builders.meter_report(CONTROLLER, PLUG, 78, T0 + 12 * 3600, power, energy, True,
                                                          key=pair, encrypt=True)),
        ("ack-applied", builders.ack(CONTROLLER, PLUG, 79, 1001, messages.ACK_APPLIED, key=pair)),
        ("timesync", builders.time_sync(PLUG, CONTROLLER, 1003, T0 + 43200, 250, key=pair)),
        ("discovery-unsecured", builders.discovery(frame.BROADCAST, CONTROLLER, 1004)),
        # Version 1.1
        ("info-price-forecast-96", builders.price_forecast(SITE_GROUP, CONTROLLER, 1005, T0, 900, PRICES96, 0,
                                                           key=group)),
        ("discovery-answer", builders.discovery_answer(CONTROLLER, PLUG, 80, PLUG_SERVICES, 2, key=pair)),
    ]
