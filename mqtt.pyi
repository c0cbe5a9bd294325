"""The ``mqtt`` module of the DL-7450 firmware: an event-driven MQTT 3.1.1 client.

Type stub for IDEs; the module itself is built into the firmware. The full
reference is in docs/mqtt.rst, docs/mqtt.Client.rst and docs/mqtt.MqttError.rst.

Every method returns quickly: network work and callbacks happen later, on the
Python thread through MicroPython's scheduler, never inside a call into the
module. The firmware stays alive after the main script returns while any
client is connected, connecting or reconnecting; it exits once the last client
is inactive (for example after ``disconnect()``).

Transports: ``tcp://`` and ``mqtt://`` (TCP), ``ssl://`` and ``mqtts://`` (TLS),
``ws://`` (WebSocket, path from the URL, default ``/mqtt``) and ``wss://`` (WebSocket
over TLS); a firmware built without WebSocket support (``MQTT_WEBSOCKET=0``) raises
``MqttError`` -14 for those two. TLS goes through the firmware's ``tls`` module (mbedtls 3.6) and always verifies
the broker: against ``trust_store`` if given, else against the platform's CA bundle
(host build: /etc/ssl/certs/ca-certificates.crt); without either ``connect()`` raises
``MqttError`` -32. A host name is checked against the certificate's DNS subjectAltNames
(its Common Name only without subjectAltNames) and sent as SNI; an IPv4 or bracketed
IPv6 address is checked against its iPAddress subjectAltNames and never sent as SNI.
"""

from typing import Any, Callable, Dict, Final, List, Optional, Tuple, TypedDict, Union

QOS0: Final[int]
"""QoS 0, *at most once* (fire and forget). Value 0."""
QOS1: Final[int]
"""QoS 1, *at least once*: acknowledged, may arrive more than once. Value 1."""
QOS2: Final[int]
"""QoS 2, *exactly once*: four-step handshake. Value 2."""

_Buffer = Union[str, bytes, bytearray]
_FilterQos = Tuple[str, int]

class _ConnectOptions(TypedDict, total=False):
    """The ``options`` dict of ``MqttClient.connect`` (every key optional).

    A wrong type, a value out of range or an unknown key raises ``TypeError``.
    """

    keep_alive: Optional[int]
    """Keep-alive interval in seconds, 0..65535; absent, 0 or None: no keep-alive."""
    username: str
    """MQTT user name."""
    password: _Buffer
    """Password; only together with ``username``."""
    will_topic: str
    """Topic of the will message (published by the broker if the connection ends without
    ``disconnect()``); needs ``will_qos``. Empty: ``MqttError`` -17."""
    will_qos: int
    """QoS of the will message, 0..2."""
    will_message: Optional[_Buffer]
    """Payload of the will message; None or absent: empty."""
    will_retain: bool
    """Addition: whether the broker retains the will message (bool or 0/1; default False)."""
    trust_store: _Buffer
    """CA certificate(s), PEM or DER, the broker's certificate must chain to (ssl, mqtts,
    wss URLs only; otherwise ``TypeError``). Absent: the platform's CA bundle, or
    ``MqttError`` -32 where the port has none. Unparsable data: ``ValueError`` at connect()."""
    key_store: _Buffer
    """Client certificate chain, PEM, may hold the private key too (TLS URLs only).
    Unparsable data, or no key in it and no ``private_key``: ``ValueError`` at connect()."""
    private_key: _Buffer
    """Client private key, PEM (TLS URLs only; only together with ``key_store``, else
    ``TypeError``)."""
    max_inflight: int
    """Addition: QoS 1/2 messages on the wire awaiting acknowledgement, 1..65535 (default 20)."""
    max_buffered: int
    """Addition: messages waiting in the client's buffer, >= 0 (default 100; negative:
    ``MqttError`` -19). While not connected every publish waits in the buffer (-12 when
    full; with 0, any publish while not connected raises -12). Connected with 0, a QoS 1/2
    publish that finds the in-flight window full raises ``MqttError`` -4."""
    poison_retries: int
    """Addition: connections in a row that may end right after the same QoS 1/2 message or
    subscription is sent (broker closed or reset it, nothing sent after it acknowledged,
    within min(keep_alive, 10 s) of sending it) before the client gives it up:
    ``on_publish(mid, -35)``, ``on_subscribe(mid, [128, ...])``. 0..255, default 3; 0 =
    never give up. A QoS 2 message whose PUBREC arrived is never given up."""
    max_packet_size: Optional[int]
    """Addition: largest PUBLISH packet in bytes (fixed header, topic, payload) that
    ``publish()`` accepts; a larger one raises ``MqttError`` -8 at once. > 0 or None
    (default: MQTT's own limit)."""

# on_connect(rc, flags): flags is {"session_present": bool} (False unless rc == 0).
_OnConnect = Callable[[int, Dict[str, bool]], Any]
_OnMessage = Callable[[str, bytearray], Any]
_OnPublish = Callable[[int, int], Any]
_OnSubscribe = Callable[[int, List[int]], Any]
_OnUnsubscribe = Callable[[int], Any]

