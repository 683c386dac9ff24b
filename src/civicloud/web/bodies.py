"""Routes that take larger request bodies than ``web.max_body_bytes`` (a module's uploads).

The middleware refuses a body over the request's limit with 413 as it is read
(``BODY_LIMIT_KEY``). FastAPI reads a route's JSON or form body before it runs the route's
dependencies, so a dependency cannot raise the limit in time; the route itself does, through
its class: a router made with ``route_class=BodyLimitRoute`` sets the limit of each endpoint
marked with :func:`takes_bodies_up_to` before the body is read.

Only for a caller who is signed in (a known API key or session): anyone else keeps the
installation's limit, so that a stranger cannot make the server read hundreds of megabytes
before it answers 401. What the caller may do is decided later, by the route, as always.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from fastapi import Request, Response
from fastapi.routing import APIRoute
from starlette.concurrency import run_in_threadpool

from civicloud.core.roles import authenticate_api_key, authenticate_session
from civicloud.web.deps import SESSION_COOKIE, read_cookie, services_of
from civicloud.web.middleware import BODY_LIMIT_KEY

F = TypeVar("F", bound=Callable[..., Any])
_ATTRIBUTE = "__civicloud_body_limit__"


def takes_bodies_up_to(limit: int) -> Callable[[F], F]:
    """Mark an endpoint as taking request bodies of up to ``limit`` bytes."""

    def mark(endpoint: F) -> F:
        setattr(endpoint, _ATTRIBUTE, limit)
        return endpoint

    return mark


async def _signed_in(request: Request) -> bool:
    """Whether the request carries a known API key or session (looked up, not authorised)."""
    services = services_of(request)
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if header and (scheme.lower() != "bearer" or not token):
        return False
    cookie = None if header else read_cookie(request, SESSION_COOKIE)
    if not token and not cookie:
        return False
    cache = services.principals
    if cache.get("api_key", token) if token else cache.get("session", cookie or ""):
        return True

    def look_up() -> bool:
        with services.db.unit_of_work(write=False) as session:
            if token:
                return authenticate_api_key(session=session, token=token, cache=cache) is not None
            found = authenticate_session(session=session, token=cookie or "", cache=cache)
            return found is not None

    return await run_in_threadpool(look_up)


class BodyLimitRoute(APIRoute):
    """A route that raises its request's body limit to its endpoint's mark, if it has one."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        limit = getattr(self.endpoint, _ATTRIBUTE, None)
        if limit is None:
            return handler

        async def limited(request: Request) -> Response:
            if await _signed_in(request):
                request.scope[BODY_LIMIT_KEY] = int(limit)
            return await handler(request)

        return limited
