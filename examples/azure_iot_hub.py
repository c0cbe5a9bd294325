# Azure IoT Hub from the DL-7450: device-to-cloud events, cloud-to-device
# messages and the device twin, over MQTT with a SAS token.
#
# Workshop style: everything happens in callbacks. The script sets up the
# client, calls connect() and returns; the firmware keeps the client running.
#
# What it does:
#   1. builds a SAS token (HMAC-SHA256 of the resource URI and the expiry with
#      the device key) and connects to mqtts://{hub}:8883 with the IoT Hub
#      conventions: client id = device id, user name
#      "{hub}/{device id}/?api-version=2021-04-12", password = the token;
#   2. subscribes to cloud-to-device messages, twin responses and desired
#      property updates;
#   3. gets the twin ($iothub/twin/GET/?$rid=1), then reports its properties
#      ($iothub/twin/PATCH/properties/reported/?$rid=2);
#   4. once the report is acknowledged (status 204), sends IOTHUB_EVENTS
#      telemetry events to devices/{device id}/messages/events/ (QoS 1), and
#      disconnects when all are acknowledged (IOTHUB_STAY=1: stays connected,
#      printing cloud-to-device messages and desired property updates).
#
# Configuration (environment variables, os.getenv):
#   IOTHUB_HOST        the hub's host name (my-hub.azure-devices.net)
#   IOTHUB_PORT        8883
#   IOTHUB_DEVICE_ID   the device id registered in the hub
#   IOTHUB_DEVICE_KEY  the device's primary key (base64, from the portal)
#   IOTHUB_TRUST_STORE file with the CA certificate(s), PEM or DER; default:
#                      the roots Azure IoT Hub chains to, built in below
#   IOTHUB_URL         connect to this URL instead of mqtts://{host}:{port}
#                      (a test broker; with a tcp:// URL no TLS options are given)
#   IOTHUB_SAS_TTL     token lifetime in seconds (3600)
#   IOTHUB_SAS_EXPIRY  absolute expiry (seconds since 1970) instead of the TTL
#   IOTHUB_EVENTS      number of telemetry events to send (3)
#   IOTHUB_STAY        1: do not disconnect at the end
#
# Run it:
#   IOTHUB_HOST=my-hub.azure-devices.net IOTHUB_DEVICE_ID=dl7450-1 \
#   IOTHUB_DEVICE_KEY=... build/micropython examples/azure_iot_hub.py
#
# The token is valid until its expiry; the hub closes the connection then.
# A real device renews it (a new connect() with a fresh token) before that.

import binascii
import hashlib
import json
import os
import time

import mqtt

HUB = os.getenv("IOTHUB_HOST") or "my-hub.azure-devices.net"
PORT = int(os.getenv("IOTHUB_PORT") or "8883")
DEVICE_ID = os.getenv("IOTHUB_DEVICE_ID") or "dl7450-demo"
DEVICE_KEY = os.getenv("IOTHUB_DEVICE_KEY") or ""
TRUST_STORE_FILE = os.getenv("IOTHUB_TRUST_STORE")
URL = os.getenv("IOTHUB_URL") or "mqtts://%s:%d" % (HUB, PORT)
SAS_TTL = int(os.getenv("IOTHUB_SAS_TTL") or "3600")
SAS_EXPIRY = os.getenv("IOTHUB_SAS_EXPIRY")
EVENTS = int(os.getenv("IOTHUB_EVENTS") or "3")
STAY = os.getenv("IOTHUB_STAY") == "1"

API_VERSION = "2021-04-12"
USERNAME = "%s/%s/?api-version=%s" % (HUB, DEVICE_ID, API_VERSION)

# Topics (IoT Hub MQTT support, "Communicate with an IoT hub using the MQTT protocol").
# System properties of an event go in the property bag at the end of the topic:
# content type and encoding let the hub's routing read the JSON body.
TOPIC_EVENTS = "devices/%s/messages/events/$.ct=application%%2Fjson&$.ce=utf-8" % DEVICE_ID
TOPIC_C2D = "devices/%s/messages/devicebound/" % DEVICE_ID
TOPIC_TWIN_RES = "$iothub/twin/res/"
TOPIC_DESIRED = "$iothub/twin/PATCH/properties/desired/"
TOPIC_TWIN_GET = "$iothub/twin/GET/?$rid=%d"
TOPIC_TWIN_REPORT = "$iothub/twin/PATCH/properties/reported/?$rid=%d"

