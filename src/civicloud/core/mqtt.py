"""The installation's one MQTT connection, which every module subscribes through.

Traffic detectors and emission meters publish their counts to an MQTT broker; a module reads them
by registering a handler on the process's :class:`MqttHub` (never by opening a client of its own)::

    hub.subscribe("traffic/detectors/+/counts", record_counts)   # before or after hub.start()

``civicloud serve`` starts the hub beside the web application (``hub_from_settings``; ``None``
when ``CIVICLOUD_MQTT__URL`` is empty) and shows :meth:`MqttHub.health` in its readiness check.
Subscribe before ``start()`` to get what the broker kept for the session while the server was
away: it arrives as soon as the hub connects, and a message no handler is subscribed to is
acknowledged and dropped, with a warning.

Delivery is **at least once**:

- The hub speaks MQTT 5 with a persistent session (``clean_start`` false and a session expiry of
  ``session_expiry_seconds``), subscribes with QoS 1, and acknowledges a message (``PUBACK``)
  only after every handler it matches has returned. A message published while this server was
  away, or received but not yet handled when it stopped or lost its connection, is delivered
  (again) when it is back, within the session's expiry and the broker's own queue limits.
- A handler that raises is logged and given the message again, up to ``handler_attempts`` tries
  in all; then the message is acknowledged anyway and logged as an error, so that one message no
  handler can take never holds up the ones behind it.
- Handlers therefore **receive duplicates** (``Message.duplicate`` is set on the broker's
  redeliveries, but a message handled and not yet acknowledged when the connection dropped comes
  again looking new). Exactly once is the handler's business: make the handling idempotent, keyed
  by something in the payload (a meter's id and reading time), e.g. an insert that a unique
  constraint turns into a no-op.

A listener being restarted does not lose its messages: the supervisor *pauses* its subscriptions
(``MqttScope.close(pause=True)``) as soon as it dies. Its handlers are gone at once, but the
broker keeps the subscription, and a message for a paused filter that no live handler takes is
**held**, not acknowledged, in arrival order; when a handler subscribes that filter again (the
restarted listener, which subscribes in its ``start``), the held messages go to it first, then
the newer ones, and are acknowledged as usual. A pause ends with :meth:`MqttHub.release` (the
supervisor's, when the listener fails for good or the server stops): the broker is told to
unsubscribe (unless another handler wants the filter) and the held messages are dropped
*without* acknowledging them, so the broker sends them again to the session on its next
connection (the next ``serve`` finds their handlers subscribed; on a reconnect in the same
process a released filter has none, and they are acknowledged and dropped). Two things to know:
a held message takes one of the ``RECEIVE_MAXIMUM`` unacknowledged messages the broker lets this
connection have, so a long pause under heavy traffic holds up the other filters too; and a
filter one live handler still takes is never held, so of two listeners on the same filter, the
one being restarted misses what the other took meanwhile.

Handlers run on one worker thread of the hub, never on paho's network thread, one message at a
time in the order they arrived (MQTT keeps a topic's messages in order); so a slow handler delays
the others and must not block for long. A handler opens its own unit of work. An exception from a
handler never stops the hub. The hub reconnects on its own, with a wait doubling from
``reconnect_min_seconds`` to ``reconnect_max_seconds``, and subscribes again to every filter after
each reconnect (a broker that lost its sessions, say after a crash, gets them back).

MQTT 5 rather than 3.1.1 for its session expiry (the broker forgets a server that is gone for
good, rather than queueing for it forever), its reason codes (``health()`` says "Bad user name or
password" rather than a number), the receive maximum that bounds how many unacknowledged messages
wait in this process, and the retain handling that keeps a re-subscription from replaying
retained messages.
"""

from __future__ import annotations

import logging
import queue
import ssl
import threading
import time
import zlib
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from urllib.parse import urlsplit

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions

from civicloud.core.config import MqttSettings

__all__ = ["Handler", "Message", "MqttHub", "hub_from_settings", "subscription_identifier"]

logger = logging.getLogger(__name__)

