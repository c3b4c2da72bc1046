"""The board's network: Wi-Fi up before a wake's radio work, within its budget.

config.json "wifi": {"ssid": "...", "password": "..."} (spot deploy --set
wifi='{"ssid": "home", "password": "..."}'). Without it, or where there is no
`network` module (the unix port, a board on Ethernet), the network is taken as
it is. The RP2040's CYW43 radio is powered down around lightsleep
(boards/rp2040_picow), so each wake brings the interface up again.
"""
try:
    from time import sleep_ms, ticks_diff, ticks_ms
except ImportError:
    from spot._cpython import sleep_ms, ticks_diff, ticks_ms


def up(cfg, budget_ms=10000, wait=None):
    """True when the station is connected (or nothing is asked of it); never raises.
    wait() is called while it waits (the watchdog, the role's control step)."""
    w = cfg.get("wifi")
    if not w:
        return True
    try:
        import network
    except ImportError:
        return True
    try:
        sta = network.WLAN(network.STA_IF)
        sta.active(True)
        if sta.isconnected():
            return True
        sta.connect(w["ssid"], w.get("password", ""))
        t0 = ticks_ms()
        while not sta.isconnected():
            if ticks_diff(ticks_ms(), t0) > budget_ms:
                return False  # the wake goes on; the link fails and backs off
            if wait is not None:
                wait()
            sleep_ms(50)
        return True
    except (OSError, KeyError, TypeError):
        return False
