"""A role's settings command (SVC_DEVICE DEV_CONFIG, SPEC.md 12.2): the range of
every setting key, and the check that takes all of a command or none of it.

Loaded by Role.configure on the first settings command; a device is configured
rarely, and between those commands this module holds no heap.
"""
try:
    from micropython import const
except ImportError:
    from spot._cpython import const

import role
from role import APPLIED, R_RANGE, REFUSED
from spot.messages import is_int

_BAD_VALUE = const(9)  # spot.errors.BAD_VALUE: a field of the wrong type (SPEC 6)
_R_UNKNOWN_SETTING = const(41)  # role.py's: a setting this role does not have

# Setting key -> (lowest, highest); shared by all roles, each accepts the ones it has.
# The keys as role.CFG_*: no global of this module per setting (its heap while loaded).
RANGES = {
    role.CFG_TELEMETRY_S: (10, 86400),
    role.CFG_POWER_ON: (0, 2),
    role.CFG_CAL_U: (1, 10000000),
    role.CFG_CAL_I: (1, 10000000),
    role.CFG_CAL_P: (1, 10000000),
    role.CFG_LIMIT_MA: (100, 16000),
    role.CFG_HYSTERESIS: (2, 30),
    role.CFG_FROST: (30, 100),
    role.CFG_MIN_ON_S: (0, 3600),
    role.CFG_MIN_OFF_S: (0, 3600),
    role.CFG_MAX_SHED_S: (60, 86400),
    role.CFG_MAX_BLOCK_DAY_S: (0, 86400),
    role.CFG_MODBUS_UNIT: (0, 247),
    role.CFG_SETPOINT: (50, 300),
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
