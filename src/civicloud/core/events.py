"""A small in-process message bus: modules publish domain events and others react.

Handlers are subscribed by the composition root (``civicloud.app``), so a module never imports
another one to learn what happened there. Handlers run synchronously inside the publisher's unit
of work: they share its transaction and roll back with it.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session


@dataclass(frozen=True)
class Event:
    """Base class of domain events."""


Handler = Callable[[Session, Any], None]


class MessageBus:
    """Maps event types to the handlers subscribed to them."""

    def __init__(self) -> None:
        self._handlers: dict[type[Event], list[Handler]] = defaultdict(list)

    def subscribe(self, event_type: type[Event], handler: Handler) -> None:
        """Call ``handler(session, event)`` whenever an event of ``event_type`` is published."""
        self._handlers[event_type].append(handler)

    def publish(self, session: Session, event: Event) -> None:
        """Run every handler of ``event``'s type (and its base types) in the caller's transaction."""
        for event_type in type(event).__mro__:
            for handler in self._handlers.get(event_type, []):
                handler(session, event)


#: The process-wide bus; ``civicloud.app`` subscribes handlers to it at start-up.
bus = MessageBus()
