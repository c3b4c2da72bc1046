"""Small state files on the device's flash, replaced atomically.

A write goes to a temporary file that is then renamed over the old one, so a
power cut leaves either the old or the new content, never a torn file (POSIX
and littlefs both rename atomically). Reading a missing or torn file gives None.

`fault` is a test hook: when set, it is called at each step of a write
("open", "half" with half the bytes written, "rename") and may raise to
simulate a power cut there.
"""
import json
import os

fault = None


def load(path):
    """The JSON value stored at path, or None if there is none (or it is unreadable)."""
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def save(path, value):
    data = json.dumps(value)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        if fault:
            fault("open")
        half = len(data) >> 1
        f.write(data[:half])
        if fault:
            fault("half")
        f.write(data[half:])
    if fault:
        fault("rename")
    os.rename(tmp, path)
