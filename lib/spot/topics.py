"""Where SPOT addresses live on MQTT: the one place that maps them to topics.

SPOT addresses are logical; this module is the whole of the MQTT transport's
addressing:

    downlink  spot/<site>/<dst>      dst as 8 lowercase hex digits: a device's
                                     own address, a group it joined (group bit
                                     set), or ffffffff for broadcast
    uplink    spot/<site>/up/<src>   src = the sending device's address
    status    spot/<site>/status/<a> a device's availability, retained (SPEC.md 8.5)

The topic only routes; the receiver still decides from the frame header (the
hot-path filter), so a frame on the wrong topic is dropped, not trusted. A
device also publishes its end-of-queue marker to its own downlink topic
(SPEC.md "Delivery").
"""


def topic(site, address, up=False):
    """The MQTT topic of a SPOT address: where frames to it (or, up, from it) go."""
    return ("spot/%s/up/%08x" if up else "spot/%s/%08x") % (site, address)


def status(site, address):
    """A device's retained availability topic: "asleep <next wake, epoch s>" or "lost"."""
    return "spot/%s/status/%08x" % (site, address)


def uplinks(site):
    """The filter a controller subscribes to for every device's uplink."""
    return "spot/%s/up/+" % site
