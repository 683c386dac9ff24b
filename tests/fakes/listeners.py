"""Listeners a test starts: a thread-based TCP echo server on a free port, and one that dies
as soon as it starts."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import cast

from civicloud.core.listeners import ListenerEnv
from civicloud.core.modules import Listener, Module
from civicloud.core.mqtt import Message, MqttHub, MqttScope, Subscription

#: Every echo server started, oldest first (the test kills one and finds its successor here).
STARTED: list[EchoServer] = []


class EchoServer:
    """Answers each line sent to it with the same line, one connection at a time."""

    def __init__(self) -> None:
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._socket.bind(("127.0.0.1", 0))
        self._socket.listen()
        self.port: int = self._socket.getsockname()[1]
        self._thread = threading.Thread(target=self._serve, name="echo", daemon=True)
        self._thread.start()

    @property
    def address(self) -> str:
        """Where it listens."""
        return f"tcp://127.0.0.1:{self.port}"

    def _serve(self) -> None:
        while True:
            try:
                connection, _ = self._socket.accept()
            except OSError:  # the socket was closed: the server is done
                return
            with connection:
                data = connection.recv(4096)
                if data:
                    connection.sendall(data)

    def health(self) -> str | None:
        """Well while it serves."""
        return None if self.alive() else "the echo server stopped"

    def alive(self) -> bool:
        """Whether its thread still serves."""
        return self._thread.is_alive()

    def _close(self) -> None:
        # shutdown() wakes the thread blocked in accept(); close() alone would not, on Linux.
        with contextlib.suppress(OSError):  # closed already
            self._socket.shutdown(socket.SHUT_RDWR)
        self._socket.close()

    def kill(self) -> None:
        """Die, as a crash would: its socket closed, its thread ended."""
        self._close()
        self._thread.join(5)

    def stop(self, timeout: float) -> None:
        """Stop serving."""
        self._close()
        self._thread.join(timeout)


def start_echo(env: ListenerEnv) -> EchoServer:
    """Start an echo server."""
    server = EchoServer()
    STARTED.append(server)
    return server


class DeadOnArrival:
    """A listener that never runs."""

    address = "tcp://127.0.0.1:1"

    def health(self) -> str | None:
        """Never well."""
        return "it cannot bind its port"

    def alive(self) -> bool:
        """Never alive."""
        return False

    def stop(self, timeout: float) -> None:
        """Nothing to stop."""


def start_dead(env: ListenerEnv) -> DeadOnArrival:
    """Start a listener that is dead at once."""
    return DeadOnArrival()


def module(*listeners: str) -> Module:
    """A module with the listeners named (``echo``, ``dead``)."""
    return Module(
        name="listentest",
        title="Listener test",
        listeners=tuple(
            Listener(f"listentest.{name}", name, f"tests.fakes.listeners:start_{name}")
            for name in listeners
        ),
    )


def echo(port: int, text: bytes = b"ping") -> bytes:
    """What the echo server on ``port`` answers to ``text``."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as connection:
        connection.sendall(text)
        return connection.recv(4096)


#: What the subscribing listeners received, in order.
RECEIVED: list[bytes] = []


def start_subscriber(env: ListenerEnv) -> EchoServer:
    """An echo server that also takes the counts published on ``test/counts`` from the hub."""
    if env.mqtt is not None:
        env.mqtt.subscribe("test/counts", lambda message: RECEIVED.append(message.payload))
    return start_echo(env)


#: What a restart of the gated subscriber waits for (set by the test).
GATE = threading.Event()


def start_gated(env: ListenerEnv) -> EchoServer:
    """A subscriber whose restarts (not its first start) wait for :data:`GATE`."""
    if STARTED:
        GATE.wait(30)
    return start_subscriber(env)


def start_dead_subscriber(env: ListenerEnv) -> DeadOnArrival:
    """A listener that subscribes ``test/counts`` and is dead at once."""
    if env.mqtt is not None:
        env.mqtt.subscribe("test/counts", lambda message: RECEIVED.append(message.payload))
    return DeadOnArrival()


class MemoryHub:
    """A stand-in for the MQTT hub, in memory: what is subscribed, and delivering to it (exact
    topics only), with the real hub's pauses: a paused filter's messages that no handler takes
    are held for the next handler subscribing it."""

    address = "mqtt://memory"

    def __init__(self) -> None:
        self.subscriptions: list[Subscription] = []
        #: The pauses not yet released, by filter.
        self.paused: dict[str, int] = {}
        #: Messages held for paused filters, in arrival order.
        self.held: list[Message] = []
        #: Messages held and then dropped (not acknowledged) when their pause was released.
        self.dropped: list[Message] = []

    def start(self) -> None:
        """Nothing to connect to."""

    def stop(self, timeout: float = 5.0) -> None:
        """Nothing to disconnect."""

    def health(self) -> str | None:
        """Always connected."""
        return None

    def subscribe(
        self, topic_filter: str, handler: Callable[[Message], None], *, qos: int = 1
    ) -> Subscription:
        """Remember the handler, and give it what was held for its filter."""
        subscription = Subscription(topic_filter, handler, qos)
        self.subscriptions.append(subscription)
        mine = [m for m in self.held if m.topic == topic_filter]
        self.held = [m for m in self.held if m.topic != topic_filter]
        for message in mine:
            handler(message)
        return subscription

    def unsubscribe(self, subscription: Subscription, *, pause: bool = False) -> None:
        """Forget it; with ``pause``, hold its filter's messages until released."""
        kept = [s for s in self.subscriptions if s is not subscription]
        if pause and len(kept) < len(self.subscriptions):
            name = subscription.topic_filter
            self.paused[name] = self.paused.get(name, 0) + 1
        self.subscriptions = kept

    def release(self, filters: Iterable[str]) -> None:
        """End one pause of each filter; the last drops what was held for it."""
        for topic_filter in filters:
            self.paused[topic_filter] -= 1
            if not self.paused[topic_filter]:
                del self.paused[topic_filter]
                self.dropped += [m for m in self.held if m.topic == topic_filter]
                self.held = [m for m in self.held if m.topic != topic_filter]

    def scoped(self) -> MqttScope:
        """A listener's view, as the real hub gives."""
        return MqttScope(cast("MqttHub", self))

    def deliver(self, topic: str, payload: bytes) -> None:
        """A message from the broker, to every handler of its topic."""
        message = Message(topic, payload, 1, False, 1, False, datetime.now(UTC))
        handlers = [s.handler for s in list(self.subscriptions) if s.topic_filter == topic]
        if not handlers and topic in self.paused:
            self.held.append(message)
        for handler in handlers:
            handler(message)