# Seconds between 1970 and the epoch of time.time() (2000 on most bare-metal ports).
EPOCH_OFFSET = 0 if time.gmtime(0)[0] == 1970 else 946684800


# --------------------------------------------------------------------------------------
# SAS token: HMAC-SHA256 (RFC 2104; MicroPython has hashlib.sha256 but no hmac module)


def hmac_sha256(key, msg):
    if len(key) > 64:
        key = hashlib.sha256(key).digest()
    key = key + b"\x00" * (64 - len(key))
    inner = hashlib.sha256(bytes(b ^ 0x36 for b in key))
    inner.update(msg)
    outer = hashlib.sha256(bytes(b ^ 0x5C for b in key))
    outer.update(inner.digest())
    return outer.digest()


def url_encode(text):
    """Percent-encoding as urllib.parse.quote_plus does it (Azure's SDKs use it)."""
    out = []
    for b in text.encode():
        c = chr(b)
        if "a" <= c <= "z" or "A" <= c <= "Z" or "0" <= c <= "9" or c in "-_.~":
            out.append(c)
        elif c == " ":
            out.append("+")
        else:
            out.append("%%%02X" % b)
    return "".join(out)


def url_decode(text):
    out = bytearray()
    i = 0
    while i < len(text):
        c = text[i]
        if c == "%" and i + 2 < len(text):
            out.append(int(text[i + 1:i + 3], 16))
            i += 3
            continue
        out += b" " if c == "+" else c.encode()
        i += 1
    return out.decode()


def sas_token(resource, key_b64, expiry):
    """SharedAccessSignature sr={resource}&sig={signature}&se={expiry}: the signature is
    the HMAC-SHA256, with the base64-decoded key, of "{url-encoded resource}\\n{expiry}"."""
    sr = url_encode(resource)
    digest = hmac_sha256(binascii.a2b_base64(key_b64), ("%s\n%d" % (sr, expiry)).encode())
    sig = binascii.b2a_base64(digest, newline=False).decode()
    return "SharedAccessSignature sr=%s&sig=%s&se=%d" % (sr, url_encode(sig), expiry)


def parse_query(text):
    """'$rid=1&$version=2' -> {'$rid': '1', '$version': '2'}"""
    props = {}
    for part in text.split("&"):
        if part:
            k, _, v = part.partition("=")
            props[url_decode(k)] = url_decode(v)
    return props


# --------------------------------------------------------------------------------------
# the device

state = {"rid": 0, "pending": {}, "events_sent": 0, "events_done": 0, "subscribed": False,
         "desired_version": 0, "interval": 10}
event_mids = {}


def log(*args):
    print("[%s]" % DEVICE_ID, *args)


def next_rid(kind):
    state["rid"] += 1
    state["pending"][state["rid"]] = kind
    return state["rid"]


def twin_get():
    rid = next_rid("get")
    client.publish(TOPIC_TWIN_GET % rid, b"", mqtt.QOS0)
    log("twin: GET (rid %d)" % rid)


def report_properties():
    reported = {"firmware": "dl7450-mqtt-demo 1.0", "telemetryInterval": state["interval"]}
    rid = next_rid("patch")
    client.publish(TOPIC_TWIN_REPORT % rid, json.dumps(reported), mqtt.QOS0)
    log("twin: report %s (rid %d)" % (json.dumps(reported), rid))


def send_events():
    for i in range(EVENTS):
        body = json.dumps({"deviceId": DEVICE_ID, "seq": i + 1, "temperature": 21.5 + i})
        mid = client.publish(TOPIC_EVENTS, body, mqtt.QOS1)
        event_mids[mid] = i + 1
        state["events_sent"] += 1
        log("event %d sent: %s (mid %d)" % (i + 1, body, mid))
    maybe_finish()


def maybe_finish():
    if STAY or state["events_done"] < EVENTS or state["pending"]:
        return
    log("done: %d events acknowledged; disconnecting" % state["events_done"])
    client.disconnect()


