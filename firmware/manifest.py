# Freeze the device application (MicroPython manifest format): every board's
# manifest includes this file; the ESP32's adds ota.py. Keep in step with firmware/.
# Frozen into a unix port, the build needs MPY_CROSS_FLAGS=-march=x64 (or x86): the
# hot path is viper code (boards/README.md, "Freezing into a firmware image").
require("onewire")
require("ds18x20")
# Whatever umqtt.simple your micropython-lib checkout has: 1.3.4 (what `make build`
# fetches) and 1.4 to 1.7.0 (whose connect() calls sock.settimeout()) all work, as
# spot/mqtt_link.py hands umqtt its own bounded sockets (tests/test_frozen_umqtt.py).
require("umqtt.simple")
include("../lib/spot/manifest.py")
for name in (
    "connected.py",
    "local_control.py",
    "device.py",
    "hal.py",
    "heat_pump.py",
    "modbus_rtu.py",
    "net.py",
    "node.py",
    "role.py",
    "role_config.py",
    "role_report.py",
    "safe_mode.py",
    "sg_ready.py",
    "smart_plug.py",
    "svc_dr.py",
    "svc_keys.py",
    "svc_price.py",
    "svc_role.py",
    "svc_schedule.py",
    "svc_status.py",
    "thermostat.py",
):
    module(name)
