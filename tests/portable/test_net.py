"""firmware/net.py: Wi-Fi up when asked, never an exception, within its budget."""
import sys


class _WLAN:
    STA_IF = 0
    log = []
    joins_after = 2  # isconnected() polls before the access point accepts

    def __init__(self, _iface):
        self.polls = 0

    def active(self, on):
        _WLAN.log.append(("active", on))

    def isconnected(self):
        self.polls += 1
        return _WLAN.joins_after is not None and self.polls > _WLAN.joins_after

    def connect(self, ssid, password):
        _WLAN.log.append(("connect", ssid, password))


class _network:  # noqa: N801 - stands in for MicroPython's module of that name
    STA_IF = 0
    WLAN = _WLAN


def _with_network(fn):
    sys.modules["network"] = _network
    try:
        return fn()
    finally:
        del sys.modules["network"]


def test_nothing_asked_nothing_done():
    import net

    _WLAN.log = []
    assert _with_network(lambda: net.up({})) is True
    assert _WLAN.log == []


def test_connects_with_the_configured_credentials():
    import net

    _WLAN.log = []
    _WLAN.joins_after = 2
    cfg = {"wifi": {"ssid": "home", "password": "secret"}}
    waited = []
    assert _with_network(lambda: net.up(cfg, 2000, lambda: waited.append(1))) is True
    assert ("connect", "home", "secret") in _WLAN.log
    assert len(waited) >= 1  # the watchdog is fed and the role kept in control meanwhile


def test_an_access_point_that_never_answers_costs_the_budget_not_the_wake():
    import net

    _WLAN.joins_after = None
    assert _with_network(lambda: net.up({"wifi": {"ssid": "x"}}, 200)) is False
    assert net.up({"wifi": {"ssid": "x"}}) is True  # no network module: the network as it is
