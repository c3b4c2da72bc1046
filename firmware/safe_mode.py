"""Safe mode and update confirmation: what a boot checks once, then never again.

device.py loads this module for each call and drops it afterwards (it runs at a
boot and at the boot's first healthy wake), so its code holds no heap in
between. After _SAFE_AFTER boots in a row without a healthy wake the device
starts in safe mode: outputs held safe, commands refused (R_SAFE_MODE, spot/role_codes.py).
"""
try:
    from micropython import const
except ImportError:
    from spot._cpython import const

from spot import storage

_SAFE_AFTER = const(3)
_OTA_MARKER = "ota_pending"  # ota.MARKER: an update is waiting to be confirmed


def count_boot(cfg, healthy=False):
    """Boots since the last healthy wake, on flash; True if that is too many (safe mode)."""
    path = cfg.get("dir", ".") + "/boots.json"
    n = 0 if healthy else (storage.load(path) or 0) + 1
    try:
        storage.save(path, n)
    except OSError:  # a full flash must not stop the boot
        pass
    return n > _SAFE_AFTER


def healthy(cfg, node):
    """The first good wake of a boot: the boot counter restarts, safe mode ends, and an
    ESP32 keeps the firmware it runs (an update not yet marked so rolls back at the next
    reset)."""
    count_boot(cfg, healthy=True)
    if node.role is not None:
        node.role.safe = False
    try:
        import esp32  # built in: no heap for code
    except ImportError:  # other boards, the unix port: nothing to keep
        return
    try:
        open(_OTA_MARKER).close()
    except OSError:  # no update pending (an ESP32 reboots at every wake: ota stays unloaded)
        try:
            esp32.Partition.mark_app_valid_cancel_rollback()  # harmless, and cheap
        except Exception:  # no rollback in this bootloader
            pass
        return
    try:
        import ota  # a rare path: loaded only when an update waits to be confirmed

        ota.mark_healthy()
    except Exception:
        pass
