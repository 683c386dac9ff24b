"""Traffic's listener: the MQTT subscription detectors publish counts to (``Module.listeners``).

Started by ``civicloud serve`` when the installation has a broker (``CIVICLOUD_MQTT__URL``). It
subscribes ``civicloud/traffic/+/counts`` and ``civicloud/traffic/+/detectors`` on the core's hub; each message is received in a unit
of work of its own (see ``inbox``). A message that is refused is logged and acknowledged: sent
again, it would be refused again. A lost race (the same rows from another server) raises, and
the hub delivers the message again, when its rows are duplicates.
"""

from __future__ import annotations

import logging

from civicloud.core.errors import CivicloudError, Conflict
from civicloud.core.listeners import ListenerEnv
from civicloud.core.mqtt import Message, MqttScope
from civicloud.traffic import inbox
from civicloud.traffic.context import TrafficContext

log = logging.getLogger(__name__)


class CountsListener:
    def __init__(self, env: ListenerEnv, scope: MqttScope | None) -> None:
        self.env = env
        self.scope = scope
        context = env.context
        if not isinstance(context, TrafficContext):
            raise TypeError("Traffic's listener needs a TrafficContext")
        self.context = context
        self.received = 0
        self.refused = 0

    @property
    def address(self) -> str:
        if self.scope is None:
            return "mqtt (no broker configured)"
        return f"mqtt {inbox.TOPIC_FILTER} {inbox.DETECTOR_TOPIC_FILTER}"

    def handle(self, message: Message) -> None:
        try:
            with self.env.services.db.unit_of_work() as session:
                result = inbox.receive(
                    session=session,
                    context=self.context,
                    topic=message.topic,
                    payload=message.payload,
                )
        except Conflict:
            raise  # another server kept the same rows meanwhile: the hub delivers it again
        except CivicloudError as exc:  # refused: sent again, it would be refused again
            self.refused += 1
            log.warning("traffic: refused counts on %s: %s", message.topic, exc.detail)
            return
        self.received += 1
        log.debug(
            "traffic: %s rows kept, %s duplicates, from %s",
            result.rows,
            result.duplicates,
            message.topic,
        )

    def health(self) -> str | None:
        return None

    def stop(self, timeout: float) -> None:
        if self.scope is not None:
            self.scope.close()

    def alive(self) -> bool:
        return True


def start(env: ListenerEnv) -> CountsListener:
    listener = CountsListener(env, env.mqtt)
    if env.mqtt is not None:
        env.mqtt.subscribe(inbox.TOPIC_FILTER, listener.handle)
        env.mqtt.subscribe(inbox.DETECTOR_TOPIC_FILTER, listener.handle)
    return listener
