# Workshop-style MQTT app for the DL-7450: everything happens in callbacks.
#
# The script sets up a client, calls connect() and returns. There is no main
# loop and no sleeping: the firmware keeps running the client (and calls the
# callbacks below) for as long as the client is connected or reconnecting.
#
# What it does:
#   1. connects to the broker in $MQTT_BROKER (default mqtt://localhost:1883),
#   2. in on_connect: subscribes to its own topics and publishes a greeting,
#   3. sends "ping 1" to its own command topic; every "ping N" that arrives
#      there is answered with "pong N" on the reply topic,
#   4. after 3 ping/pong round trips it calls disconnect(), and the firmware
#      exits because no client is active any more.
#
# Run it:  MQTT_BROKER=mqtt://test.mosquitto.org build/micropython examples/workshop_app.py
# or simply `make demo` (starts a private broker on the loopback interface).

import os
import sys
import mqtt

BROKER = os.getenv("MQTT_BROKER") or "mqtt://localhost:1883"
ROUND_TRIPS = 3

# A client id of our own, so that several copies can share a broker.
DEVICE = "workshop-" + "".join("%02x" % b for b in os.urandom(3))
BASE = "workshop/" + DEVICE
TOPIC_HELLO = BASE + "/hello"      # the greeting
TOPIC_CMD = BASE + "/cmd"          # commands to this device ("ping N")
TOPIC_REPLY = BASE + "/reply"      # answers of this device ("pong N")

received = 0        # messages received, all topics
round_trips = 0     # ping -> pong exchanges completed
greeted = False


def log(*args):
    print("[%s]" % DEVICE, *args)


def send_ping(n):
    mid = client.publish(TOPIC_CMD, "ping %d" % n, mqtt.QOS1)
    log("-> %s: ping %d (mid %d)" % (TOPIC_CMD, n, mid))


def on_connect(rc, flags):
    global greeted
    if rc == 0:
        log("connected to %s (session present: %s)" % (BROKER, flags["session_present"]))
        # Subscribing again after a reconnect is harmless; the session is
        # persistent, so the broker usually still has the subscriptions.
        mid = client.subscribe([(TOPIC_CMD, mqtt.QOS1), (TOPIC_REPLY, mqtt.QOS1), (TOPIC_HELLO, mqtt.QOS0)])
        log("subscribing to %s/{cmd,reply,hello} (mid %d)" % (BASE, mid))
        if not greeted:
            greeted = True
            client.publish(TOPIC_HELLO, "hello from " + DEVICE, mqtt.QOS0)
            log("-> %s: greeting" % TOPIC_HELLO)
    elif rc > 0:
        # The broker refused us (bad credentials, ...): no retry follows, and
        # the firmware exits since the client is no longer active.
        log("connection refused by the broker: rc %d, %s" % (rc, mqtt.ErrorDescription(rc)))
    else:
        # Network trouble: the client retries by itself (1, 2, 4, ... 60 s).
        log("connection attempt failed or lost (rc %d); retrying" % rc)


def on_subscribe(mid, granted_qos):
    log("subscribed (mid %d), granted QoS %s" % (mid, granted_qos))
    if 128 in granted_qos:
        log("the broker refused a subscription; disconnecting")
        client.disconnect()
        return
    if round_trips == 0:
        send_ping(1)


def on_message(topic, message):
    global received, round_trips
    received += 1
    text = bytes(message).decode()
    log("<- %s: %s   (message #%d)" % (topic, text, received))
    if topic == TOPIC_CMD and text.startswith("ping "):
        n = text[5:]
        client.publish(TOPIC_REPLY, "pong " + n, mqtt.QOS1)
        log("-> %s: pong %s" % (TOPIC_REPLY, n))
    elif topic == TOPIC_REPLY and text.startswith("pong "):
        round_trips += 1
        log("round trip %d of %d done" % (round_trips, ROUND_TRIPS))
        if round_trips < ROUND_TRIPS:
            send_ping(round_trips + 1)
        else:
            log("%d messages received, %d round trips: disconnecting" % (received, round_trips))
            client.disconnect()


def on_publish(mid, rc):
    if rc != 0:
        log("publish mid %d failed: rc %d, %s" % (mid, rc, mqtt.ErrorDescription(rc)))


def goodbye():
    # Runs when the firmware exits, after the client is done. Set it before
    # connect(): the mqtt module chains its own exit handler in front of it.
    log("client finished: %d messages received, %d round trips; exiting" % (received, round_trips))


sys.atexit(goodbye)

client = mqtt.MqttClient(BROKER, DEVICE)
client.on_message(on_message)
client.on_subscribe(on_subscribe)
client.on_publish(on_publish)

log("connecting to", BROKER)
client.connect(on_connect, {"keep_alive": 30})
log("main script done; the firmware keeps the client running")
