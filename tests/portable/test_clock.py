"""The clock model: offsets, skew, refusals, suspect samples and jumps, persistence."""
from spot import clock
from spot.clock import Clock

T = 1795651200000  # 2026-11-26T00:00Z in ms


class _Osc:
    """A clock running `ppm` fast, starting `off` ms behind true time."""

    def __init__(self, ppm, off):
        self.ppm = ppm
        self.off = off

    def local(self, t):
        return t - self.off + ((t - T) * self.ppm) // 1000000


def _exchange(c, osc, t, up=100, down=100):
    return c.add(osc.local(t), t + up, t + up + 1, osc.local(t + up + 1 + down))


def test_one_sample_sets_the_offset():
    c = Clock()
    osc = _Osc(0, 3600000)
    assert _exchange(c, osc, T, 50, 50) == clock.OK
    assert abs(c.true_ms(osc.local(T + 1000)) - (T + 1000)) <= 60


def test_skew_is_learned_and_corrects_long_sleeps():
    osc = _Osc(40000, 12345)  # 4 % fast
    c = Clock()
    for h in range(0, 13, 3):
        assert _exchange(c, osc, T + h * 3600000) == clock.OK
    assert abs(c.skew + 40000000 * 1000000000 // 1040000000) < 1000000  # within 0.1 %
    later = T + 18 * 3600000  # six hours after the last exchange
    assert abs(c.true_ms(osc.local(later)) - later) < 2000
    plain = Clock(use_skew=False)
    for h in range(0, 13, 3):
        _exchange(plain, osc, T + h * 3600000)
    assert abs(plain.true_ms(osc.local(later)) - later) > 600000  # 4 % of 6 h, uncorrected
    assert c.local_ms(later) == osc.local(later) or abs(c.local_ms(later) - osc.local(later)) < 2000


def test_local_ms_inverts_true_ms_exactly():
    c = Clock()
    osc = _Osc(-30000, -5000)
    for h in (0, 4, 8):
        _exchange(c, osc, T + h * 3600000)
    for t in (T, T + 9 * 3600000 + 7, T + 30 * 86400000):
        l = c.local_ms(t)
        assert c.true_ms(l) >= t > c.true_ms(l - 1)


def test_nonsense_is_refused_and_changes_nothing():
    c = Clock()
    osc = _Osc(0, 0)
    _exchange(c, osc, T)
    before = c.to_record()
    assert c.add(0, 1000, 1001, 10) == clock.REFUSED_TIME  # 1970: from the far past
    assert c.add(osc.local(T), 5000000000000, 5000000000001, osc.local(T) + 10) == clock.REFUSED_TIME
    assert c.add(osc.local(T) + 100, T, T + 1, osc.local(T)) == clock.REFUSED_ORDER  # negative round trip
    assert c.add(osc.local(T), T + 5, T + 1, osc.local(T) + 10) == clock.REFUSED_ORDER
    assert c.add(osc.local(T), T + 15000, T + 15001, osc.local(T) + 30000) == clock.REFUSED_SLOW
    assert c.to_record() == before


def test_one_bad_sample_is_never_trusted_two_agreeing_ones_are_a_jump():
    osc = _Osc(0, 0)
    c = Clock()
    for h in (0, 1, 2):
        _exchange(c, osc, T + h * 3600000)
    jumped = _Osc(0, -3600000)  # the device's clock now reads an hour ahead
    t = T + 3 * 3600000
    assert _exchange(c, jumped, t) == clock.SUSPECT
    assert abs(c.true_ms(jumped.local(t)) - (t + 3600000)) < 200  # still the old model
    assert _exchange(c, osc, t + 60000) == clock.OK  # a good one clears the suspicion
    assert _exchange(c, jumped, t + 120000) == clock.SUSPECT
    assert _exchange(c, jumped, t + 180000) == clock.JUMPED
    assert abs(c.true_ms(jumped.local(t + 200000)) - (t + 200000)) < 300


def test_exchanges_of_one_wake_make_one_better_sample():
    osc = _Osc(0, 0)
    c = Clock()
    _exchange(c, osc, T, 1500, 100)  # asymmetric: off by 700 ms
    _exchange(c, osc, T + 5000, 100, 1500)  # the other way
    assert len(c.samples) == 1
    assert abs(c.true_ms(osc.local(T + 6000)) - (T + 6000)) < 300


def test_model_survives_a_reboot_through_its_record():
    osc = _Osc(20000, 777)
    c = Clock()
    for h in (0, 2, 4):
        _exchange(c, osc, T + h * 3600000)
    again = Clock(c.to_record())
    t = T + 7 * 3600000
    assert again.true_ms(osc.local(t)) == c.true_ms(osc.local(t))
    assert again.error_bound_ms(osc.local(t)) == c.error_bound_ms(osc.local(t))
