"""What a device's verified uplink frame means to the cloud, as named JSON-ready fields.

The device side numbers everything (SPEC.md sections 6 and 12); the cloud's API,
dashboard and plugins name it. The numbers come from the library's tables
(spot.messages, spot.role_codes), which tests/test_role_codes.py holds the firmware's
private copies to.
"""
from __future__ import annotations

from typing import Any

from spot import frame, messages
from spot import role_codes as R  # the role's report and capability keys (SPEC.md 12)
from spot.objects import Analog, Schedule, Time, Unknown

STATUS_NAMES = {messages.ACK_APPLIED: "applied", messages.ACK_ADAPTED: "adapted",
                messages.ACK_REFUSED: "refused", messages.ACK_EXPIRED: "expired",
                messages.ACK_UNSUPPORTED: "unsupported"}
ROLE_NAMES = {R.ROLE_THERMOSTAT: "thermostat", R.ROLE_SMART_PLUG: "smart_plug",
              R.ROLE_HEAT_PUMP: "heat_pump"}
SG_NAMES = {1: "blocked", 2: "normal", 3: "recommended on", 4: "forced on"}
REASONS = {4: "bad payload", 5: "oversized", 7: "unknown mandatory field", 9: "a value the device cannot take",
           R.R_RANGE: "outside the device's range", R.R_MIN_TIMES: "minimum on/off times",
           R.R_FROST: "frost protection", R.R_MAX_BLOCK: "longest block reached",
           R.R_POWER_FLOOR: "power floor (EnWG 14a)", R.R_OVERCURRENT: "over-current trip",
           R.R_SENSOR: "sensor fault", R.R_ON_OFF_ONLY: "on/off only",
           R.R_SAFE_MODE: "safe mode", R.R_UNKNOWN_SETTING: "unknown setting", R.R_STORE: "store limits",
           R.R_DR_IN_FORCE: "demand response in force"}

STATE_FIELDS = {R.S_ROLE: "role", R.S_TEMP: "temp_c", R.S_TARGET: "target_c", R.S_OUTPUTS: "outputs",
                R.S_POWER_W: "power_w", R.S_ENERGY_WH: "energy_wh", R.S_SG: "sg_state",
                R.S_FAULT: "fault", R.S_RESET: "reset_cause", R.S_DR: "dr_kind",
                R.S_CURRENT_MA: "current_ma", R.S_BLOCKED_S: "blocked_today_s", R.S_TIME: "time"}
DECI = {"temp_c", "target_c"}  # reported in 0.1 C
CAP_FIELDS = {R.C_ROLE: "role", R.C_CONTROL: "s2_control", R.C_NOMINAL_W: "nominal_w",
              R.C_SHED_W: "shed_w", R.C_MAX_SHED_S: "max_shed_s", R.C_MIN_ON_S: "min_on_s",
              R.C_MIN_OFF_S: "min_off_s", R.C_COMFORT: "comfort_c", R.C_FROST: "frost_c",
              R.C_MODES: "modes", R.C_MAX_BLOCK_S: "max_block_s",
              R.C_MAX_BLOCK_DAY_S: "max_block_day_s", R.C_FEATURES: "features",
              R.C_POWER_FLOOR_W: "power_floor_w", R.C_STORE: "store_c"}
DECI_CAPS = {"comfort_c", "frost_c", "store_c"}
METER_FIELDS = {messages.K_MR_TIME: "time", messages.K_MR_POWER: "power_w",
                messages.K_MR_ENERGY: "energy_wh", messages.K_MR_RELAY: "relay"}


def plain(v: Any) -> Any:
    """A decoded CBOR value as JSON: Analog -> number, Time -> epoch s."""
    if isinstance(v, Analog):
        return v.value * 10 ** v.scale if v.scale else v.value
    if isinstance(v, Time):
        return v.seconds
    if isinstance(v, Schedule):
        return {"base": v.base, "offsets": list(v.offsets), "values": list(v.values)}
    if isinstance(v, Unknown):
        return None
    if isinstance(v, (bytes, bytearray)):
        return v.hex()
    if isinstance(v, list):
        return [plain(x) for x in v]
    if isinstance(v, dict):
        return {str(k): plain(x) for k, x in v.items()}
    return v


def _named(body: dict, names: dict[int, str], deci: set[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in body.items():
        if k == messages.K_KIND or not isinstance(k, int):
            continue
        name = names.get(k, f"k{k}")
        v = plain(v)
        if name in deci:
            v = [x / 10 for x in v] if isinstance(v, list) else (v / 10 if isinstance(v, (int, float)) else v)
        out[name] = v
    if "role" in out:
        out["role"] = ROLE_NAMES.get(out["role"], out["role"])
    if "reset_cause" in out and isinstance(out["reset_cause"], int) and out["reset_cause"] < len(R.RESETS):
        out["reset_cause"] = R.RESETS[out["reset_cause"]]
    return out


def classify(f: Any, body: dict) -> tuple[str, Any]:
    """(what, value) for a verified frame: ("ack", (seq, status, reason)), ("state", {...}),
    ("capabilities", {...}), ("meter", {...}), ("timesync", echo) or ("other", None)."""
    if f.service == messages.SVC_CORE and f.cls == frame.CLASS_ACK:
        seq, status = body.get(messages.K_ACK_SEQ), body.get(messages.K_ACK_STATUS)
        # A frame's sequence number and a reason code (SPEC 3.4, 12.3): anything else is
        # no ACK, or no reason (a value a database column could not hold never reaches it).
        if (messages.is_int(seq) and 0 <= seq <= 0xFFFFFFFF and messages.is_int(status)
                and status in STATUS_NAMES):
            reason = body.get(messages.K_ACK_REASON)
            ok = messages.is_int(reason) and 0 <= reason <= 0xFFFF
            return "ack", (seq, STATUS_NAMES[status], reason if ok else None)
        return "other", None
    if f.service == messages.SVC_CORE and f.cls == frame.CLASS_TIMESYNC:
        echo = body.get(messages.K_TS_ECHO)
        return ("timesync", echo) if isinstance(echo, int) else ("other", None)
    if f.service == messages.SVC_DEVICE and f.cls == frame.CLASS_REPORT:
        kind = body.get(messages.K_KIND)
        if kind == R.REPORT_STATE:
            return "state", _named(body, STATE_FIELDS, DECI)
        if kind == R.REPORT_CAPS:
            return "capabilities", _named(body, CAP_FIELDS, DECI_CAPS)
    if f.service == messages.SVC_METER and f.cls == frame.CLASS_REPORT:
        return "meter", _named(body, METER_FIELDS, set())
    return "other", None
