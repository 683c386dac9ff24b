"""Request dependencies: the unit of work (``SessionDep``) and the caller (``ActorDep``).

A route that takes ``ActorDep`` needs an authenticated caller; a route without it is public.
The authorisation-matrix test relies on exactly that.

These dependencies are ``async`` on purpose: FastAPI runs every synchronous dependency in the
thread pool, and each hop there and back costs more than the work most of them do. Blocking
database work runs in the pool (the route itself, a credential cache miss, a write commit); the
rest stays on the event loop.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from civicloud.core.db import utcnow
from civicloud.core.errors import NotAuthenticated, PermissionDenied, ServiceBusy
from civicloud.core.identity import touch_api_key
from civicloud.core.principals import TOUCH_EVERY, Principal, note_touched
from civicloud.core.ratelimit import client_key
from civicloud.core.roles import Actor, authenticate_api_key, authenticate_session
from civicloud.core.services import Services
from civicloud.web.admission import Admission

__all__ = [
    "CSRF_COOKIE",
    "CSRF_HEADER",
    "HOST_PREFIX",
    "SAFE_METHODS",
    "SECURE_PREFIX",
    "SESSION_COOKIE",
    "TOUCH_EVERY",
    "ActorDep",
    "OptionalActorDep",
    "ServicesDep",
    "SessionDep",
    "admission_of",
    "check_csrf",
    "client_of",
    "cookie_name",
    "cookie_secure",
    "expected_csrf_token",
    "get_services",
    "optional_actor",
    "read_cookie",
    "require_actor",
    "services_of",
    "session_csrf_token",
]

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
SESSION_COOKIE = "civicloud_session"
CSRF_COOKIE = "civicloud_csrf"
CSRF_HEADER = "x-csrf-token"


def services_of(request: Request) -> Services:
    """The application's services (for code that is not a dependency)."""
    services: Services = request.app.state.services
    return services


def admission_of(request: Request) -> Admission:
    """The application's admission to the database (``web.admission``)."""
    admission: Admission = request.app.state.admission
    return admission


def client_of(request: Request) -> str:
    """What per-client limits count this request's client as (``core.ratelimit.client_key``)."""
    return client_key(request.client.host if request.client else None)


#: Host names that only ever mean "this machine" besides loopback IP addresses.
LOOPBACK_NAMES = frozenset({"localhost", "testserver"})
#: The prefix of every cookie we set over HTTPS for path ``/``: a browser keeps a ``__Host-``
#: cookie only if it is Secure, for path ``/`` and for this very host, so a sibling subdomain
#: cannot plant one (a session of its choosing, a CSRF token it knows). A cookie for a narrower
#: path gets ``__Secure-`` (Secure only), the most a browser allows there.
HOST_PREFIX = "__Host-"
SECURE_PREFIX = "__Secure-"


def cookie_secure(request: Request) -> bool:
    """Whether cookies get ``Secure`` (and the ``__Host-`` prefix): per ``web.cookie_secure``,
    or automatically.

    Automatic (``None``) means ``Secure`` unless the browser reached us over plain HTTP at a
    loopback host, which is the one-machine demo; a Secure cookie would be dropped there.
    """
    configured = services_of(request).settings.web.cookie_secure
    if configured is not None:
        return configured
    if request.url.scheme != "http":
        return True
    host = (request.url.hostname or "").strip("[]").lower()
    if host in LOOPBACK_NAMES or host.endswith(".localhost"):
        return False
    try:
        return not ipaddress.ip_address(host).is_loopback
    except ValueError:
        return True


def cookie_name(request: Request, name: str, path: str = "/") -> str:
    """The name cookie ``name`` (for ``path``) has on this request: prefixed where cookies are
    Secure (``__Host-`` for ``/``, else ``__Secure-``), bare on the plain-HTTP demo."""
    if not cookie_secure(request):
        return name
    return (HOST_PREFIX if path == "/" else SECURE_PREFIX) + name


def read_cookie(request: Request, name: str, path: str = "/") -> str | None:
    """Cookie ``name`` as this site set it (only the prefixed one where cookies are Secure)."""
    return request.cookies.get(cookie_name(request, name, path))


async def get_services(request: Request) -> Services:
    """The application's services."""
    return services_of(request)


ServicesDep = Annotated[Services, Depends(get_services)]