#: Unacknowledged messages the broker may have in flight to this process at once: what bounds
#: the hub's queue while a handler is slow.
RECEIVE_MAXIMUM = 100
#: The first wait before a failed handler gets the message again; it doubles, up to 30 seconds.
RETRY_FIRST_SECONDS = 0.5
_DEFAULT_PORTS = {"mqtt": 1883, "mqtts": 8883}


@dataclass(frozen=True)
class Message:
    """One message the broker delivered to this process."""

    topic: str
    payload: bytes
    #: The QoS it was delivered with (at most the subscription's).
    qos: int
    #: Sent from the broker's retained store when the subscription was made, not just published.
    retain: bool
    #: The packet identifier (0 at QoS 0): only unique among this connection's messages in
    #: flight, so never a key for deduplication.
    message_id: int
    #: The broker may have delivered this message before (a redelivery after a reconnect).
    duplicate: bool
    #: When this process received it (UTC).
    received_at: datetime


#: What a module registers: called once per delivery of a matching message, on the hub's worker.
Handler = Callable[[Message], None]


@dataclass(frozen=True)
class _Subscription:
    topic_filter: str
    handler: Handler
    qos: int


#: A subscription, as :meth:`MqttHub.subscribe` returns it.
Subscription = _Subscription


@dataclass(frozen=True)
class _Delivery:
    message: Message
    #: The connection it came over: its acknowledgement means nothing on another one.
    connection: int
    #: The subscription identifiers the broker says the message matched; empty when it gave none.
    subscriptions: tuple[int, ...]


@dataclass
class _Pause:
    """A filter whose handlers are paused: kept at the broker, its messages held."""

    qos: int
    #: The pauses not yet released (one per paused subscription).
    holders: int = 0
    #: Messages for it that no live handler took, in arrival order, not acknowledged.
    held: list[_Delivery] = field(default_factory=list)


#: Put on the worker's queue to wake it for messages given back to it (held ones).
_WAKE = object()


def subscription_identifier(topic_filter: str) -> int:
    """The MQTT 5 subscription identifier of ``topic_filter``: the same in every process, so
    that messages queued for a session while its server was away still name their filter."""
    return zlib.crc32(topic_filter.encode()) % 268_435_455 + 1


def _check_filter(topic_filter: str) -> None:
    levels = topic_filter.split("/")
    if topic_filter.startswith("$share/"):
        if len(levels) < 3 or not levels[1] or "+" in levels[1] or "#" in levels[1]:
            raise ValueError(f"bad shared subscription {topic_filter!r}: $share/GROUP/FILTER")
        levels = levels[2:]
    if not topic_filter or "\0" in topic_filter or len(topic_filter.encode()) > 65535:
        raise ValueError(f"bad MQTT topic filter {topic_filter!r}")
    for index, level in enumerate(levels):
        if ("#" in level and (level != "#" or index != len(levels) - 1)) or (
            "+" in level and level != "+"
        ):
            raise ValueError(
                f"bad MQTT topic filter {topic_filter!r}: '+' stands for a whole level, "
                "'#' for the last one"
            )


def _matches(topic_filter: str, topic: str) -> bool:
    if topic_filter.startswith("$share/"):
        topic_filter = topic_filter.split("/", 2)[2]
    return paho.topic_matches_sub(topic_filter, topic)


def _stamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


