"""The MQTT hub against a real Mosquitto broker: delivery, sessions, reconnection, failures.

Nothing here asserts how long anything takes: each test waits by polling, with a generous limit.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC
from pathlib import Path
from typing import Any

import pytest
from tests.functional.core.mqtt_broker import Broker, free_port, require_mosquitto, wait_for

from civicloud.core.config import MqttSettings
from civicloud.core.mqtt import Message, MqttHub, MqttScope, hub_from_settings

pytestmark = pytest.mark.slow

PATIENCE = 30.0


@pytest.fixture(scope="session")
def mosquitto() -> str:
    return require_mosquitto()


@pytest.fixture(scope="session")
def broker(mosquitto: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    """One anonymous broker for this worker's tests."""
    server = Broker(mosquitto, tmp_path_factory.mktemp("mosquitto"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def own_broker(mosquitto: str, tmp_path: Path) -> Iterator[Broker]:
    """A broker of the test's own, not started: for tests that kill or start it."""
    server = Broker(mosquitto, tmp_path)
    yield server
    server.stop()


HubFactory = Callable[..., MqttHub]


@pytest.fixture
def make_hub() -> Iterator[HubFactory]:
    """``make_hub(url, **settings)``: a hub with its own session name, stopped at the end."""
    made: list[MqttHub] = []

    def make(url: str, **overrides: Any) -> MqttHub:
        fields: dict[str, Any] = {
            "url": url,
            "client_id": f"test-{uuid.uuid4().hex[:12]}",
            "reconnect_min_seconds": 1,
            "reconnect_max_seconds": 2,
            **overrides,
        }
        hub = MqttHub(MqttSettings(**fields))
        made.append(hub)
        return hub

    yield make
    for hub in made:
        hub.stop(timeout=10)


@pytest.fixture
def topic() -> str:
    """A topic prefix of the test's own on the shared broker."""
    return f"test/{uuid.uuid4().hex[:12]}"


def started(hub: MqttHub) -> MqttHub:
    hub.start()
    wait_for(lambda: hub.health() is None, f"{hub.address} to connect ({hub.health()})")
    return hub


def publisher(make_hub: HubFactory, url: str) -> MqttHub:
    return started(make_hub(url))


def test_a_published_message_reaches_the_subscribed_handler(
    broker: Broker, make_hub: HubFactory, topic: str
) -> None:
    # Given a hub with a handler on the detectors' counts
    received: list[Message] = []
    hub = make_hub(broker.url)
    hub.subscribe(f"{topic}/+/counts", received.append)
    started(hub)
    sender = publisher(make_hub, broker.url)

    # When a detector publishes
    assert sender.publish(f"{topic}/d7/counts", b'{"cars": 12}', timeout=PATIENCE)

    # Then the handler gets it, as sent
    wait_for(lambda: received, "the message")
    (message,) = received
    assert message.topic == f"{topic}/d7/counts"
    assert message.payload == b'{"cars": 12}'
    assert message.qos == 1
    assert not message.retain
    assert message.received_at.tzinfo is UTC
    assert hub.address == broker.url


def test_a_handler_subscribed_after_start_and_one_sharing_its_messages_both_receive(
    broker: Broker, make_hub: HubFactory, topic: str
) -> None:
    # Given a running hub, and two modules subscribing once it is connected
    hub = started(make_hub(broker.url))
    traffic: list[bytes] = []
    emissions: list[bytes] = []
    hub.subscribe(f"{topic}/#", lambda m: traffic.append(m.payload))
    hub.subscribe(f"{topic}/meters/+", lambda m: emissions.append(m.payload))
    sender = publisher(make_hub, broker.url)

    # When a meter publishes, and then something only the first wants
    wait_for(lambda: sender.publish(f"{topic}/meters/m1", b"1", timeout=PATIENCE), "publish")
    wait_for(lambda: emissions, "the meter reading")
    sender.publish(f"{topic}/other", b"2", timeout=PATIENCE)

    # Then each handler sees what it subscribed to, once
    wait_for(lambda: len(traffic) == 2, "both messages on the wide filter")
    assert traffic == [b"1", b"2"]
    assert emissions == [b"1"]


def test_a_scope_closed_ends_its_subscriptions_and_a_new_one_gets_each_message_once(
    broker: Broker, make_hub: HubFactory, topic: str
) -> None:
    # Given a listener's scope subscribed on a running hub, beside another module's handler
    hub = started(make_hub(broker.url))
    first: list[bytes] = []
    other: list[bytes] = []
    scope = hub.scoped()
    scope.subscribe(f"{topic}/counts", lambda m: first.append(m.payload))
    hub.subscribe(f"{topic}/#", lambda m: other.append(m.payload))
    sender = publisher(make_hub, broker.url)
    wait_for(lambda: sender.publish(f"{topic}/counts", b"1", timeout=PATIENCE), "publish")
    wait_for(lambda: first == [b"1"] and other == [b"1"], "the first message")

    # When the listener is restarted: its old scope closed, a new one subscribing the same
    scope.close()
    again: list[bytes] = []
    hub.scoped().subscribe(f"{topic}/counts", lambda m: again.append(m.payload))
    # (once the broker has the new subscription: the sender's connection is not ordered with
    # the hub's, so a message sent at once may reach the broker before it)
    wait_for(lambda: hub.subscribing() == 0, "the new subscription")
    sender.publish(f"{topic}/counts", b"2", timeout=PATIENCE)

    # Then the new handler gets the message once, the old one nothing more, the other its own
    wait_for(lambda: again == [b"2"] and other == [b"1", b"2"], "the second message")
    sender.publish(f"{topic}/end", b"3", timeout=PATIENCE)
    wait_for(lambda: other == [b"1", b"2", b"3"], "a message after it")
    assert first == [b"1"]
    assert again == [b"2"]
    # and ending a subscription twice changes nothing
    scope.close()


def paused_with_one_held(
    broker: Broker, make_hub: HubFactory, topic: str
) -> tuple[MqttHub, MqttScope, MqttHub, list[bytes], list[bytes]]:
    """A running hub, a listener's scope on ``<topic>/counts`` that got message 1 and was then
    paused, and message 2 published while it was: the hub, the scope, the publisher, what the
    scope's handler got, and the markers on another filter (``m``, published after 2, shows
    that 2 arrived)."""
    hub = started(make_hub(broker.url))
    first: list[bytes] = []
    markers: list[bytes] = []
    scope = hub.scoped()
    scope.subscribe(f"{topic}/counts", lambda m: first.append(m.payload))
    hub.subscribe(f"{topic}/marker", lambda m: markers.append(m.payload))
    sender = publisher(make_hub, broker.url)
    wait_for(lambda: sender.publish(f"{topic}/counts", b"1", timeout=PATIENCE), "publish")
    wait_for(lambda: first == [b"1"], "the first message")
    scope.close(pause=True)
    assert sender.publish(f"{topic}/counts", b"2", timeout=PATIENCE)
    assert sender.publish(f"{topic}/marker", b"m", timeout=PATIENCE)
    wait_for(lambda: markers == [b"m"], "the hub to have taken the message in the gap")
    return hub, scope, sender, first, markers


def test_a_paused_scope_holds_its_messages_for_the_next_handler_of_the_filter(
    broker: Broker, make_hub: HubFactory, topic: str
) -> None:
    # Given a listener's scope that got a message, then paused (the listener died), and a
    # message that came before it is back
    hub, _scope, sender, first, _markers = paused_with_one_held(broker, make_hub, topic)

    # Then the restarted listener, subscribing the same filter, gets it first, then the next
    again: list[bytes] = []
    hub.scoped().subscribe(f"{topic}/counts", lambda m: again.append(m.payload))
    wait_for(lambda: hub.subscribing() == 0, "the new subscription")
    assert sender.publish(f"{topic}/counts", b"3", timeout=PATIENCE)
    wait_for(lambda: again == [b"2", b"3"], f"the held and the new message (got {again})")
    assert first == [b"1"]


def test_a_released_pause_leaves_its_held_messages_unacknowledged_for_the_next_connection(
    broker: Broker, make_hub: HubFactory, topic: str
) -> None:
    # Given a listener's scope paused with a message held for it
    hub, scope, sender, first, markers = paused_with_one_held(broker, make_hub, topic)

    # When the listener fails for good (the pause released)
    scope.close()

    # Then nobody got the held message, and later ones on the filter go to no one
    assert sender.publish(f"{topic}/counts", b"3", timeout=PATIENCE)
    assert sender.publish(f"{topic}/marker", b"m2", timeout=PATIENCE)
    wait_for(lambda: markers == [b"m", b"m2"], "a later marker")
    assert first == [b"1"]

    # And it was not acknowledged: the next server under the same session name gets it again
    hub.stop()
    later: list[Message] = []
    restarted = make_hub(broker.url, client_id=hub.client_id)
    restarted.subscribe(f"{topic}/counts", later.append)
    restarted.start()
    wait_for(lambda: later, "the held message, again")
    assert [m.payload for m in later] == [b"2"]
    assert later[0].duplicate


@pytest.mark.parametrize("restart", ["same hub", "new process"])
def test_messages_published_while_the_hub_is_stopped_arrive_when_it_starts_again(
    broker: Broker, make_hub: HubFactory, topic: str, restart: str
) -> None:
    # Given a hub that subscribed once and then stopped (its session stays at the broker)
    received: list[bytes] = []
    hub = make_hub(broker.url)
    hub.subscribe(f"{topic}/+", lambda m: received.append(m.payload))
    started(hub)
    hub.stop()
    assert hub.health() is not None

    # When meters publish while it is away
    sender = publisher(make_hub, broker.url)
    for reading in (b"r1", b"r2", b"r3"):
        assert sender.publish(f"{topic}/m1", reading, timeout=PATIENCE)

    # Then they arrive, in order, once it runs again under the same session name
    if restart == "new process":
        hub = make_hub(broker.url, client_id=hub.client_id)
        hub.subscribe(f"{topic}/+", lambda m: received.append(m.payload))
    hub.start()
    wait_for(lambda: len(received) >= 3, f"the 3 queued messages (got {received})")
    assert received[:3] == [b"r1", b"r2", b"r3"]


def test_the_hub_reconnects_and_subscribes_again_after_the_broker_is_killed(
    own_broker: Broker, make_hub: HubFactory, topic: str
) -> None:
    # Given a connected hub that receives
    own_broker.start()
    received: list[bytes] = []
    hub = make_hub(own_broker.url)
    hub.subscribe(f"{topic}/+", lambda m: received.append(m.payload))
    started(hub)
    sender = publisher(make_hub, own_broker.url)
    sender.publish(f"{topic}/a", b"before", timeout=PATIENCE)
    wait_for(lambda: received == [b"before"], "the first message")

    # When the broker dies without a clean shutdown (losing the sessions it had not saved)
    own_broker.kill()

    # Then the hub says it is down, and names the broker
    wait_for(lambda: hub.health() is not None, "health to report the lost connection")
    health = hub.health()
    assert health is not None
    assert "not connected" in health
    assert own_broker.url in health

    # And when the broker is back on the same port, it reconnects, re-subscribes and receives
    own_broker.start()
    wait_for(lambda: hub.health() is None, f"the hub to reconnect ({hub.health()})")
    wait_for(lambda: sender.health() is None, "the publisher to reconnect")
    wait_for(
        lambda: sender.publish(f"{topic}/a", b"after", timeout=PATIENCE) and b"after" in received,
        "a message after the restart",
    )
    assert received[0] == b"before"


def test_a_hub_started_before_its_broker_connects_once_the_broker_is_up(
    own_broker: Broker, make_hub: HubFactory, topic: str
) -> None:
    # Given a hub started while nothing listens at its address
    hub = make_hub(own_broker.url)
    received: list[bytes] = []
    hub.subscribe(f"{topic}/+", lambda m: received.append(m.payload))
    hub.start()
    wait_for(lambda: "cannot reach" in (hub.health() or ""), "health to say why")

    # When the broker starts
    own_broker.start()

    # Then the hub connects on its own and receives
    wait_for(lambda: hub.health() is None, "the hub to connect")
    publisher(make_hub, own_broker.url).publish(f"{topic}/x", b"hello", timeout=PATIENCE)
    wait_for(lambda: received == [b"hello"], "the message")


def test_a_handler_that_raises_never_stops_the_messages_behind_it(
    broker: Broker, make_hub: HubFactory, topic: str
) -> None:
    # Given a handler that always fails on one message and fails once on another
    tries: dict[bytes, int] = {}
    handled: list[bytes] = []

    def handler(message: Message) -> None:
        tries[message.payload] = tries.get(message.payload, 0) + 1
        if message.payload == b"poison" or (message.payload == b"flaky" and tries[b"flaky"] == 1):
            raise ValueError(f"cannot take {message.payload!r}")
        handled.append(message.payload)

    hub = make_hub(broker.url, handler_attempts=2)
    hub.subscribe(f"{topic}/+", handler)
    started(hub)
    sender = publisher(make_hub, broker.url)

    # When the poison message comes first
    for payload in (b"poison", b"flaky", b"good"):
        assert sender.publish(f"{topic}/m", payload, timeout=PATIENCE)

    # Then the hub gave the poison message its tries, retried the flaky one, went on, and is well
    wait_for(lambda: handled == [b"flaky", b"good"], f"the later messages (got {handled})")
    assert tries[b"poison"] == 2
    assert tries[b"flaky"] == 2
    assert hub.health() is None

    # And the poison message was acknowledged: it does not come back with the session
    hub.stop()
    hub.start()
    wait_for(lambda: hub.health() is None, "the hub to reconnect")
    assert sender.publish(f"{topic}/m", b"last", timeout=PATIENCE)
    wait_for(lambda: b"last" in handled, "the last message")
    assert tries[b"poison"] == 2


def test_a_message_handled_but_not_acknowledged_comes_again_and_an_idempotent_handler_keeps_it_once(
    broker: Broker, make_hub: HubFactory, topic: str
) -> None:
    # Given a handler that stores each reading by its key, ignoring keys it has already stored,
    # and a first process that stops after storing a reading but before acknowledging it
    stored: dict[str, bytes] = {}
    deliveries: list[Message] = []
    entered, release = threading.Event(), threading.Event()

    def idempotent(message: Message) -> None:
        deliveries.append(message)
        key = message.payload.decode().split(";")[0]  # the meter's id and reading time
        stored.setdefault(key, message.payload)

    def slow_first(message: Message) -> None:
        idempotent(message)
        entered.set()
        release.wait(PATIENCE)

    first = make_hub(broker.url)
    first.subscribe(f"{topic}/+", slow_first)
    started(first)
    sender = publisher(make_hub, broker.url)
    assert sender.publish(f"{topic}/m1", b"m1@2025-01-01T10:00;co2=411", timeout=PATIENCE)
    wait_for(entered.is_set, "the handler to start")
    first.stop(timeout=0.5)
    release.set()

    # When the server comes back under the same session name
    second = make_hub(broker.url, client_id=first.client_id)
    second.subscribe(f"{topic}/+", idempotent)
    second.start()

    # Then the broker delivers the reading again (at least once), and it is stored once
    wait_for(lambda: len(deliveries) == 2, "the redelivery")
    assert deliveries[1].payload == deliveries[0].payload
    assert deliveries[1].duplicate
    assert stored == {"m1@2025-01-01T10:00": b"m1@2025-01-01T10:00;co2=411"}


def test_wrong_credentials_are_reported_by_health_and_the_right_ones_connect(
    mosquitto: str, tmp_path: Path, make_hub: HubFactory, topic: str
) -> None:
    # Given a broker that wants a user name and password
    secured = Broker(mosquitto, tmp_path, passwords={"meter": "right-password"})
    secured.start()
    try:
        # When a hub signs in with the wrong password
        wrong = make_hub(secured.url, username="meter", password="wrong-password")
        wrong.start()

        # Then it keeps running and says why it is not connected
        wait_for(lambda: "refused" in (wrong.health() or ""), f"the refusal ({wrong.health()})")
        health = wrong.health()
        assert health is not None
        assert "not authorized" in health.lower() or "bad user name" in health.lower()

        # And with the right password, it connects and receives
        right = make_hub(secured.url, username="meter", password="right-password")
        received: list[bytes] = []
        right.subscribe(f"{topic}/+", lambda m: received.append(m.payload))
        started(right)
        right.publish(f"{topic}/x", b"signed in", timeout=PATIENCE)
        wait_for(lambda: received == [b"signed in"], "the message")
        assert wrong.health() is not None
    finally:
        secured.stop()


def test_health_before_start_and_after_stop() -> None:
    hub = hub_from_settings(MqttSettings(url=f"mqtt://127.0.0.1:{free_port()}"))
    assert hub is not None
    assert hub.health() == "mqtt not started"
    with pytest.raises(RuntimeError, match="not started"):
        hub.publish("a/b", b"x")
    hub.start()
    assert hub.health() is not None
    hub.stop(timeout=10)
    assert hub.health() == "mqtt stopped"
    hub.stop()  # twice is harmless
