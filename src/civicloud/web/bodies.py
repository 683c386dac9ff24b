"""Routes that take larger request bodies than ``web.max_body_bytes`` (a module's uploads).

The middleware refuses a body over the request's limit with 413 as it is read
(``BODY_LIMIT_KEY``). FastAPI reads a route's JSON or form body before it runs the route's
dependencies, so a dependency cannot raise the limit in time; the route itself does, through
its class: a router made with ``route_class=BodyLimitRoute`` sets the limit of each endpoint
marked with :func:`takes_bodies_up_to` before the body is read.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from fastapi import Request, Response
from fastapi.routing import APIRoute

from civicloud.web.middleware import BODY_LIMIT_KEY

F = TypeVar("F", bound=Callable[..., Any])
_ATTRIBUTE = "__civicloud_body_limit__"


def takes_bodies_up_to(limit: int) -> Callable[[F], F]:
    """Mark an endpoint as taking request bodies of up to ``limit`` bytes."""

    def mark(endpoint: F) -> F:
        setattr(endpoint, _ATTRIBUTE, limit)
        return endpoint

    return mark


class BodyLimitRoute(APIRoute):
    """A route that raises its request's body limit to its endpoint's mark, if it has one."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        limit = getattr(self.endpoint, _ATTRIBUTE, None)
        if limit is None:
            return handler

        async def limited(request: Request) -> Response:
            request.scope[BODY_LIMIT_KEY] = int(limit)
            return await handler(request)

        return limited
