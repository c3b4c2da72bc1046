"""A test receiver that holds every key of vector_cases and keeps any frame the keys allow."""
from spot import secure
from spot.filter_table import FilterTable
from spot.keyring import Keyring

from vector_cases import controller_keys, plug_keys


def everything_table():
    t = FilterTable()
    t.any_destination(True)
    t.require_security(())
    for service in range(1, 256):
        t.set_service(service, range(8), 0, 255)
    return t


def keyring():
    ring = Keyring()
    for k in plug_keys() + controller_keys():
        ring.add(k, save=False)
    return ring


def receive(raw, ring=None, table=None):
    """open_frame with the test keys: the Frame, payload verified and decrypted."""
    return secure.open_frame(raw, table or everything_table(), ring or keyring())
