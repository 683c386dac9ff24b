"""The supervisor starts the modules' listeners, restarts one that died, fails one that keeps
dying, and stops them all."""

from __future__ import annotations

import threading
import time
from typing import cast

import pytest
from fastapi.testclient import TestClient
from tests.fakes import jobs as job_fakes
from tests.fakes import listeners as fakes

from civicloud.app import create_app
from civicloud.core.listeners import Supervisor
from civicloud.core.mqtt import MqttHub, MqttScope
from civicloud.core.services import Services


@pytest.fixture
def services(core_services: Services) -> Services:
    """Services running nothing yet (a test picks its module)."""
    return core_services


def _until(condition: object, limit: float = 30.0) -> None:
    # polling: the watcher acts on its own thread, on its own time
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if callable(condition) and condition():
            return
        time.sleep(0.02)
    pytest.fail("the supervisor did not get there in time")


def test_a_listener_is_started_healthy_and_restarted_when_it_dies(services: Services) -> None:
    # given a module with an echo listener, under a supervisor
    supervisor = Supervisor(
        job_fakes.with_modules(services, fakes.module("echo")), first_backoff=0.01
    )
    fakes.STARTED.clear()
    supervisor.start()
    try:
        # then it serves, and is healthy, at the address the supervisor gives
        (server,) = fakes.STARTED
        assert supervisor.addresses() == {"listentest.echo": server.address}
        assert supervisor.health() == {"listentest.echo": None}
        assert fakes.echo(server.port) == b"ping"
        # when it dies
        server.kill()
        # then a new one is started, serving and healthy
        _until(lambda: len(fakes.STARTED) == 2 and supervisor.health()["listentest.echo"] is None)
        assert fakes.echo(fakes.STARTED[1].port, b"again") == b"again"
        assert not supervisor.failed
    finally:
        supervisor.stop(5)
    # and stop() stopped it
    assert not fakes.STARTED[1].alive()


def test_a_restarted_listener_subscribes_again_and_gets_each_message_once(
    services: Services,
) -> None:
    # given a listener that subscribes through the hub, under a supervisor
    hub = fakes.MemoryHub()
    supervisor = Supervisor(
        job_fakes.with_modules(services, fakes.module("subscriber")),
        hub=cast("MqttHub", hub),
        first_backoff=0.01,
    )
    fakes.STARTED.clear()
    fakes.RECEIVED.clear()
    supervisor.start()
    try:
        assert len(hub.subscriptions) == 1
        # when it dies and is restarted
        fakes.STARTED[0].kill()
        _until(
            lambda: len(fakes.STARTED) == 2 and supervisor.health()["listentest.subscriber"] is None
        )
        # then its first subscription was ended before the new one was made
        assert len(hub.subscriptions) == 1
        hub.deliver("test/counts", b"12")
        assert fakes.RECEIVED == [b"12"]
    finally:
        supervisor.stop(5)
    # and stopping it ends its subscription
    assert hub.subscriptions == []
    assert hub.paused == {}


def test_a_dead_subscribers_handlers_go_at_once_and_its_messages_wait_for_the_restarted_one(
    services: Services,
) -> None:
    # given a subscribing listener whose restart waits until the test lets it go
    hub = fakes.MemoryHub()
    supervisor = Supervisor(
        job_fakes.with_modules(services, fakes.module("gated")),
        hub=cast("MqttHub", hub),
        first_backoff=0.01,
    )
    fakes.STARTED.clear()
    fakes.RECEIVED.clear()
    fakes.GATE.clear()
    supervisor.start()
    try:
        hub.deliver("test/counts", b"1")
        assert fakes.RECEIVED == [b"1"]
        # when it dies
        fakes.STARTED[0].kill()
        # then its handler is removed before it runs again, its filter kept and paused
        _until(lambda: hub.subscriptions == [])
        assert hub.paused == {"test/counts": 1}
        # and a message while it is down is held, not taken by the dead one
        hub.deliver("test/counts", b"2")
        assert fakes.RECEIVED == [b"1"]
        assert [m.payload for m in hub.held] == [b"2"]
        # when it is restarted, the new one gets it, once, and the newer ones after it
        fakes.GATE.set()
        _until(lambda: fakes.RECEIVED == [b"1", b"2"])
        _until(lambda: supervisor.health()["listentest.gated"] is None)
        assert hub.held == []
        assert hub.paused == {}
        hub.deliver("test/counts", b"3")
        assert fakes.RECEIVED == [b"1", b"2", b"3"]
        assert len(hub.subscriptions) == 1
    finally:
        fakes.GATE.set()
        supervisor.stop(5)
    assert hub.subscriptions == []


