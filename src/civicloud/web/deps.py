"""Request dependencies: the unit of work (``SessionDep``) and the caller (``ActorDep``).

A route that takes ``ActorDep`` needs an authenticated caller; a route without it is public.
The authorisation-matrix test relies on exactly that.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterator
from datetime import timedelta
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.orm import Session

from civicloud.core.db import utcnow
from civicloud.core.errors import NotAuthenticated, PermissionDenied
from civicloud.core.identity import (
    resolve_api_key,
    resolve_web_session,
    touch_api_key,
)
from civicloud.core.roles import Actor, load_actor
from civicloud.core.services import Services

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
SESSION_COOKIE = "civicloud_session"
CSRF_COOKIE = "civicloud_csrf"
CSRF_HEADER = "x-csrf-token"
#: How stale ``api_key.last_used_at`` may get before a request refreshes it.
TOUCH_EVERY = timedelta(minutes=5)


def get_services(request: Request) -> Services:
    """The application's services."""
    services: Services = request.app.state.services
    return services


ServicesDep = Annotated[Services, Depends(get_services)]


def _unit_of_work(request: Request) -> Iterator[Session]:
    services = get_services(request)
    with services.db.unit_of_work(write=request.method not in SAFE_METHODS) as session:
        yield session


#: The request's one transaction: committed after the route returns, before the response is sent.
SessionDep = Annotated[Session, Depends(_unit_of_work, scope="function")]


def _bearer(request: Request) -> str | None:
    header = request.headers.get("authorization")
    if not header:
        return None
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise NotAuthenticated("the Authorization header must be 'Bearer <api key>'")
    return token.strip()


def optional_actor(request: Request, session: SessionDep) -> Actor | None:
    """The caller, from a bearer API key or the session cookie; ``None`` when anonymous."""
    cached: Actor | None = getattr(request.state, "actor", None)
    if cached is not None:
        return cached
    token = _bearer(request)
    actor: Actor | None = None
    if token is not None:
        found = resolve_api_key(session=session, token=token)
        if found is None:
            raise NotAuthenticated("the API key is unknown, expired or revoked")
        key, user = found
        actor = load_actor(session=session, user=user, via=f"api_key:{key.prefix}")
        if key.last_used_at is None or utcnow() - key.last_used_at > TOUCH_EVERY:
            if request.method in SAFE_METHODS:
                # Its own short write, so that a read-only request stays read-only.
                with get_services(request).db.unit_of_work() as touch:
                    touch_api_key(session=touch, key_id=key.id)
            else:
                # A change already holds the write transaction (on SQLite, the database's write
                # lock): a second writer beside it would wait for it forever, so touch within it.
                touch_api_key(session=session, key_id=key.id)
    else:
        cookie = request.cookies.get(SESSION_COOKIE)
        signed_in = resolve_web_session(session=session, token=cookie) if cookie else None
        if signed_in is not None:
            if request.method not in SAFE_METHODS:
                check_csrf(request, request.headers.get(CSRF_HEADER))
            actor = load_actor(session=session, user=signed_in, via="session")
    request.state.actor = actor
    return actor


def require_actor(actor: Annotated[Actor | None, Depends(optional_actor)]) -> Actor:
    """The authenticated caller; raises ``NotAuthenticated`` (401) for anonymous requests."""
    if actor is None:
        raise NotAuthenticated("sign in, or send 'Authorization: Bearer <api key>'")
    return actor


OptionalActorDep = Annotated[Actor | None, Depends(optional_actor)]
ActorDep = Annotated[Actor, Depends(require_actor)]


def check_csrf(request: Request, submitted: str | None) -> None:
    """Refuse a cookie-authenticated change whose CSRF token does not match the CSRF cookie."""
    expected = request.cookies.get(CSRF_COOKIE)
    if not expected or not submitted or not hmac.compare_digest(expected, submitted):
        raise PermissionDenied("the form is stale or was not sent by civicloud (CSRF check failed)")
