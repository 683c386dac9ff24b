"""Counts over MQTT, through a real Mosquitto broker on loopback: a detector's message is kept,
a re-sent one counted once, a bad one refused whole and the listener carries on; the flush job
keeps the inbox in Parquet, where the profile reads it."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select
from tests.factories.core import SiblingWorld, unique
from tests.functional.core.mqtt_broker import Broker, require_mosquitto, wait_for

from civicloud.app import MODULES
from civicloud.core.actor import Actor
from civicloud.core.config import MqttSettings
from civicloud.core.listeners import ListenerEnv
from civicloud.core.mqtt import MqttHub
from civicloud.core.services import Services
from civicloud.traffic import countstore, inbox, mappings, networks, sumo
from civicloud.traffic.context import TrafficContext
from civicloud.traffic.listener import CountsListener, start
from civicloud.traffic.models import TrafficCountBatch, TrafficCountInbox
from civicloud.traffic.network import Network, read_network

ZONE = ZoneInfo("Asia/Shanghai")
DAY = date(2026, 11, 3)
PATIENCE = 20.0


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    server = Broker(require_mosquitto(), tmp_path_factory.mktemp("mosquitto"))
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def junction(tmp_path_factory: pytest.TempPathFactory) -> tuple[bytes, Network]:
    path = sumo.generate("junction", tmp_path_factory.mktemp("net") / "junction.net.xml")
    return path.read_bytes(), read_network(Path(path))


@pytest.fixture
def hubs(broker: Broker) -> Iterator[Callable[[], MqttHub]]:
    made: list[MqttHub] = []

    def make() -> MqttHub:
        hub = MqttHub(
            MqttSettings(
                url=broker.url,
                client_id=f"traffic-{uuid.uuid4().hex[:12]}",
                reconnect_min_seconds=1,
                reconnect_max_seconds=2,
            )
        )
        made.append(hub)
        return hub

    yield make
    for hub in made:
        hub.stop(timeout=10)


class Bureau:
    def __init__(self, services: Services, world: SiblingWorld, content: bytes) -> None:
        with services.db.unit_of_work() as session:
            city = session.merge(world.a.child)
            self.slug = city.slug
            self.network = networks.import_network(
                session=session,
                actor=Actor.system("test"),
                tenant_id=city.id,
                name=unique("junction"),
                content=content,
            )
            self.network_id = self.network.id
            self.name = self.network.name
        self.topic = f"civicloud/traffic/{self.slug}/counts"


def _message(net: Network, network: str, hour: int, per_slot: int = 12) -> dict[str, Any]:
    rows = []
    for quarter in range(4):
        begin = datetime(DAY.year, DAY.month, DAY.day, hour, quarter * 15, tzinfo=ZONE)
        for (f, t), links in sorted(net.signals["A0"].movements().items()):
            rows.append(
                {
                    "interval_begin": begin.isoformat(),
                    "interval_end": (begin + timedelta(minutes=15)).isoformat(),
                    "tls_id": "A0",
                    "from_edge": f,
                    "to_edge": t,
                    "dir": links[0].dir,
                    "count": per_slot,
                }
            )
    return {"network": network, "rows": rows}


def _inbox_rows(services: Services, network_id: uuid.UUID) -> int:
    with services.db.unit_of_work(write=False) as session:
        return int(
            session.scalar(
                select(func.count())
                .select_from(TrafficCountInbox)
                .where(TrafficCountInbox.network_id == network_id)
            )
            or 0
        )


def _listening(
    services: Services, context: TrafficContext, hubs: Callable[[], MqttHub]
) -> tuple[CountsListener, MqttHub]:
    """Traffic's listener on a hub connected to the broker, and a second hub to publish with."""
    module = next(m for m in MODULES if m.name == "traffic")
    hub = hubs()
    listener = start(
        ListenerEnv(
            services=services,
            module=module,
            context=context,
            settings=context.settings,
            mqtt=hub.scoped(),
        )
    )
    assert isinstance(listener, CountsListener)
    hub.start()
    wait_for(lambda: hub.health() is None, "the hub to connect")
    sender = hubs()
    sender.start()
    wait_for(lambda: sender.health() is None, "the sender to connect")
    return listener, sender


def test_detector_messages_are_kept_once_and_bad_ones_refused(
    core_services: Services,
    world: SiblingWorld,
    junction: tuple[bytes, Network],
    hubs: Callable[[], MqttHub],
) -> None:
    bureau = Bureau(core_services, world, junction[0])
    context = core_services.context("traffic", TrafficContext)
    listener, sender = _listening(core_services, context, hubs)

    first = json.dumps(_message(junction[1], bureau.name, 7)).encode()
    second = json.dumps(_message(junction[1], str(bureau.network_id), 8)).encode()
    rows_per_message = len(json.loads(first)["rows"])
    bad = _message(junction[1], bureau.name, 9)
    bad["rows"][3]["count"] = -1
    for payload in (
        first,
        first,  # re-sent
        json.dumps(bad).encode(),  # one bad row refuses the whole message
        b"not json",
        json.dumps({"network": "nowhere", "rows": []}).encode(),
        second,
    ):
        assert sender.publish(bureau.topic, payload, timeout=PATIENCE)
    wait_for(lambda: listener.received + listener.refused >= 6, "every message handled")
    assert listener.refused == 3
    assert _inbox_rows(core_services, bureau.network_id) == 2 * rows_per_message

    # The flush job keeps the inbox in Parquet and empties it; the profile reads it.
    with core_services.db.unit_of_work() as session:
        batch = inbox.flush(session=session, context=context, network_id=bureau.network_id)
        assert batch is not None
        assert (batch.rows, batch.source) == (2 * rows_per_message, "mqtt")
    assert _inbox_rows(core_services, bureau.network_id) == 0
    # The first message once more, after the flush: a duplicate of what is kept.
    assert sender.publish(bureau.topic, first, timeout=PATIENCE)
    wait_for(lambda: listener.received >= 4, "the late duplicate")
    with core_services.db.unit_of_work() as session:
        late = inbox.flush(session=session, context=context, network_id=bureau.network_id)
        assert late is not None
        assert (late.rows, late.duplicates) == (0, rows_per_message)
    with core_services.db.unit_of_work(write=False) as session:
        profile = countstore.stored_profile(
            session=session,
            actor=Actor.system("test"),
            context=context,
            network_id=bureau.network_id,
            first=DAY,
            last=DAY,
        )
        batches = session.scalar(
            select(func.count())
            .select_from(TrafficCountBatch)
            .where(TrafficCountBatch.network_id == bureau.network_id)
        )
    assert sum(r.vehicles for r in profile) == 2 * rows_per_message * 12
    assert batches == 2
    listener.stop(timeout=5)


