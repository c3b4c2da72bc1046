"""The naive wake cycle, for comparison: connect, subscribe, wait a fixed 2 s, report.

usage: micropython naive_wake.py PORT DOWN_TOPIC UP_TOPIC REPORT_BYTES
umqtt.simple used as its README shows, with the usual "wait a while in case
more arrives". Prints one JSON object: ms awake, messages received.
"""
import json
import sys
import time

from umqtt.simple import MQTTClient

port, down, up, size = int(sys.argv[1]), sys.argv[2], sys.argv[3], int(sys.argv[4])
got = []
t0 = time.ticks_ms()
c = MQTTClient("spot-naive-" + down[-8:], "127.0.0.1", port)
c.set_callback(lambda t, m: got.append(m))
c.connect(clean_session=False)
c.subscribe(down, 1)
while time.ticks_diff(time.ticks_ms(), t0) < 2000:
    c.check_msg()
    time.sleep_ms(10)
c.publish(up, bytes(size), qos=1)
c.disconnect()
print(json.dumps({"ms": time.ticks_diff(time.ticks_ms(), t0), "received": len(got)}))
