"""Run portable test modules under the MicroPython unix port; one result line per test.

usage: micropython tests/mp_runner.py LIBDIR MODULE...
LIBDIR is lib (the .py sources) or build/mpy/x64 (the precompiled library).
Prints `ok NAME`, `skip NAME: why` or `FAIL NAME: error`, then `done`.
"""
import sys

lib, modules = sys.argv[1], sys.argv[2:]
here = __file__.rsplit("/", 1)[0] if "/" in __file__ else "."
root = here + "/.."
# Device code beside the library: the firmware and the virtual boards' peripheral models.
sys.path[:0] = [lib, here + "/portable", root + "/firmware", root + "/boards/virtual"]

from expect import Skip  # noqa: E402

for modname in modules:
    mod = __import__(modname)
    for name in sorted(dir(mod)):
        fn = getattr(mod, name)
        if not name.startswith("test_") or not callable(fn):
            continue
        label = modname + "." + name
        try:
            fn()
        except Skip as e:
            print("skip", label + ":", e)
        except Exception as e:  # report, keep going: one failure must not hide others
            sys.print_exception(e)
            print("FAIL", label + ":", repr(e))
        else:
            print("ok", label)
print("done")
