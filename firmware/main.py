"""Board entry point: everything else is precompiled (.mpy), so boot compiles nothing.

On the unix port: micropython firmware/main.py device.json (see device.py).
"""
import sys

import device

sys.exit(device.main())
