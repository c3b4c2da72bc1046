"""Direct local control (SPEC.md 13): a controller on the LAN talks SPOT over UDP to devices.

controller.LocalController finds devices by multicast discovery and sends them the
commands of `spot ctl` (host_tools/cloud/command_kinds.py), sealed under the
pairwise key `spot pair` issued; cli.py is `spot local discover | command | state`.
"""