def on_connect(rc, flags):
    if rc == 0:
        log("connected to %s as %s (session present: %s)" % (URL, USERNAME, flags["session_present"]))
        # IoT Hub supports QoS 0 and 1 (no QoS 2).
        client.subscribe([(TOPIC_C2D + "#", mqtt.QOS1), (TOPIC_TWIN_RES + "#", mqtt.QOS0),
                          (TOPIC_DESIRED + "#", mqtt.QOS0)])
    elif rc > 0:
        # 4/5: the hub rejected the SAS token (wrong key, expired, clock wrong), or an
        # unknown device. No retry follows; the firmware exits.
        log("connection refused: rc %d, %s" % (rc, mqtt.ErrorDescription(rc)))
        if rc in (4, 5):
            log("check IOTHUB_DEVICE_ID, IOTHUB_DEVICE_KEY and the clock (token expiry %d)" % expiry)
    else:
        # Network or TLS trouble: the client retries by itself (1, 2, 4, ... 60 s).
        log("connection failed or lost: rc %d, %s; retrying" % (rc, mqtt.ErrorDescription(rc)))


def on_subscribe(mid, granted_qos):
    log("subscribed (mid %d), granted QoS %s" % (mid, granted_qos))
    if 128 in granted_qos:
        log("the hub refused a subscription; disconnecting")
        client.disconnect()
        return
    if not state["subscribed"]:
        state["subscribed"] = True
        twin_get()


def apply_desired(desired, version):
    """Desired properties from the full twin or from a patch: a patch may arrive before
    the answer to GET, so only a newer $version is applied."""
    if version <= state["desired_version"]:
        log("desired properties version %d ignored (have %d)" % (version, state["desired_version"]))
        return
    state["desired_version"] = version
    if "telemetryInterval" in desired:
        state["interval"] = desired["telemetryInterval"]


def on_twin_response(topic, message):
    # $iothub/twin/res/{status}/?$rid={rid}[&$version={version}]
    status, _, query = topic[len(TOPIC_TWIN_RES):].partition("/?")
    props = parse_query(query)
    rid = int(props.get("$rid", "0"))
    kind = state["pending"].pop(rid, None)
    status = int(status)
    if kind == "get" and status == 200:
        twin = json.loads(bytes(message))
        desired = twin.get("desired", {})
        log("twin: %d (rid %d) desired %s reported %s" % (status, rid, json.dumps(desired),
                                                        json.dumps(twin.get("reported", {}))))
        apply_desired(desired, desired.get("$version", 0))
        report_properties()
    elif kind == "patch" and status == 204:
        log("twin: %d (rid %d) reported properties accepted, version %s" % (status, rid, props.get("$version")))
        send_events()
    else:
        # 400 bad request, 429 throttled, 5xx hub error: a real device retries later.
        log("twin: %d (rid %d, %s) error: %s" % (status, rid, kind, bytes(message)))
        maybe_finish()


def on_message(topic, message):
    if topic.startswith(TOPIC_TWIN_RES):
        on_twin_response(topic, message)
    elif topic.startswith(TOPIC_DESIRED):
        # $iothub/twin/PATCH/properties/desired/?$version={version}
        props = parse_query(topic[len(TOPIC_DESIRED):].lstrip("?"))
        patch = json.loads(bytes(message))
        log("desired properties, version %s: %s" % (props.get("$version"), json.dumps(patch)))
        apply_desired(patch, patch.get("$version", int(props.get("$version", "0"))))
    elif topic.startswith(TOPIC_C2D):
        # devices/{id}/messages/devicebound/{url-encoded property bag}
        props = parse_query(topic[len(TOPIC_C2D):])
        log("cloud-to-device message %s properties %s" % (bytes(message), json.dumps(props)))
    else:
        log("message on %s: %s" % (topic, bytes(message)))


def on_publish(mid, rc):
    n = event_mids.pop(mid, None)
    if n is None:
        return
    if rc == 0:
        state["events_done"] += 1
        log("event %d acknowledged" % n)
    else:
        log("event %d failed: rc %d, %s" % (n, rc, mqtt.ErrorDescription(rc)))
    maybe_finish()


def load_trust_store():
    if TRUST_STORE_FILE:
        with open(TRUST_STORE_FILE, "rb") as f:
            return f.read()
    return AZURE_ROOTS


