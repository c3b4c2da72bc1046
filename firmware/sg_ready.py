"""SG Ready: the four operating states of a heat pump on two relay contacts.

The contacts are written "sg1 sg2" (1 = closed), as the SG Ready label
(Bundesverband Waermepumpe) defines them:
  1 BLOCKED      "10"  the compressor must stop (a grid operator's block; limited in length)
  2 NORMAL       "00"  the heat pump runs on its own controller
  3 RECOMMENDED  "01"  run if you can: the unit raises its own targets
  4 FORCED       "11"  run now (within the unit's own safety limits)
"""
try:
    from micropython import const
except ImportError:
    from spot._cpython import const

BLOCKED = const(1)
NORMAL = const(2)
RECOMMENDED = const(3)
FORCED = const(4)

_CONTACTS = ((1, 0), (0, 0), (0, 1), (1, 1))


def contacts(state):
    """(sg1, sg2) for a state 1..4."""
    return _CONTACTS[state - 1]


def state_of(sg1, sg2):
    """The state two contacts encode."""
    return _CONTACTS.index((1 if sg1 else 0, 1 if sg2 else 0)) + 1
