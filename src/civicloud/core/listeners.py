"""The modules' listeners and their supervision: long-running servers beside the web application.

A module declares a :class:`civicloud.core.modules.Listener` whose ``start`` is called with a
:class:`ListenerEnv` and returns a :class:`RunningListener` (an S3 port, an MQTT subscription).
``civicloud serve`` runs a :class:`Supervisor`: it starts every installed module's listeners
(which subscribe to the core's MQTT hub), then the hub, when the installation configures a
broker; a thread watches them and restarts one that died, a few times with a growing pause,
after which the listener is failed for good: logged, unhealthy in ``/readyz``, and ``serve``
exits non-zero. ``stop()`` stops the hub, then the listeners.

A listener's MQTT subscriptions are paused the moment it is found dead (``MqttScope.close`` with
``pause``): its handlers take nothing more, while the broker keeps the filters and the hub holds
their messages for the restarted listener, which gets them first when it subscribes again in its
``start``. The pauses are released once it has started again (what it no longer subscribes is
unsubscribed), and when it fails for good or the supervisor stops (held messages are then left
unacknowledged, for the broker to send again on the next connection).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from pydantic import BaseModel

from civicloud.core.modules import Listener, Module, resolve
from civicloud.core.mqtt import MqttHub, MqttScope, hub_from_settings
from civicloud.core.services import Services

log = logging.getLogger(__name__)

#: The name under which the core's MQTT hub shows in the supervisor's health.
HUB_NAME = "core.mqtt"
#: Restarts of a listener that keeps dying before it is failed for good.
MAX_RESTARTS = 3
#: The pause before the first restart; it doubles with each one.
FIRST_BACKOFF = 0.5
#: A listener alive this long after a restart starts again from a clean slate of restarts.
STABLE_SECONDS = 60.0


@runtime_checkable
class RunningListener(Protocol):
    """A started listener."""

    @property
    def address(self) -> str:
        """Where it listens (``s3://127.0.0.1:9000``), printed by ``serve``."""
        ...

    def health(self) -> str | None:
        """``None`` when well, else what is wrong (shown by ``/readyz``)."""
        ...

    def stop(self, timeout: float) -> None:
        """Stop within ``timeout`` seconds, releasing its ports."""
        ...

    def alive(self) -> bool:
        """Whether it still runs (``False``: it died, and the supervisor restarts it)."""
        ...


@dataclass(frozen=True)
class ListenerEnv:
    """What a listener's ``start`` is given."""

    services: Services
    module: Module
    #: The module's context, ``None`` when it declares none.
    context: object | None
    settings: BaseModel | None
    #: The listener's view of the core's MQTT hub (its subscriptions end when it is restarted
    #: or stopped), ``None`` when the installation has no broker.
    mqtt: MqttScope | None


def core_hub(services: Services) -> MqttHub | None:
    """The core's MQTT hub for this installation's settings (not started), ``None`` when it
    configures no broker (``CIVICLOUD_MQTT__URL``)."""
    return hub_from_settings(services.settings.mqtt)


@dataclass
class _Supervised:
    module: Module
    listener: Listener
    running: RunningListener | None = None
    restarts: int = 0
    started_at: float = 0.0
    retry_at: float | None = None
    failed: str | None = None
    last_error: str | None = None
    #: Its subscriptions through the hub, paused when it dies and ended when it stops.
    mqtt: MqttScope | None = None
    #: The scopes of its dead runs, paused until it runs again or fails for good.
    paused: list[MqttScope] = field(default_factory=list)


@dataclass
class Supervisor:
    """Starts, watches, restarts and stops the installation's listeners (and the MQTT hub)."""

    services: Services
    hub: MqttHub | None = None
    #: Called once, from the watching thread, when a listener fails for good.
    on_failure: Callable[[str, str], None] = lambda _name, _why: None
    max_restarts: int = MAX_RESTARTS
    first_backoff: float = FIRST_BACKOFF
    check_every: float = 0.2
    _supervised: list[_Supervised] = field(default_factory=list, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _stopping: threading.Event = field(default_factory=threading.Event, repr=False)
    _watcher: threading.Thread | None = field(default=None, repr=False)
    _hub_started: bool = field(default=False, repr=False)

    def start(self) -> None:
        """Start every installed module's listeners, then the hub, then the watching thread.

        The hub starts last: listeners subscribe first, so that what the broker kept for the
        session while the server was away finds its handlers (``core.mqtt``). A listener that
        fails to start is retried by the watcher like one that died.
        """
        for module, listener in self.services.modules.listeners():
            entry = _Supervised(module, listener)
            self._supervised.append(entry)
            self._start(entry)
        if self.hub is not None:
            self.hub.start()
            self._hub_started = True
        self._watcher = threading.Thread(target=self._watch, name="listeners", daemon=True)
        self._watcher.start()

    def _env(self, entry: _Supervised) -> ListenerEnv:
        module = entry.module
        context = self.services.context(module.name, object) if module.context is not None else None
        entry.mqtt = self.hub.scoped() if self.hub is not None else None
        return ListenerEnv(
            services=self.services,
            module=module,
            context=context,
            settings=self.services.section(module.name),
            mqtt=entry.mqtt,
        )

    def _start(self, entry: _Supervised) -> None:
        name = entry.listener.name
        try:
            start = resolve(entry.listener.start)
            if not callable(start):
                raise TypeError(f"{entry.listener.start} is not callable")
            running = start(self._env(entry))
            if not isinstance(running, RunningListener):
                raise TypeError(f"{entry.listener.start} returned no RunningListener")
        except Exception as exc:  # any failure to start: the watcher tries again
            entry.running, entry.last_error = None, f"{type(exc).__name__}: {exc}"
            log.exception("listener %s did not start", name)
            _pause(entry)  # what it subscribed before failing waits for the next try
            self._schedule_restart(entry)
            return
        with self._lock:
            entry.running, entry.started_at, entry.retry_at = running, time.monotonic(), None
        _release(entry)  # it subscribed again what it wants: the rest is let go
        log.info("listener %s on %s", name, running.address)

    def _schedule_restart(self, entry: _Supervised) -> None:
        name = entry.listener.name
        if entry.restarts >= self.max_restarts:
            why = entry.last_error or "it kept stopping"
            with self._lock:
                entry.failed, entry.retry_at = why, None
            _release(entry)
            log.error(
                "listener %s failed for good after %d restarts: %s", name, entry.restarts, why
            )
            self.on_failure(name, why)
            return
        pause = self.first_backoff * 2**entry.restarts
        entry.restarts += 1
        with self._lock:
            entry.retry_at = time.monotonic() + pause
        log.warning("listener %s: restart %d in %.1f s", name, entry.restarts, pause)

    def _watch(self) -> None:
        while not self._stopping.wait(self.check_every):
            for entry in self._supervised:
                if self._stopping.is_set():
                    return
                try:
                    self._check(entry)
                except Exception:  # the watcher itself must not die
                    log.exception("watching listener %s failed", entry.listener.name)

    def _check(self, entry: _Supervised) -> None:
        if entry.failed is not None:
            return
        now = time.monotonic()
        if entry.retry_at is not None:
            if now >= entry.retry_at:
                self._start(entry)
            return
        running = entry.running
        if running is None:
            return
        if running.alive():
            if entry.restarts and now - entry.started_at > STABLE_SECONDS:
                entry.restarts = 0
            return
        _pause(entry)  # at once: the dead one's handlers take nothing more, the rest is held
        entry.last_error = running.health() or "it stopped"
        log.warning(
            "listener %s on %s stopped: %s", entry.listener.name, running.address, entry.last_error
        )
        try:
            running.stop(1.0)  # release whatever it still holds (its port) before a restart
        except Exception:  # it is dead already: what it says as it goes is only logged
            log.exception("listener %s did not stop cleanly", entry.listener.name)
        with self._lock:
            entry.running = None
        self._schedule_restart(entry)

    @property
    def failed(self) -> bool:
        """Whether a listener failed for good."""
        return any(entry.failed is not None for entry in self._supervised)

    def addresses(self) -> dict[str, str]:
        """Each running listener's address (and the hub's), by name."""
        found = {HUB_NAME: self.hub.address} if self.hub is not None else {}
        with self._lock:
            for entry in self._supervised:
                if entry.running is not None:
                    found[entry.listener.name] = entry.running.address
        return found

    def health(self) -> Mapping[str, str | None]:
        """Each listener's (and the hub's) health by name: ``None`` when well."""
        found: dict[str, str | None] = {}
        if self.hub is not None:
            found[HUB_NAME] = _asked(self.hub.health)
        with self._lock:
            entries = [(e.listener.name, e.failed, e.running) for e in self._supervised]
        for name, failed, running in entries:
            if failed is not None:
                found[name] = f"failed: {failed}"
            elif running is None or not running.alive():
                found[name] = "restarting"
            else:
                found[name] = _asked(running.health)
        return found

    def stop(self, timeout: float = 10.0) -> None:
        """Stop watching, then the hub (no message arrives for a listener that is stopping),
        then every listener, newest first."""
        self._stopping.set()
        if self._watcher is not None:
            self._watcher.join(timeout)
        if self.hub is not None and self._hub_started:
            try:
                self.hub.stop(timeout)
            except Exception:  # the listeners are stopped all the same
                log.exception("the MQTT hub did not stop cleanly")
            self._hub_started = False
        for entry in reversed(self._supervised):
            with self._lock:
                running, entry.running = entry.running, None
            if entry.mqtt is not None:
                entry.mqtt.close()
                entry.mqtt = None
            _release(entry)
            if running is None:
                continue
            try:
                running.stop(timeout)
            except Exception:  # one listener's failure to stop does not keep the others up
                log.exception("listener %s did not stop cleanly", entry.listener.name)


def _pause(entry: _Supervised) -> None:
    """Pause the subscriptions of ``entry``'s run that ended, until it runs again."""
    if entry.mqtt is not None:
        entry.mqtt.close(pause=True)
        entry.paused.append(entry.mqtt)
        entry.mqtt = None


def _release(entry: _Supervised) -> None:
    """End the pauses of ``entry``'s earlier runs (held messages stay unacknowledged)."""
    paused, entry.paused = entry.paused, []
    for scope in paused:
        try:
            scope.close()
        except Exception:  # a pause that cannot be released must not stop the supervisor
            log.exception("releasing the MQTT subscriptions of %s failed", entry.listener.name)


def _asked(health: Callable[[], str | None]) -> str | None:
    try:
        return health()
    except Exception as exc:  # a health check that fails says the listener is unwell
        return f"{type(exc).__name__}: {exc}"