class MqttHub:
    """One MQTT client for the whole process: modules subscribe handlers, the server starts and
    stops it. Thread-safe; see the module's docstring for what delivery it promises."""

    def __init__(self, settings: MqttSettings) -> None:
        if not settings.url:
            raise ValueError("MqttHub needs an mqtt url (hub_from_settings gives None without)")
        parts = urlsplit(settings.url)
        self._settings = settings
        self._tls = parts.scheme == "mqtts"
        self._host = parts.hostname or ""
        self._port = parts.port or _DEFAULT_PORTS[parts.scheme]
        self._lock = threading.Lock()
        self._subscriptions: list[_Subscription] = []
        self._paused: dict[str, _Pause] = {}
        #: Held messages whose filter has a handler again: the worker takes them first.
        self._replay: deque[_Delivery] = deque()
        self._pending_subscribes: dict[int, str] = {}
        #: Whether the broker tags each message with the subscriptions it matched (CONNACK).
        self._identified = True
        self._refused: dict[str, str] = {}
        self._client: paho.Client | None = None
        self._worker: threading.Thread | None = None
        self._queue: queue.SimpleQueue[_Delivery | object | None] = queue.SimpleQueue()
        self._stopping = threading.Event()
        self._connected = False
        #: Set while connected: what a publish that waits for the connection waits on.
        self._up = threading.Event()
        #: Grows with every connection made: tells a delivery's connection from the current one.
        self._connection = 0
        self._since = datetime.now(UTC)
        self._reason = "not started"

    @property
    def address(self) -> str:
        """Where the hub connects: ``mqtt://127.0.0.1:1883``."""
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"{'mqtts' if self._tls else 'mqtt'}://{host}:{self._port}"

    @property
    def client_id(self) -> str:
        """The name of this server's session at the broker."""
        return self._settings.client_id

    # --- what modules call ---------------------------------------------------------------

    def subscribe(self, topic_filter: str, handler: Handler, *, qos: int = 1) -> Subscription:
        """Call ``handler`` with every message matching ``topic_filter`` (``+`` one level, ``#``
        the rest; ``$share/GROUP/…`` to share the messages among an installation's servers);
        the handle returned ends it (:meth:`unsubscribe`). Messages held for the filter while
        it was paused are given to it first, then the newer ones.

        QoS 1 (the default) is at least once; QoS 0 is at most once, for data that may be lost.
        """
        if qos not in (0, 1):
            raise ValueError("qos must be 0 (at most once) or 1 (at least once)")
        _check_filter(topic_filter)
        subscription = _Subscription(topic_filter, handler, qos)
        with self._lock:
            self._subscriptions.append(subscription)
            paused = self._paused.get(topic_filter)
            if paused is not None and paused.held:
                self._replay.extend(paused.held)
                paused.held.clear()
                self._queue.put(_WAKE)
            client = self._client if self._connected else None
            if client is not None:
                self._subscribe_filters(client, [topic_filter])
        return subscription

    def subscribing(self) -> int:
        """How many subscriptions were sent to the broker and not yet acknowledged: until it
        acknowledges one, a message published elsewhere may reach the broker first and miss
        it (MQTT orders one connection's packets, not two connections')."""
        with self._lock:
            return len(self._pending_subscribes)

    def unsubscribe(self, subscription: Subscription, *, pause: bool = False) -> None:
        """End ``subscription``: its handler gets nothing more; the broker is told when no
        other handler wants its filter any more. Ending one twice changes nothing.

        With ``pause``, the broker is not told: the filter stays subscribed there, and a message
        for it that no live handler takes is held (not acknowledged) for the next handler that
        subscribes it, until :meth:`release` ends the pause.
        """
        with self._lock:
            kept = [s for s in self._subscriptions if s is not subscription]
            if len(kept) == len(self._subscriptions):
                return
            self._subscriptions = kept
            name = subscription.topic_filter
            if pause:
                paused = self._paused.setdefault(name, _Pause(subscription.qos))
                paused.holders += 1
                paused.qos = max(paused.qos, subscription.qos)
                return
            self._forget_if_unwanted(name)

    def release(self, filters: Iterable[str]) -> None:
        """End one pause of each of ``filters`` (as :meth:`unsubscribe` with ``pause`` made
        them, once per paused subscription). When a filter's last pause ends, the broker is told
        to unsubscribe it unless a handler wants it, and the messages held for it are dropped
        **without** acknowledging them: the broker delivers them again to this session on its
        next connection (the server's next start, whose handlers are subscribed before it
        connects), within the session's expiry."""
        dropped = 0
        with self._lock:
            for name in filters:
                paused = self._paused.get(name)
                if paused is None:
                    continue
                paused.holders -= 1
                if paused.holders > 0:
                    continue
                del self._paused[name]
                dropped += len(paused.held)
                self._forget_if_unwanted(name)
        if dropped:
            logger.warning(
                "mqtt: dropping %d held messages unacknowledged; the broker sends them again "
                "on the next connection",
                dropped,
            )

    def _forget_if_unwanted(self, name: str) -> None:
        """Unsubscribe ``name`` at the broker unless a handler or a pause wants it (locked)."""
        if name in self._paused or any(s.topic_filter == name for s in self._subscriptions):
            return
        client = self._client if self._connected else None
        if client is not None:
            client.unsubscribe(name)

    def scoped(self) -> MqttScope:
        """A view of this hub whose subscriptions can all be ended at once (a listener's: the
        supervisor ends them when it restarts or stops the listener)."""
        return MqttScope(self)

    def publish(
        self,
        topic: str,
        payload: bytes | str,
        qos: int = 1,
        *,
        retain: bool = False,
        timeout: float | None = None,
    ) -> bool:
        """Publish ``payload`` on ``topic``. Without ``timeout``, queue it (a QoS 1 message waits
        for the connection) and return at once; with one, also wait up to ``timeout`` seconds
        for the broker to take it. True when queued, or when taken in time."""
        if qos not in (0, 1):
            raise ValueError("qos must be 0 (at most once) or 1 (at least once)")
        if not topic or "+" in topic or "#" in topic or "\0" in topic:
            raise ValueError(f"bad MQTT topic {topic!r}")
        with self._lock:
            client = self._client
        if client is None:
            raise RuntimeError("the MQTT hub is not started")
        deadline = time.monotonic() + (timeout or 0.0)
        if timeout is not None:
            self._up.wait(timeout)
        info = client.publish(topic, payload, qos=qos, retain=retain)
        queued = info.rc == paho.MQTT_ERR_SUCCESS or (
            qos > 0 and info.rc == paho.MQTT_ERR_NO_CONN  # paho sends it once connected
        )
        if timeout is None:
            return queued
        if info.rc != paho.MQTT_ERR_SUCCESS:
            return False
        info.wait_for_publish(max(0.0, deadline - time.monotonic()))
        return info.is_published()

    # --- what the server calls -----------------------------------------------------------

    def start(self) -> None:
        """Connect in the background (retrying until the broker answers) and start handling
        messages. Returns at once; ``health()`` says when the connection is up."""
        with self._lock:
            if self._client is not None:
                return
            client = self._make_client()
            self._stopping = threading.Event()
            self._queue = queue.SimpleQueue()
            # What was held came over the last connection, unacknowledged: the broker sends it
            # again on the next one.
            self._replay = deque()
            for paused in self._paused.values():
                paused.held.clear()
            self._client = client
            self._connected = False
            self._up.clear()
            self._since = datetime.now(UTC)
            self._reason = "connecting"
            self._worker = threading.Thread(
                target=self._work,
                args=(self._queue, self._stopping),
                name=f"mqtt-worker-{self.client_id}",
                daemon=True,
            )
            self._worker.start()
        properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        properties.SessionExpiryInterval = self._settings.session_expiry_seconds
        properties.ReceiveMaximum = RECEIVE_MAXIMUM
        client.connect_async(
            self._host,
            self._port,
            keepalive=self._settings.keepalive,
            clean_start=False,
            properties=properties,
        )
        client.loop_start()
        logger.info("mqtt: connecting to %s as %s", self.address, self.client_id)

    def stop(self, timeout: float = 5.0) -> None:
        """Let the message being handled finish (and be acknowledged), then disconnect cleanly.
        Messages received and not yet handled stay unacknowledged: the broker delivers them
        again when the session resumes. Waits at most about ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        with self._lock:
            client, worker = self._client, self._worker
            if client is None:
                return
            self._stopping.set()
            self._queue.put(None)
        if worker is not None:
            worker.join(max(0.0, deadline - time.monotonic()))
            if worker.is_alive():
                logger.warning("mqtt: a handler is still running after %.1fs; leaving it", timeout)
        with self._lock:
            self._client, self._worker = None, None
            self._connected = False
            self._up.clear()
            self._since = datetime.now(UTC)
            self._reason = "stopped"
        client.disconnect()
        # paho's loop_stop() waits without a limit; its loop notices the disconnect within a
        # second, but a connection attempt under way may take longer.
        stopper = threading.Thread(target=client.loop_stop, name="mqtt-stop", daemon=True)
        stopper.start()
        stopper.join(max(0.1, deadline - time.monotonic()))
        logger.info("mqtt: disconnected from %s", self.address)

    def health(self) -> str | None:
        """``None`` while connected with every subscription granted; otherwise why not."""
        with self._lock:
            if self._client is None:
                return f"mqtt {self._reason}"
            if not self._connected:
                return (
                    f"mqtt not connected to {self.address} since {_stamp(self._since)}: "
                    f"{self._reason}"
                )
            if self._worker is not None and not self._worker.is_alive():
                return "mqtt message worker stopped"
            if self._refused:
                refused = ", ".join(
                    f"{name} ({why})" for name, why in sorted(self._refused.items())
                )
                return f"mqtt subscriptions refused by the broker: {refused}"
            return None

    # --- paho's side (its network thread) --------------------------------------------------

    def _make_client(self) -> paho.Client:
        settings = self._settings
        client = paho.Client(
            CallbackAPIVersion.VERSION2,
            client_id=settings.client_id,
            protocol=MQTTProtocolVersion.MQTTv5,
            manual_ack=True,
        )
        # A bug in the callbacks below is logged by paho instead of ending its network thread.
        client.suppress_exceptions = True
        client.enable_logger(logging.getLogger(f"{__name__}.paho"))
        if settings.username:
            password = settings.password.get_secret_value() if settings.password else None
            client.username_pw_set(settings.username, password)
        if self._tls:
            try:
                client.tls_set(
                    ca_certs=str(settings.ca_file) if settings.ca_file else None,
                    certfile=str(settings.client_cert_file) if settings.client_cert_file else None,
                    keyfile=str(settings.client_key_file) if settings.client_key_file else None,
                    tls_version=ssl.PROTOCOL_TLS_CLIENT,
                )
            except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
                raise ValueError(f"mqtt TLS files are not usable: {exc}") from exc
        client.reconnect_delay_set(settings.reconnect_min_seconds, settings.reconnect_max_seconds)
        client.on_connect = self._on_connect
        client.on_connect_fail = self._on_connect_fail
        client.on_disconnect = self._on_disconnect
        client.on_subscribe = self._on_subscribe
        client.on_message = self._on_message
        return client

    def _subscribe_filters(self, client: paho.Client, filters: list[str]) -> None:
        """Ask the broker for ``filters`` (under the lock), each at the highest QoS wanted.

        One SUBSCRIBE per filter, each with the filter's identifier: a broker may send a message
        matching two filters once per filter, and the identifier says which handlers it is for.
        """
        for name in filters:
            paused = self._paused.get(name)
            qos = max(
                [s.qos for s in self._subscriptions if s.topic_filter == name]
                + ([paused.qos] if paused is not None else [])
            )
            # retainHandling 1: retained messages only for a subscription the broker did not
            # have, so that re-subscribing after a reconnect does not replay them.
            options = SubscribeOptions(
                qos=qos, retainHandling=SubscribeOptions.RETAIN_SEND_IF_NEW_SUB
            )
            properties = None
            if self._identified:
                properties = Properties(PacketTypes.SUBSCRIBE)  # type: ignore[no-untyped-call]
                properties.SubscriptionIdentifier = subscription_identifier(name)
            result, mid = client.subscribe(name, options=options, properties=properties)
            if result == paho.MQTT_ERR_SUCCESS and mid is not None:
                self._pending_subscribes[mid] = name

    def _on_connect(
        self,
        client: paho.Client,
        _userdata: object,
        flags: paho.ConnectFlags,
        reason: ReasonCode,
        properties: Properties | None,
    ) -> None:
        with self._lock:
            if client is not self._client:
                return
            if reason.is_failure:
                self._reason = f"refused by the broker: {reason}"
                logger.warning("mqtt: %s refused the connection: %s", self.address, reason)
                return
            self._connection += 1
            self._connected = True
            self._up.set()
            self._since = datetime.now(UTC)
            self._reason = ""
            self._pending_subscribes.clear()
            self._refused.clear()
            available = getattr(properties, "SubscriptionIdentifierAvailable", 1)
            self._identified = available != 0
            wanted = {s.topic_filter for s in self._subscriptions} | set(self._paused)
            self._subscribe_filters(client, sorted(wanted))
        logger.info(
            "mqtt: connected to %s (session resumed: %s)", self.address, flags.session_present
        )

    def _on_connect_fail(self, client: paho.Client, _userdata: object) -> None:
        with self._lock:
            if client is self._client:
                self._reason = "cannot reach the broker"
        logger.warning("mqtt: cannot reach %s; retrying", self.address)

    def _on_disconnect(
        self,
        client: paho.Client,
        _userdata: object,
        _flags: paho.DisconnectFlags,
        reason: ReasonCode,
        _properties: Properties | None,
    ) -> None:
        with self._lock:
            if client is not self._client:
                return
            was_connected, self._connected = self._connected, False
            self._up.clear()
            if was_connected:
                self._since = datetime.now(UTC)
                self._reason = "connection lost" + (f" ({reason})" if reason.is_failure else "")
        if was_connected:
            logger.warning(
                "mqtt: lost the connection to %s (%s); reconnecting", self.address, reason
            )

    def _on_subscribe(
        self,
        client: paho.Client,
        _userdata: object,
        mid: int,
        reasons: list[ReasonCode],
        _properties: Properties | None,
    ) -> None:
        with self._lock:
            name = self._pending_subscribes.pop(mid, None)
            if name is None:
                return
            failed = [reason for reason in reasons if reason.is_failure]
            if failed:
                self._refused[name] = str(failed[0])
            else:
                self._refused.pop(name, None)
        if failed:
            logger.error("mqtt: the broker refused the subscription %s: %s", name, failed[0])

    def _on_message(self, client: paho.Client, _userdata: object, raw: paho.MQTTMessage) -> None:
        with self._lock:
            if client is not self._client:
                return
            connection = self._connection
            inbox = self._queue
        try:
            topic = raw.topic
        except UnicodeDecodeError:
            logger.error("mqtt: dropping a message whose topic is not UTF-8")
            client.ack(raw.mid, raw.qos)
            return
        message = Message(
            topic=topic,
            payload=bytes(raw.payload),
            qos=raw.qos,
            retain=bool(raw.retain),
            message_id=raw.mid,
            duplicate=bool(raw.dup),
            received_at=datetime.now(UTC),
        )
        identifiers = getattr(raw.properties, "SubscriptionIdentifier", None) or []
        inbox.put(_Delivery(message, connection, tuple(identifiers)))

    # --- the worker -------------------------------------------------------------------------

    def _work(
        self, inbox: queue.SimpleQueue[_Delivery | object | None], stopping: threading.Event
    ) -> None:
        while not stopping.is_set():
            taken = self._next(inbox)
            if taken is None or stopping.is_set():
                return
            delivery, handlers = taken
            try:
                if self._deliver(delivery, handlers, stopping):
                    self._acknowledge(delivery)
            except Exception:  # a bug here must not end the worker
                logger.exception("mqtt: failed to dispatch a message on %s", delivery.message.topic)

    def _next(
        self, inbox: queue.SimpleQueue[_Delivery | object | None]
    ) -> tuple[_Delivery, list[Handler]] | None:
        """The next message to handle and its handlers (held messages given back first);
        ``None`` when the hub stops. A message for a paused filter is held on the way."""
        while True:
            with self._lock:
                while self._replay:
                    delivery = self._replay.popleft()
                    handlers = self._route(delivery)
                    if handlers is not None:
                        return delivery, handlers
            item = inbox.get()
            if item is None:
                return None
            if not isinstance(item, _Delivery):  # _WAKE: held messages were given back
                continue
            with self._lock:
                if self._replay:  # given back meanwhile: older, so they go first
                    self._replay.append(item)
                    continue
                handlers = self._route(item)
            if handlers is not None:
                return item, handlers

    def _route(self, delivery: _Delivery) -> list[Handler] | None:
        """The handlers ``delivery`` is for (locked); ``None`` when none is and a paused filter
        it matches holds it instead."""
        message = delivery.message
        handlers: list[Handler] = []
        for subscription in self._subscriptions:
            if (
                self._named(delivery, subscription.topic_filter)
                and _matches(subscription.topic_filter, message.topic)
                and not any(subscription.handler is known for known in handlers)
            ):
                handlers.append(subscription.handler)
        if not handlers:
            for name, paused in self._paused.items():
                if self._named(delivery, name) and _matches(name, message.topic):
                    paused.held.append(delivery)
                    return None
        return handlers

    @staticmethod
    def _named(delivery: _Delivery, topic_filter: str) -> bool:
        return not delivery.subscriptions or (
            subscription_identifier(topic_filter) in delivery.subscriptions
        )

    def _deliver(
        self, delivery: _Delivery, handlers: list[Handler], stopping: threading.Event
    ) -> bool:
        """Run every handler the message is for; False when stopping cut the retries short (and
        it is not acknowledged)."""
        message = delivery.message
        if not handlers:
            logger.warning("mqtt: no handler for %s; acknowledging it", message.topic)
        for handler in handlers:
            attempts = self._settings.handler_attempts
            for attempt in range(1, attempts + 1):
                try:
                    handler(message)
                    break
                except Exception:
                    logger.exception(
                        "mqtt: handler %s failed on %s (try %d of %d)",
                        getattr(handler, "__qualname__", handler),
                        message.topic,
                        attempt,
                        attempts,
                    )
                if attempt == attempts:
                    logger.error(
                        "mqtt: giving up on a message on %s (%d bytes) after %d tries: "
                        "acknowledged so the messages behind it go on",
                        message.topic,
                        len(message.payload),
                        attempts,
                    )
                elif stopping.wait(min(30.0, RETRY_FIRST_SECONDS * 2 ** (attempt - 1))):
                    return False
        return True

    def _acknowledge(self, delivery: _Delivery) -> None:
        if delivery.message.qos == 0:
            return
        with self._lock:
            client = self._client
            current = self._connected and delivery.connection == self._connection
        # A message from an earlier connection is redelivered by the broker on this one: its
        # packet identifier may already name another message here.
        if client is not None and current:
            client.ack(delivery.message.message_id, delivery.message.qos)


class MqttScope:
    """One listener's use of the hub: subscribing and publishing through it, its subscriptions
    ended together by :meth:`close`, so that a restarted listener does not get each message
    twice (and paused together while it restarts, so that it misses none)."""

    def __init__(self, hub: MqttHub) -> None:
        self.hub = hub
        self._mine: list[Subscription] = []
        #: The filters of the subscriptions paused by ``close(pause=True)``, one per pause.
        self._paused: list[str] = []
        self._lock = threading.Lock()

    @property
    def address(self) -> str:
        """The broker's address."""
        return self.hub.address

    def subscribe(self, topic_filter: str, handler: Handler, *, qos: int = 1) -> Subscription:
        """As :meth:`MqttHub.subscribe`, remembered for :meth:`close`."""
        subscription = self.hub.subscribe(topic_filter, handler, qos=qos)
        with self._lock:
            self._mine.append(subscription)
        return subscription

    def publish(
        self,
        topic: str,
        payload: bytes | str,
        qos: int = 1,
        *,
        retain: bool = False,
        timeout: float | None = None,
    ) -> bool:
        """As :meth:`MqttHub.publish`."""
        return self.hub.publish(topic, payload, qos, retain=retain, timeout=timeout)

    def health(self) -> str | None:
        """The hub's health."""
        return self.hub.health()

    def close(self, *, pause: bool = False) -> None:
        """End every subscription made through this scope, and release what it paused.

        With ``pause`` (a listener that died and is to be restarted), pause them instead: the
        handlers are removed at once, but the broker keeps the filters and the hub holds their
        messages, unacknowledged, for whoever subscribes them next (:meth:`MqttHub.unsubscribe`).
        A later ``close()`` releases the pauses (:meth:`MqttHub.release`: held messages are
        dropped unacknowledged, for the broker to send again on the next connection).
        """
        with self._lock:
            mine, self._mine = self._mine, []
            if pause:
                self._paused.extend(subscription.topic_filter for subscription in mine)
                paused: list[str] = []
            else:
                paused, self._paused = self._paused, []
        for subscription in mine:
            if pause:
                self.hub.unsubscribe(subscription, pause=True)
            else:
                self.hub.unsubscribe(subscription)
        if paused:
            self.hub.release(paused)


def hub_from_settings(settings: MqttSettings) -> MqttHub | None:
    """The installation's hub, not started; ``None`` when no MQTT url is configured."""
    return MqttHub(settings) if settings.url else None