async def _unit_of_work(request: Request) -> AsyncIterator[Session]:
    # Database.unit_of_work's steps (core.db.UnitOfWork), run here so that opening a session,
    # which touches no database, stays on the event loop and committing or rolling back, which
    # do, run in the thread pool. The request first waits for its slot (web.admission), holding
    # no thread or connection.
    write = request.method not in SAFE_METHODS
    db = services_of(request).db
    async with admission_of(request).slot(write=write):
        unit = db.begin(write=write)
        try:
            yield unit.session
            # A read-only unit on PostgreSQL ends by COMMIT too (its READ ONLY transaction; the
            # driver then keeps its prepared statements); on SQLite it needs no trip at all.
            if write or unit.commit_reads:
                await run_in_threadpool(unit.commit)
        except BaseException as exc:
            if isinstance(exc, Exception):
                # Off the event loop: a rollback is a round trip to the database.
                await run_in_threadpool(unit.rollback)
            else:  # cancelled (the client went away): no awaiting any more
                unit.rollback()
            converted = unit.failed(exc, rolled_back=True)
            if converted is exc:
                raise
            raise converted from exc
        finally:
            unit.close()


#: The request's one transaction: committed after the route returns, before the response is sent.
SessionDep = Annotated[Session, Depends(_unit_of_work, scope="function")]


#: How long a read waits for a writer's slot to note when its API key was last used (seconds).
TOUCH_WAIT = 0.5


def _bearer(request: Request) -> str | None:
    header = request.headers.get("authorization")
    if not header:
        return None
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise NotAuthenticated("the Authorization header must be 'Bearer <api key>'")
    return token.strip()


async def _from_api_key(request: Request, session: Session, token: str) -> Actor:
    services = services_of(request)
    principal: Principal | None = services.principals.get("api_key", token)
    if principal is None:
        principal = await run_in_threadpool(
            lambda: authenticate_api_key(session=session, token=token, cache=services.principals)
        )
    if principal is None:
        raise NotAuthenticated("the API key is unknown, expired or revoked")
    if principal.needs_touch(utcnow()) and principal.api_key_id is not None:
        key_id = principal.api_key_id
        if request.method in SAFE_METHODS:
            # Its own short write, so that a read-only request stays read-only.
            def touch_apart() -> None:
                with services.db.unit_of_work() as touch:
                    touch_api_key(session=touch, key_id=key_id)

            # Best effort: a busy server skips it (the next request touches the key instead)
            # rather than hold a read behind the writers.
            try:
                async with admission_of(request).slot(write=True, wait_seconds=TOUCH_WAIT):
                    await run_in_threadpool(touch_apart)
            except ServiceBusy:
                return principal.actor
        else:
            # A change already holds the write transaction (on SQLite, the database's write
            # lock): a second writer beside it would wait for it forever, so touch within it.
            await run_in_threadpool(lambda: touch_api_key(session=session, key_id=key_id))
        note_touched(services.principals, token, principal)
    return principal.actor


async def optional_actor(request: Request, session: SessionDep) -> Actor | None:
    """The caller, from a bearer API key or the session cookie; ``None`` when anonymous."""
    known: Actor | None = getattr(request.state, "actor", None)
    if known is not None:
        return known
    token = _bearer(request)
    actor: Actor | None = None
    if token is not None:
        actor = await _from_api_key(request, session, token)
    else:
        cookie = read_cookie(request, SESSION_COOKIE)
        if cookie:
            cache = services_of(request).principals
            principal = cache.get("session", cookie) or await run_in_threadpool(
                lambda: authenticate_session(session=session, token=cookie, cache=cache)
            )
            if principal is not None:
                if request.method not in SAFE_METHODS:
                    check_csrf(request, request.headers.get(CSRF_HEADER))
                actor = principal.actor
    request.state.actor = actor
    return actor


async def require_actor(actor: Annotated[Actor | None, Depends(optional_actor)]) -> Actor:
    """The authenticated caller; raises ``NotAuthenticated`` (401) for anonymous requests."""
    if actor is None:
        raise NotAuthenticated("sign in, or send 'Authorization: Bearer <api key>'")
    return actor


OptionalActorDep = Annotated[Actor | None, Depends(optional_actor)]
ActorDep = Annotated[Actor, Depends(require_actor)]


def session_csrf_token(session_token: str) -> str:
    """The CSRF token of a signed-in browser, derived from its session cookie.

    A site that shares our registrable domain can plant a ``civicloud_csrf`` cookie, but it
    cannot read the HttpOnly session cookie, so it cannot compute this.
    """
    return hashlib.sha256(f"civicloud-csrf\n{session_token}".encode()).hexdigest()


def expected_csrf_token(request: Request) -> str | None:
    """The token a form or cookie-authenticated call must carry: bound to the session when
    there is one, else the random one of the CSRF cookie (sign-in forms)."""
    session_token = read_cookie(request, SESSION_COOKIE)
    if session_token:
        return session_csrf_token(session_token)
    return read_cookie(request, CSRF_COOKIE)


def check_csrf(request: Request, submitted: str | None) -> None:
    """Refuse a form or cookie-authenticated change whose CSRF token is not the expected one."""
    expected = expected_csrf_token(request)
    if not expected or not submitted or not hmac.compare_digest(expected, submitted):
        raise PermissionDenied("the form is stale or was not sent by civicloud (CSRF check failed)")