def main():
    global client, expiry
    if not DEVICE_KEY:
        print("set IOTHUB_DEVICE_KEY (and IOTHUB_HOST, IOTHUB_DEVICE_ID)")
        raise SystemExit(1)
    expiry = int(SAS_EXPIRY) if SAS_EXPIRY else int(time.time()) + EPOCH_OFFSET + SAS_TTL
    token = sas_token("%s/devices/%s" % (HUB, DEVICE_ID), DEVICE_KEY, expiry)
    options = {"username": USERNAME, "password": token, "keep_alive": 60}
    if URL.split(":", 1)[0].lower() in ("mqtts", "ssl", "wss"):
        options["trust_store"] = load_trust_store()
    client = mqtt.MqttClient(URL, DEVICE_ID)
    client.on_subscribe(on_subscribe)
    client.on_message(on_message)
    client.on_publish(on_publish)
    log("connecting to %s, SAS token valid until %d" % (URL, expiry))
    client.connect(on_connect, options)


# The roots Azure IoT Hub's certificates chain to (DigiCert Global Root G2; Microsoft
# RSA Root Certificate Authority 2017, its announced successor), PEM.
AZURE_ROOTS = """\
-----BEGIN CERTIFICATE-----
MIIDjjCCAnagAwIBAgIQAzrx5qcRqaC7KGSxHQn65TANBgkqhkiG9w0BAQsFADBh
MQswCQYDVQQGEwJVUzEVMBMGA1UEChMMRGlnaUNlcnQgSW5jMRkwFwYDVQQLExB3
d3cuZGlnaWNlcnQuY29tMSAwHgYDVQQDExdEaWdpQ2VydCBHbG9iYWwgUm9vdCBH
MjAeFw0xMzA4MDExMjAwMDBaFw0zODAxMTUxMjAwMDBaMGExCzAJBgNVBAYTAlVT
MRUwEwYDVQQKEwxEaWdpQ2VydCBJbmMxGTAXBgNVBAsTEHd3dy5kaWdpY2VydC5j
b20xIDAeBgNVBAMTF0RpZ2lDZXJ0IEdsb2JhbCBSb290IEcyMIIBIjANBgkqhkiG
9w0BAQEFAAOCAQ8AMIIBCgKCAQEAuzfNNNx7a8myaJCtSnX/RrohCgiN9RlUyfuI
2/Ou8jqJkTx65qsGGmvPrC3oXgkkRLpimn7Wo6h+4FR1IAWsULecYxpsMNzaHxmx
1x7e/dfgy5SDN67sH0NO3Xss0r0upS/kqbitOtSZpLYl6ZtrAGCSYP9PIUkY92eQ
q2EGnI/yuum06ZIya7XzV+hdG82MHauVBJVJ8zUtluNJbd134/tJS7SsVQepj5Wz
tCO7TG1F8PapspUwtP1MVYwnSlcUfIKdzXOS0xZKBgyMUNGPHgm+F6HmIcr9g+UQ
vIOlCsRnKPZzFBQ9RnbDhxSJITRNrw9FDKZJobq7nMWxM4MphQIDAQABo0IwQDAP
BgNVHRMBAf8EBTADAQH/MA4GA1UdDwEB/wQEAwIBhjAdBgNVHQ4EFgQUTiJUIBiV
5uNu5g/6+rkS7QYXjzkwDQYJKoZIhvcNAQELBQADggEBAGBnKJRvDkhj6zHd6mcY
1Yl9PMWLSn/pvtsrF9+wX3N3KjITOYFnQoQj8kVnNeyIv/iPsGEMNKSuIEyExtv4
NeF22d+mQrvHRAiGfzZ0JFrabA0UWTW98kndth/Jsw1HKj2ZL7tcu7XUIOGZX1NG
Fdtom/DzMNU+MeKNhJ7jitralj41E6Vf8PlwUHBHQRFXGU7Aj64GxJUTFy8bJZ91
8rGOmaFvE7FBcf6IKshPECBV1/MUReXgRPTqh5Uykw7+U0b6LJ3/iyK5S9kJRaTe
pLiaWN0bfVKfjllDiIGknibVb63dDcY3fe0Dkhvld1927jyNxF1WW6LZZm6zNTfl
MrY=
-----END CERTIFICATE-----
-----BEGIN CERTIFICATE-----
MIIFqDCCA5CgAwIBAgIQHtOXCV/YtLNHcB6qvn9FszANBgkqhkiG9w0BAQwFADBl
MQswCQYDVQQGEwJVUzEeMBwGA1UEChMVTWljcm9zb2Z0IENvcnBvcmF0aW9uMTYw
NAYDVQQDEy1NaWNyb3NvZnQgUlNBIFJvb3QgQ2VydGlmaWNhdGUgQXV0aG9yaXR5
IDIwMTcwHhcNMTkxMjE4MjI1MTIyWhcNNDIwNzE4MjMwMDIzWjBlMQswCQYDVQQG
EwJVUzEeMBwGA1UEChMVTWljcm9zb2Z0IENvcnBvcmF0aW9uMTYwNAYDVQQDEy1N
aWNyb3NvZnQgUlNBIFJvb3QgQ2VydGlmaWNhdGUgQXV0aG9yaXR5IDIwMTcwggIi
MA0GCSqGSIb3DQEBAQUAA4ICDwAwggIKAoICAQDKW76UM4wplZEWCpW9R2LBifOZ
Nt9GkMml7Xhqb0eRaPgnZ1AzHaGm++DlQ6OEAlcBXZxIQIJTELy/xztokLaCLeX0
ZdDMbRnMlfl7rEqUrQ7eS0MdhweSE5CAg2Q1OQT85elss7YfUJQ4ZVBcF0a5toW1
HLUX6NZFndiyJrDKxHBKrmCk3bPZ7Pw71VdyvD/IybLeS2v4I2wDwAW9lcfNcztm
gGTjGqwu+UcF8ga2m3P1eDNbx6H7JyqhtJqRjJHTOoI+dkC0zVJhUXAoP8XFWvLJ
jEm7FFtNyP9nTUwSlq31/niol4fX/V4ggNyhSyL71Imtus5Hl0dVe49FyGcohJUc
aDDv70ngNXtk55iwlNpNhTs+VcQor1fznhPbRiefHqJeRIOkpcrVE7NLP8TjwuaG
YaRSMLl6IE9vDzhTyzMMEyuP1pq9KsgtsRx9S1HKR9FIJ3Jdh+vVReZIZZ2vUpC6
W6IYZVcSn2i51BVrlMRpIpj0M+Dt+VGOQVDJNE92kKz8OMHY4Xu54+OU4UZpyw4K
UGsTuqwPN1q3ErWQgR5WrlcihtnJ0tHXUeOrO8ZV/R4O03QK0dqq6mm4lyiPSMQH
+FJDOvTKVTUssKZqwJz58oHhEmrARdlns87/I6KJClTUFLkqqNfs+avNJVgyeY+Q
W5g5xAgGwax/Dj0ApQIDAQABo1QwUjAOBgNVHQ8BAf8EBAMCAYYwDwYDVR0TAQH/
BAUwAwEB/zAdBgNVHQ4EFgQUCctZf4aycI8awznjwNnpv7tNsiMwEAYJKwYBBAGC
NxUBBAMCAQAwDQYJKoZIhvcNAQEMBQADggIBAKyvPl3CEZaJjqPnktaXFbgToqZC
LgLNFgVZJ8og6Lq46BrsTaiXVq5lQ7GPAJtSzVXNUzltYkyLDVt8LkS/gxCP81OC
gMNPOsduET/m4xaRhPtthH80dK2Jp86519efhGSSvpWhrQlTM93uCupKUY5vVau6
tZRGrox/2KJQJWVggEbbMwSubLWYdFQl3JPk+ONVFT24bcMKpBLBaYVu32TxU5nh
SnUgnZUP5NbcA/FZGOhHibJXWpS2qdgXKxdJ5XbLwVaZOjex/2kskZGT4d9Mozd2
TaGf+G0eHdP67Pv0RR0Tbc/3WeUiJ3IrhvNXuzDtJE3cfVa7o7P4NHmJweDyAmH3
pvwPuxwXC65B2Xy9J6P9LjrRk5Sxcx0ki69bIImtt2dmefU6xqaWM/5TkshGsRGR
xpl/j8nWZjEgQRCHLQzWwa80mMpkg/sTV9HB8Dx6jKXB/ZUhoHHBk2dxEuqPiApp
GWSZI1b7rCoucL5mxAyE7+WL85MB+GqQk2dLsmijtWKP6T+MejteD+eMuMZ87zf9
dOLITzNy4ZQ5bb0Sr74MTnB8G2+NszKTc0QWbej09+CVgI+WXTik9KveCjCHk9hN
AHFiRSdLOkKEW39lt2c0Ui2cFmuqqNh7o0JMcccMyj6D5KbvtwEwXlGjefVwaaZB
RA+GsCyRxj3qrg+E
-----END CERTIFICATE-----
"""


if __name__ == "__main__":
    main()
