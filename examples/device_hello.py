# A first script for the device firmware: the module, its error texts, and a
# client whose callbacks run after the script has returned.
#
#   tools/device-run --forward 1883 examples/device_hello.py port=1883
#
# connects to the broker on the host's 127.0.0.1:1883 (reached by the guest
# at host=10.0.2.100, which the runner adds to the arguments), publishes one
# message and disconnects. Without --forward there is no broker to reach:
# the connection attempts fail and are retried on the schedule; the third
# failure ends the run.
import sys
import time

import mqtt

args = dict(a.split("=", 1) for a in sys.argv[1:] if "=" in a)
url = "mqtt://%s:%s" % (args.get("host", "broker.example.com"), args.get("port", "1883"))

print("mqtt on", sys.platform, "- QOS2 =", mqtt.QOS2)
print("-3 means:", mqtt.ErrorDescription(-3))

t0 = time.ticks_ms()
attempts = []


def on_connect(rc, flags):
    attempts.append(rc)
    print("on_connect", rc, mqtt.ErrorDescription(rc), "after", time.ticks_diff(time.ticks_ms(), t0), "ms")
    if rc == 0:
        client.publish("dl7450/hello", "hello from the device", mqtt.QOS1)
        client.disconnect()
    elif len(attempts) == 3:
        client.disconnect()


client = mqtt.MqttClient(url, "dl7450-device")
client.connect(on_connect, {"keep_alive": 30})
print("script returns; the firmware runs the client")
