"""The role contract's numbers by name (SPEC.md 12): ACK statuses and reasons, roles,
capability, state and command keys, and DEV_CONFIG's setting keys.

The host reads them here: the cloud's decoders and command builders, the plugins,
the tests. A board never imports this module. Each firmware module keeps the numbers
it uses as private consts (`_R_RANGE = const(32)`), which mpy-cross folds into the
code: a public name costs a board about 60 bytes of heap (its global and its
string), and role.py's 74 of them cost 4.7 KB on a 32-bit port.
tests/test_role_codes.py checks that every private copy agrees with this table.
"""
try:
    from micropython import const
except ImportError:
    from spot._cpython import const

# ACK statuses (spot.messages).
APPLIED = const(0)
ADAPTED = const(1)
REFUSED = const(2)
EXPIRED = const(3)
UNSUPPORTED = const(4)

# ACK reasons a role gives (SPEC.md 12.3). Codes under 32 are the codec's (errors.py).
R_RANGE = const(32)  # a value outside what the device can do
# (9, a field of the wrong type, is the codec's: spot.errors.BAD_VALUE; SPEC 6)
R_MIN_TIMES = const(33)  # delayed or shortened by minimum on/off (run/off) times
R_FROST = const(34)  # frost protection keeps heating whatever was asked
R_MAX_BLOCK = const(35)  # a blocked (shed) period shortened to the device's maximum
R_POWER_FLOOR = const(36)  # a power limit raised to the floor the rules leave (4.2 kW)
R_OVERCURRENT = const(37)  # the relay tripped on over-current: reset it with a command
R_SENSOR = const(38)  # a sensor failed or reads nonsense: the device runs a safe fallback
R_ON_OFF_ONLY = const(39)  # a proportional request carried out as all or nothing
R_SAFE_MODE = const(40)  # repeated failed boots: outputs held safe, commands refused
R_UNKNOWN_SETTING = const(41)
R_STORE = const(42)  # a heat pump's store too cold to block or too hot to force
R_DR_IN_FORCE = const(43)  # held back by a demand-response event in force

# Roles (capability record key 1) and S2 control types (EN 50491-12-2).
ROLE_THERMOSTAT = const(1)
ROLE_SMART_PLUG = const(2)
ROLE_HEAT_PUMP = const(3)
# 2 power profile (PPBC), 3 operation modes (OMBC) and 5 demand driven (DDBC) are
# the S2 types no role here uses.
S2_PEBC = const(1)  # power envelope
S2_FRBC = const(4)  # fill rate (a storage: a room's or a buffer's heat)
# Matter Device Energy Management feature bits a device offers.
DEM_POWER_ADJUST = const(1)
DEM_PAUSE = const(2)
DEM_START_TIME = const(4)
DEM_FORECAST_ADJUST = const(8)  # 16, power forecast reporting, no role offers yet

# Capability record keys (SPEC.md 12.4).
C_ROLE = const(1)
C_CONTROL = const(2)
C_NOMINAL_W = const(3)
C_SHED_W = const(4)  # what it could shed now
C_MAX_SHED_S = const(5)
C_MIN_ON_S = const(6)
C_MIN_OFF_S = const(7)
C_COMFORT = const(8)  # [low, high] in 0.1 C
C_FROST = const(9)  # 0.1 C
C_MODES = const(10)
C_MAX_BLOCK_S = const(11)
C_MAX_BLOCK_DAY_S = const(12)
C_FEATURES = const(13)
C_POWER_FLOOR_W = const(14)
C_STORE = const(15)  # [now, min, max] of the store (0.1 C) for fill-rate planning

# State report keys (SPEC.md 12.5).
S_ROLE = const(1)
S_TEMP = const(2)  # 0.1 C
S_TARGET = const(3)  # 0.1 C
S_OUTPUTS = const(4)  # relay bits
S_POWER_W = const(5)
S_ENERGY_WH = const(6)
S_SG = const(7)
S_FAULT = const(8)  # a reason code while something is wrong
S_RESET = const(9)  # the reset cause, in the first report after a boot
S_DR = const(10)  # the demand-response kind in force (0: none)
S_CURRENT_MA = const(11)
S_BLOCKED_S = const(12)  # blocked today
S_TIME = const(13)

# Device commands (SVC_DEVICE, CLASS_COMMAND) and their keys (SPEC.md 12.2).
DEV_SETPOINT = const(1)  # thermostat: K_DEV_VALUE Analog in C, K_DEV_DURATION s
DEV_RELAY = const(2)  # smart plug: K_DEV_VALUE 0 or 1 (1 also clears an over-current trip)
DEV_SG_STATE = const(3)  # heat pump: K_DEV_VALUE SG Ready state 1..4, K_DEV_DURATION s
DEV_CONFIG = const(4)  # K_DEV_SETTINGS: {setting key: int}
K_DEV_VALUE = const(1)
K_DEV_DURATION = const(2)
K_DEV_SETTINGS = const(3)
# Reports (SVC_DEVICE, CLASS_REPORT): key 0 says which.
REPORT_STATE = const(1)
REPORT_CAPS = const(2)

RESETS = ("power_on", "hard", "watchdog", "deep_sleep", "soft")

# Setting keys of a DEV_CONFIG command; their ranges and the check: role_config.py.
CFG_TELEMETRY_S = const(1)
CFG_POWER_ON = const(2)  # 0 off, 1 on, 2 as before the power cut
CFG_CAL_U = const(3)  # uV per count
CFG_CAL_I = const(4)  # uA per count
CFG_CAL_P = const(5)  # mW per count
CFG_LIMIT_MA = const(6)
CFG_HYSTERESIS = const(7)  # 0.1 C
CFG_FROST = const(8)  # 0.1 C
CFG_MIN_ON_S = const(9)
CFG_MIN_OFF_S = const(10)
CFG_MAX_SHED_S = const(11)
CFG_MAX_BLOCK_DAY_S = const(12)
CFG_MODBUS_UNIT = const(13)
CFG_SETPOINT = const(14)  # 0.1 C: the default when no program is in force