def test_a_message_for_another_tenants_network_is_refused(
    core_services: Services, world: SiblingWorld, junction: tuple[bytes, Network]
) -> None:
    ours = Bureau(core_services, world, junction[0])
    with core_services.db.unit_of_work() as session:
        theirs = networks.import_network(
            session=session,
            actor=Actor.system("test"),
            tenant_id=world.b.child.id,
            name=unique("theirs"),
            content=junction[0],
        )
        theirs_id = theirs.id
    context = core_services.context("traffic", TrafficContext)
    payload = json.dumps(_message(junction[1], str(theirs_id), 7)).encode()
    with (
        pytest.raises(Exception, match="No such network"),
        core_services.db.unit_of_work() as session,
    ):
        inbox.receive(session=session, context=context, topic=ours.topic, payload=payload)
    assert _inbox_rows(core_services, theirs_id) == 0
    for topic in ("civicloud/traffic/counts", "civicloud/traffic//counts", "other/x/y/z"):
        assert inbox.tenant_of_topic(topic) is None


NORTH = "top0A0.220.00"
RIGHT, STRAIGHT = "A0left0", "A0bottom0"
MAPPING = (
    "detector_id,tls_id,from_edge,to_edge,lane,share\n"
    f"d1,A0,{NORTH},{RIGHT},,0.25\n"
    f"d1,A0,{NORTH},{STRAIGHT},,0.75\n"
)


def _detector_message(network: str, hour: int, count: int) -> dict[str, Any]:
    rows = []
    for quarter in range(4):
        begin = datetime(DAY.year, DAY.month, DAY.day, hour, quarter * 15, tzinfo=ZONE)
        rows.append(
            {
                "interval_begin": begin.isoformat(),
                "interval_end": (begin + timedelta(minutes=15)).isoformat(),
                "detector_id": "d1",
                "count": count,
            }
        )
    return {"network": network, "rows": rows}


def test_detector_counts_over_mqtt_become_movement_counts_through_the_mapping(
    core_services: Services,
    world: SiblingWorld,
    junction: tuple[bytes, Network],
    hubs: Callable[[], MqttHub],
) -> None:
    bureau = Bureau(core_services, world, junction[0])
    topic = f"civicloud/traffic/{bureau.slug}/detectors"
    context = core_services.context("traffic", TrafficContext)
    listener, sender = _listening(core_services, context, hubs)
    message = json.dumps(_detector_message(bureau.name, 7, 100)).encode()
    # Without a mapping, detector counts have no movements to go to: refused.
    assert sender.publish(topic, message, timeout=PATIENCE)
    wait_for(lambda: listener.refused >= 1, "the refusal")
    assert _inbox_rows(core_services, bureau.network_id) == 0
    with core_services.db.unit_of_work() as session:
        mappings.put_mapping(
            session=session,
            actor=Actor.system("test"),
            network_id=bureau.network_id,
            content=MAPPING.encode(),
        )
    bad = _detector_message(bureau.name, 8, 100)
    bad["rows"][1]["detector_id"] = "d9"  # an unknown detector refuses the message whole
    for payload in (message, message, json.dumps(bad).encode()):
        assert sender.publish(topic, payload, timeout=PATIENCE)
    wait_for(lambda: listener.received + listener.refused >= 4, "every message handled")
    assert listener.refused == 2
    # Four quarters, each split over two movements (25 and 75), kept once.
    assert _inbox_rows(core_services, bureau.network_id) == 8
    with core_services.db.unit_of_work() as session:
        batch = inbox.flush(session=session, context=context, network_id=bureau.network_id)
        assert batch is not None
        assert batch.rows == 8
    with core_services.db.unit_of_work(write=False) as session:
        profile = countstore.stored_profile(
            session=session,
            actor=Actor.system("test"),
            context=context,
            network_id=bureau.network_id,
            first=DAY,
            last=DAY,
        )
    by_movement: dict[str, int] = {}
    for r in profile:
        by_movement[r.to_edge] = by_movement.get(r.to_edge, 0) + r.vehicles
    assert by_movement == {RIGHT: 4 * 25, STRAIGHT: 4 * 75}
    listener.stop(timeout=5)
    assert inbox.tenant_of_topic(topic) == bureau.slug
