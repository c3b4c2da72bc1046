"""Small state files on the device's flash, replaced atomically.

A write goes to a temporary file that is then renamed over the old one, so a
power cut leaves either the old or the new content, never a torn file (POSIX
and littlefs both rename atomically). Reading a missing file gives None.
"""
import json
import os


def load(path):
    """The JSON value stored at path, or None if there is none (or it is unreadable)."""
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def save(path, value):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(value, f)
    os.rename(tmp, path)
