"""A role's settings command (SVC_DEVICE DEV_CONFIG, SPEC.md 12.2): the range of
every setting key, and the check that takes all of a command or none of it.

Loaded by Role.configure on the first settings command; a device is configured
rarely, and between those commands this module holds no heap.
"""
try:
    from micropython import const
except ImportError:
    from spot._cpython import const

from role import (APPLIED, CFG_CAL_I, CFG_CAL_P, CFG_CAL_U, CFG_FROST, CFG_HYSTERESIS,
                  CFG_LIMIT_MA, CFG_MAX_BLOCK_DAY_S, CFG_MAX_SHED_S, CFG_MIN_OFF_S,
                  CFG_MIN_ON_S, CFG_MODBUS_UNIT, CFG_POWER_ON, CFG_SETPOINT, CFG_TELEMETRY_S,
                  R_RANGE, REFUSED)
from spot.messages import is_int

_BAD_VALUE = const(9)  # spot.errors.BAD_VALUE: a field of the wrong type (SPEC 6)
_R_UNKNOWN_SETTING = const(41)  # role.py's: a setting this role does not have

# Setting key -> (lowest, highest); shared by all roles, each accepts the ones it has.
RANGES = {
    CFG_TELEMETRY_S: (10, 86400),
    CFG_POWER_ON: (0, 2),
    CFG_CAL_U: (1, 10000000),
    CFG_CAL_I: (1, 10000000),
    CFG_CAL_P: (1, 10000000),
    CFG_LIMIT_MA: (100, 16000),
    CFG_HYSTERESIS: (2, 30),
    CFG_FROST: (30, 100),
    CFG_MIN_ON_S: (0, 3600),
    CFG_MIN_OFF_S: (0, 3600),
    CFG_MAX_SHED_S: (60, 86400),
    CFG_MAX_BLOCK_DAY_S: (0, 86400),
    CFG_MODBUS_UNIT: (0, 247),
    CFG_SETPOINT: (50, 300),
}


def configure(role, settings):
    """(status, reason): every setting known to the role and within its range, or none
    taken."""
    if not isinstance(settings, dict):
        return REFUSED, _BAD_VALUE
    if not settings:
        return REFUSED, R_RANGE
    for k, v in settings.items():
        if k not in role.DEFAULTS:
            return REFUSED, _R_UNKNOWN_SETTING
        if not is_int(v):
            return REFUSED, _BAD_VALUE
        lo, hi = RANGES[k]
        if not lo <= v <= hi:
            return REFUSED, R_RANGE
    for k, v in settings.items():
        role.cfg[str(k)] = v
    return APPLIED, 0