def ErrorDescription(errno: int) -> str:
    """Human-readable description of an MQTT error code (0, -1..-19, the connection failure
    codes -20..-34), -35 (``on_publish``: message given up) or a CONNACK code (1..5).

    Any other int gives "unknown error"; a non-int raises ``TypeError``.
    """
    ...

def poll() -> None:
    """Runs the client pump once (I/O, timers and due callbacks of every active client).

    Addition. The DL-7450 firmware (device and host) runs the clients by itself while the
    script sleeps, computes or has returned; calling it there is harmless. For ports without
    an event hook (one that calls the C function ``mqtt_poll()``). Does nothing when called
    from inside a callback.
    """
    ...

class MqttError(Exception):
    """An MQTT-level error.

    ``errno`` is the code; ``args == (errno, ErrorDescription(errno))``.
    Codes: 0 no error; -1 generic error / connection failed or lost; -2 persistence error;
    -3 the client is disconnected; -4 in-flight window full; -5 invalid UTF-8 string;
    -6 invalid None value; -7 topic contains a NUL character; -8 bad structure;
    -9 invalid QoS; -10 no more message ids; -11 operation discarded before completion;
    -12 no more messages can be buffered; -13 TLS is not supported by this build (not
    produced); -14 bad protocol (scheme) in URL; -15 bad MQTT option; -16 wrong MQTT version;
    -17 zero-length will topic; -18 connect or disconnect command ignored;
    -19 invalid bound on buffered messages.

    Additions of this module (``on_connect`` rc for a failed attempt or a lost connection;
    -32 is raised by ``connect()``): -20 host name lookup failed; -21 TCP connection failed;
    -22 connection closed by the broker; -23 no CONNACK in time; -24 keep-alive timeout;
    -25 protocol error; -26 incoming packet too large; -27 out of memory; -28 TLS handshake
    failed; -29 TLS certificate not trusted; -30 TLS certificate does not match the host
    name or address (and is otherwise valid); -31 TLS handshake rejected by the broker
    (client certificate missing or refused); -32 no trust_store and no platform CA bundle;
    -33 WebSocket upgrade refused or WebSocket protocol error; -34 TLS certificate expired
    or not yet valid. ``on_publish`` rc: -35 message given up, the broker closed the
    connection on it each time it was sent (``poison_retries``).
    """

    errno: int
    args: Tuple[int, str]

