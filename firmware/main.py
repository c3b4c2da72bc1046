"""Board entry point: everything else is precompiled (.mpy), so boot compiles nothing.

On the unix port, from the built image: micropython build/mpy/x64/main.py device.json
(see device.py).
"""
import sys

import device

sys.exit(device.main())