def test_a_subscriber_that_fails_for_good_lets_its_filter_go_and_acknowledges_nothing_held(
    services: Services,
) -> None:
    # given a listener that subscribes and dies at once, every time
    hub = fakes.MemoryHub()
    told = threading.Event()
    supervisor = Supervisor(
        job_fakes.with_modules(services, fakes.module("dead_subscriber")),
        hub=cast("MqttHub", hub),
        on_failure=lambda _name, _why: told.set(),
        first_backoff=0.01,
    )
    fakes.RECEIVED.clear()
    supervisor.start()
    try:
        # when it has failed for good
        assert told.wait(30)
        # then its handlers are gone, its filter no longer paused, and nothing was handled
        _until(lambda: hub.paused == {})
        assert hub.subscriptions == []
        hub.deliver("test/counts", b"late")
        assert hub.held == []
        assert fakes.RECEIVED == []
    finally:
        supervisor.stop(5)


def test_a_listener_that_keeps_dying_fails_loudly(services: Services) -> None:
    # given a listener that dies as it starts, next to a healthy one
    failures: list[str] = []
    told = threading.Event()

    def failed(name: str, why: str) -> None:
        failures.append(f"{name}: {why}")
        told.set()

    supervisor = Supervisor(
        job_fakes.with_modules(services, fakes.module("echo", "dead")),
        on_failure=failed,
        first_backoff=0.01,
    )
    fakes.STARTED.clear()
    supervisor.start()
    try:
        # when the supervisor has restarted it as often as it may
        assert told.wait(30)
        # then it is failed for good, said once, and the other stays healthy
        assert supervisor.failed
        assert failures == ["listentest.dead: it cannot bind its port"]
        health = supervisor.health()
        assert health["listentest.dead"] == "failed: it cannot bind its port"
        assert health["listentest.echo"] is None
    finally:
        supervisor.stop(5)
    assert not fakes.STARTED[0].alive()


def test_stop_stops_every_listener_and_the_hub(services: Services) -> None:
    # given two echo listeners and a hub
    class FakeHub:
        address = "mqtt://127.0.0.1:1883"

        def __init__(self) -> None:
            self.events: list[str] = []

        def start(self) -> None:
            self.events.append("start")

        def stop(self, timeout: float) -> None:
            self.events.append("stop")

        def health(self) -> str | None:
            return None

        def subscribe(self, topic: str, handler: object, qos: int = 1) -> None:
            self.events.append(f"subscribe {topic}")

        def unsubscribe(self, subscription: object) -> None:
            self.events.append("unsubscribe")

        def scoped(self) -> MqttScope:
            return MqttScope(cast("MqttHub", self))

    hub = FakeHub()
    module = fakes.module("echo")
    # (a stand-in for the broker's connection: the supervisor only starts, asks and stops it)
    supervisor = Supervisor(job_fakes.with_modules(services, module), hub=cast("MqttHub", hub))
    fakes.STARTED.clear()
    supervisor.start()
    assert supervisor.health() == {"core.mqtt": None, "listentest.echo": None}
    # when it is stopped
    supervisor.stop(5)
    # then the hub and the listener stopped
    assert [server.alive() for server in fakes.STARTED] == [False]
    assert hub.events == ["start", "stop"]


def test_readiness_shows_each_listeners_health(services: Services) -> None:
    # given the app with a supervisor running a healthy listener and one that keeps dying
    told = threading.Event()
    supervisor = Supervisor(
        job_fakes.with_modules(services, fakes.module("echo", "dead")),
        on_failure=lambda _name, _why: told.set(),
        first_backoff=0.01,
    )
    app = create_app(services=services)
    app.state.supervisor = supervisor
    client = TestClient(app, base_url="https://testserver")
    supervisor.start()
    try:
        # when the dying one has failed for good
        assert told.wait(30)
        answer = client.get("/readyz")
    finally:
        supervisor.stop(5)
    # then the web app stays ready (its pages and API do not need the listener), the check says
    # the installation is degraded and names each listener's state, and what went wrong (which
    # may name a broker or a file) is for the logs, not for anyone asking
    assert answer.status_code == 200
    assert answer.json() == {
        "status": "degraded",
        "listeners": {"listentest.echo": "ok", "listentest.dead": "unwell"},
    }


def test_readiness_is_ready_when_every_listener_is_well(services: Services) -> None:
    # given the app with a supervisor running one healthy listener
    supervisor = Supervisor(job_fakes.with_modules(services, fakes.module("echo")))
    app = create_app(services=services)
    app.state.supervisor = supervisor
    supervisor.start()
    try:
        # when the readiness check is asked
        answer = TestClient(app, base_url="https://testserver").get("/readyz")
    finally:
        supervisor.stop(5)
    # then it is ready, and says so of the listener
    assert answer.status_code == 200
    assert answer.json() == {"status": "ready", "listeners": {"listentest.echo": "ok"}}
