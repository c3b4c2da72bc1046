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


def _read(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def load(path):
    """The JSON value stored at path, or None if there is none (or it is unreadable).

    A FAT volume renames over a file by removing it first: a cut between the
    two leaves only the complete temporary file, which is then the value.
    """
    value = _read(path)
    if value is None:
        try:
            os.stat(path)
        except OSError:
            return _read(path + ".tmp")
    return value


def save(path, value):
    tmp = path + ".tmp"
    hook = fault  # read once: a test may set or clear it from another thread meanwhile
    if not hook:
        # Streamed: the file's text is never whole in RAM (a journal's is a few KB,
        # and its halves another copy, on a heap that holds everything else too).
        with open(tmp, "w") as f:
            json.dump(value, f)
    else:
        data = json.dumps(value)
        with open(tmp, "w") as f:
            hook("open")
            half = len(data) >> 1
            f.write(data[:half])
            hook("half")
            f.write(data[half:])
    # Keys live in some of these files. Boards' os has no chmod: asked, not tried (an
    # AttributeError and its traceback were heap at every write).
    if hasattr(os, "chmod"):
        try:
            os.chmod(tmp, 0o600)
        except OSError:
            pass
    if hook:
        hook("rename")
    os.rename(tmp, path)