class MqttClient:
    """An MQTT client: one connection to one broker, with a persistent session.

    ``mqtt.Client`` is the same class.
    """

    def __init__(self, broker_url: str, client_id: str, /, *, persistence: Optional[str] = None) -> None:
        """Creates a client; no network I/O.

        ``broker_url`` is ``scheme://host[:port][/path]``; schemes (case-insensitive) and
        default ports: tcp and mqtt 1883, ssl and mqtts 8883, ws 80, wss 443 (ws/wss path
        default ``/mqtt``). Host: a name, an IPv4 address or a bracketed IPv6 address.

        Raises ``MqttError`` -14 for a missing or unknown scheme, ``ValueError`` for a
        malformed URL (no host, port not in 1..65535, ``user@``, a path with a non-WebSocket
        scheme), ``TypeError`` when an argument is missing or not a str, ``MqttError`` -1
        when 32 clients exist already.

        Addition ``persistence``: None (default, the session lives in RAM) or a directory
        (made if missing) where the unfinished QoS 1/2 messages (with packet id, mid and
        state) and the inbound QoS 2 ids are kept, so that they survive a power cut; a
        client made again with the same id and directory restores them here, and
        re-sends them after ``connect()`` (PUBLISH with DUP and the same id, or PUBREL).
        Each QoS 1/2 ``publish()`` flushes the store before it returns. ``MqttError`` -2
        when the directory cannot be used or holds the store of another client id;
        ``TypeError`` when it is not a str. See docs/mqtt.Client.rst, "Persistence".
        """
        ...

    def connect(self, on_connect: Optional[_OnConnect], options: Optional[_ConnectOptions] = None) -> None:
        """Starts connecting; returns at once. Arguments may be given by keyword.

        ``on_connect(rc, flags)`` follows: rc 0 accepted (``flags["session_present"]``);
        rc 1..5 refused by the broker (CONNACK code; permanent, no retry); rc -20..-34 (-1
        if no other code fits) an attempt failed or the connection was lost, the code says
        what (``ErrorDescription(rc)``); the client retries after 1, 2, 4, 8, 16, 32 s, then
        every 60 s. The schedule starts again (1 s) only after a connection that stayed up
        min(keep_alive, 10 s) (10 s without keep-alive) or on which the broker acknowledged
        a request; a broker that accepts and drops at once is retried on the schedule.
        Another negative rc (-7, -8) when the connect parameters cannot be encoded (no
        retry).

        For TLS URLs one TLS context is made here from trust_store/key_store/private_key.

        Raises ``TypeError`` for a bad option (also: a TLS option with a non-TLS URL,
        private_key without key_store), ``ValueError`` from the ``tls`` module for
        certificate or key data it cannot parse, ``MqttError`` -19 (max_buffered < 0),
        -17 (empty will_topic), -7 (NUL in will_topic), -18 (already connected, connecting
        or reconnecting), -32 (TLS URL, no trust_store and no platform CA bundle).
        """
        ...

    def publish(self, topic: str, message: _Buffer, qos: int, retain: bool = False) -> int:
        """Queues a message and returns its mid (> 0), reported later to ``on_publish``.

        ``topic``: non-empty str without ``+``/``#``; ``message``: str, bytes or bytearray
        (a bytearray is copied); ``qos``: 0..2; ``retain``: bool or 0/1. Arguments may be
        given by keyword. While not connected every message (any QoS) waits in the buffer.
        While connected: QoS 0 is sent at once if nothing waits before it; QoS 1/2 goes
        into the in-flight window if it has room and the buffer is empty; otherwise the
        message waits in the buffer. Buffered messages are sent in order later.

        Raises ``TypeError`` for a malformed argument, ``MqttError`` -7 (NUL in topic),
        -12 (the message must wait and the buffer holds max_buffered messages; with
        max_buffered 0, any publish while not connected), -4 (connected, max_buffered 0,
        QoS 1/2 and the in-flight window full), -8 (packet too large for MQTT or above the
        ``max_packet_size`` option), -10 (no packet id free), -2 (with
        ``persistence``: the QoS 1/2 message could not be stored; it is not queued).
        ``on_publish(mid, rc)`` follows: 0 done, -35 given up (the broker closed the
        connection on it ``poison_retries`` times in a row).
        """
        ...

    def subscribe(self, topics: Union[_FilterQos, List[_FilterQos]], /) -> int:
        """Subscribes to one ``(filter, qos)`` tuple or a list of 1..16; returns the mid (> 0).

        ``on_subscribe(mid, granted_qos)`` follows (128 for a refused filter). Requested while
        disconnected: queued and sent after connecting. A malformed argument raises
        ``TypeError``; other errors are returned as a negative code (-8 more than 16
        filters, -7 NUL in a filter, -10 no packet id free).
        """
        ...

    def unsubscribe(self, topics: Union[str, _FilterQos, List[Union[str, _FilterQos]]], /) -> int:
        """Addition: unsubscribes from a filter str, a list of them, or (filter, qos) tuples
        (qos ignored); returns the mid (> 0).

        ``on_unsubscribe(mid)`` follows. Errors as for ``subscribe``: ``TypeError`` for a
        malformed argument, a negative return value otherwise.
        """
        ...

    def disconnect(self) -> None:
        """Addition: graceful disconnection (DISCONNECT sent, no will published, no reconnect).

        Unfinished QoS 1/2 messages, buffered messages and unanswered subscriptions stay in
        the client and resume on the next ``connect()``. Raises ``MqttError`` -3 when the
        client is not connected, connecting or reconnecting (or already disconnecting).
        """
        ...

    def is_connected(self) -> bool:
        """Addition: True while the connection to the broker is established."""
        ...

    def pending(self) -> list[int]:
        """Addition: the mids of the publishes not finished yet (buffered or awaiting
        acknowledgement), oldest first; with ``persistence`` including those restored
        from the store, under their original mids."""
        ...

    def in_doubt(self) -> bool:
        """Addition: True only while ``on_message`` runs for a QoS 2 message whose delivery
        began before a power cut or crash and was never recorded as finished (the previous
        run may have handled it); it is the last message that run began to deliver. Always
        False without ``persistence``."""
        ...

    def on_message(self, callback: Optional[_OnMessage], /) -> None:
        """Registers ``callback(topic: str, message: bytearray)`` for received messages.

        None removes it; a non-callable raises ``TypeError``. An exception raised by a
        callback is printed and the client goes on, except ``KeyboardInterrupt`` and
        ``SystemExit``: they are raised again in the script (at its next bytecode or blocking
        call), and ``sys.exit()`` in a callback ends the firmware with its exit code, even
        while clients are connected.
        """
        ...

    def on_subscribe(self, callback: Optional[_OnSubscribe], /) -> None:
        """Registers ``callback(mid: int, granted_qos: list[int])``, called at SUBACK."""
        ...

    def on_publish(self, callback: Optional[_OnPublish], /) -> None:
        """Registers ``callback(mid: int, rc: int)``: rc 0 when the message is done (QoS 0
        written, QoS 1 PUBACK, QoS 2 PUBCOMP), negative when it failed."""
        ...

    def on_unsubscribe(self, callback: Optional[_OnUnsubscribe], /) -> None:
        """Addition: registers ``callback(mid: int)``, called at UNSUBACK."""
        ...

Client = MqttClient
"""The same class as ``MqttClient``."""
