"""A role's settings command (SVC_DEVICE DEV_CONFIG, SPEC.md 12.2): the range of
every setting key, and the check that takes all of a command or none of it.

Loaded by Role.configure on the first settings command; a device is configured
rarely, and between those commands this module holds no heap.
"""
try:
    from micropython import const
except ImportError:
    from spot._cpython import const

from spot.payload import is_int

# The role contract's numbers this module uses (spot/role_codes.py names them all).
_APPLIED = const(0)
_CFG_TELEMETRY_S = const(1)
_CFG_POWER_ON = const(2)
_REFUSED = const(2)
_CFG_CAL_U = const(3)
_CFG_CAL_I = const(4)
_CFG_CAL_P = const(5)
_CFG_LIMIT_MA = const(6)
_CFG_HYSTERESIS = const(7)
_CFG_FROST = const(8)
_CFG_MIN_ON_S = const(9)
_CFG_MIN_OFF_S = const(10)
_CFG_MAX_SHED_S = const(11)
_CFG_MAX_BLOCK_DAY_S = const(12)
_CFG_MODBUS_UNIT = const(13)
_CFG_SETPOINT = const(14)
_R_RANGE = const(32)


_BAD_VALUE = const(9)  # spot.errors.BAD_VALUE: a field of the wrong type (SPEC 6)
_R_UNKNOWN_SETTING = const(41)  # role.py's: a setting this role does not have

# Setting key -> (lowest, highest); shared by all roles, each accepts the ones it has.
RANGES = {
    _CFG_TELEMETRY_S: (10, 86400),
    _CFG_POWER_ON: (0, 2),
    _CFG_CAL_U: (1, 10000000),
    _CFG_CAL_I: (1, 10000000),
    _CFG_CAL_P: (1, 10000000),
    _CFG_LIMIT_MA: (100, 16000),
    _CFG_HYSTERESIS: (2, 30),
    _CFG_FROST: (30, 100),
    _CFG_MIN_ON_S: (0, 3600),
    _CFG_MIN_OFF_S: (0, 3600),
    _CFG_MAX_SHED_S: (60, 86400),
    _CFG_MAX_BLOCK_DAY_S: (0, 86400),
    _CFG_MODBUS_UNIT: (0, 247),
    _CFG_SETPOINT: (50, 300),
}


def configure(role, settings):
    """(status, reason): every setting known to the role and within its range, or none
    taken."""
    if not isinstance(settings, dict):
        return _REFUSED, _BAD_VALUE
    if not settings:
        return _REFUSED, _R_RANGE
    for k, v in settings.items():
        if k not in role.DEFAULTS:
            return _REFUSED, _R_UNKNOWN_SETTING
        if not is_int(v):
            return _REFUSED, _BAD_VALUE
        lo, hi = RANGES[k]
        if not lo <= v <= hi:
            return _REFUSED, _R_RANGE
    for k, v in settings.items():
        role.cfg[str(k)] = v
    return _APPLIED, 0
