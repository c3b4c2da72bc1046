# Freeze or install the SPOT library (micropython-lib manifest format).
metadata(
    description="SPOT: compact, secured, service-oriented frames for smart-grid end devices.",
    version="0.1.0",
    license="MIT",
)

package(
    "spot",
    files=(
        "__init__.py",
        "builders.py",
        "cbor.py",
        "clock.py",
        "counter.py",
        "crypto.py",
        "discover.py",
        "errors.py",
        "filter_table.py",
        "frame.py",
        "hotpath.py",
        "journal.py",
        "key_admin.py",
        "keyring.py",
        "messages.py",
        "mqtt_link.py",
        "objects.py",
        "offline.py",
        "schedule.py",
        "secure.py",
        "storage.py",
        "topics.py",
        "udp_link.py",
        "wake.py",
    ),
    base_path="..",
)
