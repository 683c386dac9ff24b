"""Public pages: the citizens' portal, and signing operators in and out."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, Response

from civicloud.core import identity
from civicloud.core.i18n import N_
from civicloud.core.identity.signin import (
    ACCOUNT_WINDOW,
    FAILURES_PER_ACCOUNT_AND_CLIENT,
    SignInGuard,
    SignInThrottled,
)
from civicloud.core.modules import HomeCard
from civicloud.web.deps import (
    CSRF_COOKIE,
    SESSION_COOKIE,
    ServicesDep,
    SessionDep,
    client_of,
    read_cookie,
)
from civicloud.web.pages.forms import DONE_MESSAGES, safe_next
from civicloud.web.pages.guards import CsrfChecked, PageActorDep, see_other
from civicloud.web.pages.rendering import (
    clear_cookie,
    get_renderer,
    new_csrf_token,
    render,
    set_cookie,
)

router = APIRouter(include_in_schema=False)

#: Longest password sent to the hasher; longer ones are refused before any work is done.
MAX_PASSWORD_CHARS = 1024
WRONG_PASSWORD = N_(
    "The username or password is wrong. After %(count)s failed attempts at an account from your network, sign-ins to it from there pause for %(minutes)s minutes."
)
#: What a refused attempt says, by the limit that refused it (``SignInThrottled.scope``).
THROTTLED_MESSAGES = {
    "client": N_(
        "Too many failed sign-ins came from your network. Try again in %(minutes)s minutes."
    ),
    "account": N_(
        "Too many failed sign-ins at this account came from your network. Try again in %(minutes)s minutes, or sign in from another network."
    ),
}


@dataclass(frozen=True)
class PlannedService:
    """A service the platform will offer, shown as "coming soon" until a module of that name is
    installed (whose own card, ``Module.home``, then takes its place)."""

    key: str
    title: str
    summary: str
    items: tuple[str, ...]

    @property
    def icon(self) -> str:
        """The card's icon template."""
        return f"icons/{self.key}.svg"


PLANNED_SERVICES: tuple[PlannedService, ...] = (
    PlannedService(
        "store",
        N_("Document storage"),
        N_("Keep licences, certificates and case files in secure storage inside your region."),
        (N_("Electronic licences"), N_("Case files"), N_("Data kept in region")),
    ),
    PlannedService(
        "traffic",
        N_("Traffic and transport"),
        N_("Road conditions, signal timing plans and traffic notices for the city."),
        (N_("Road conditions"), N_("Signal timing"), N_("Traffic notices")),
    ),
    PlannedService(
        "emissions",
        N_("Emissions monitoring"),
        N_("Enterprises report their emissions; agencies review and publish the results."),
        (N_("Emission reports"), N_("Review and verification"), N_("Public disclosure")),
    ),
)


@dataclass(frozen=True)
class ServiceCard:
    """An installed module's card on the home page."""

    key: str
    title: str
    summary: str
    items: tuple[str, ...]
    href: str | None
    action: str | None
    icon: str
    hero: str | None


def home_cards(cards: list[tuple[str, HomeCard]]) -> tuple[list[ServiceCard], list[object]]:
    """The installed modules' cards open to citizens today, and the cards of what is to come
    (modules that are not open yet, then the planned services no module provides)."""
    available: list[ServiceCard] = []
    coming: list[object] = []
    for key, card in cards:
        shown = ServiceCard(
            key,
            card.title,
            card.summary,
            card.items,
            card.href,
            card.action,
            card.icon or f"{key}/icons/service.svg",
            card.hero,
        )
        (available if card.href else coming).append(shown)
    installed = {key for key, _card in cards}
    coming.extend(s for s in PLANNED_SERVICES if s.key not in installed)
    return available, coming


@router.get("/", name="page.home")
def home(request: Request, actor: PageActorDep) -> HTMLResponse:
    """The public portal: what citizens can do first, the services to come, and (out of the
    citizens' way, at the end) the way in for staff."""
    available, coming = home_cards(get_renderer(request).home_cards)
    return render(
        request,
        "home.html",
        {
            "available": available,
            "coming": coming,
            "done": DONE_MESSAGES.get(request.query_params.get("done", "")),
        },
    )


@router.get("/login", name="page.login", response_model=None)
def login_form(request: Request, actor: PageActorDep, next: str = "") -> Response:
    """The sign-in form for operators."""
    target = safe_next(next)
    if actor is not None:
        return see_other(target)
    return _login_page(request, next_url=target)


@router.post("/login", name="page.login_submit", response_model=None)
def login(
    request: Request,
    session: SessionDep,
    services: ServicesDep,
    _csrf: CsrfChecked,
    username: Annotated[str, Form()] = "",
    password: Annotated[str, Form()] = "",
    next: Annotated[str, Form()] = "",
) -> Response:
    """Check a username and password; on success start a session and go on to the console."""
    target = safe_next(next)
    username = username.strip()
    if not username or not password:
        return _login_page(
            request,
            next_url=target,
            username=username,
            error=N_("Enter your username and your password."),
            status_code=422,
        )
    # Failed sign-ins are limited per client address over all accounts (spraying, and the
    # audit records each failure writes) and per account and address (guessing one password),
    # never per account alone: the right password from another address always gets in.
    guard: SignInGuard = request.app.state.sign_in_guard
    try:
        # Counted up front, taken back below if it succeeds: attempts sent at once cannot all
        # slip under the limit while their passwords are being checked.
        attempt = guard.admit(username=username, client=client_of(request))
    except SignInThrottled as exc:
        page = _login_page(
            request,
            next_url=target,
            username=username,
            error=THROTTLED_MESSAGES[exc.scope],
            error_args={"minutes": max(1, -(-exc.retry_after // 60))},
            status_code=429,
        )
        page.headers["Retry-After"] = str(exc.retry_after)
        return page
    user = None
    if len(password) <= MAX_PASSWORD_CHARS and len(username) <= 64:
        user = identity.authenticate_password(
            session=session, username=username, password=password, passwords=services.passwords
        )
    if user is None:
        # Returned, not raised: the unit of work commits the failure count and its audit record.
        return _login_page(
            request,
            next_url=target,
            username=username,
            error=WRONG_PASSWORD,
            status_code=401,
        )
    guard.succeeded(attempt)
    hours = services.settings.web.session_hours
    _web_session, token = identity.start_web_session(
        session=session,
        user=user,
        hours=hours,
        client_address=request.client.host if request.client else None,
        user_agent=request.headers.get("user-agent"),
    )
    response = see_other(target)
    set_cookie(response, request, SESSION_COOKIE, token, max_age=hours * 3600)
    # A new CSRF token with every new session, so that one planted before sign-in is useless.
    set_cookie(response, request, CSRF_COOKIE, new_csrf_token())
    return response


@router.post("/logout", name="page.logout")
def logout(request: Request, session: SessionDep, _csrf: CsrfChecked) -> Response:
    """Sign out: end the session and forget its cookie."""
    token = read_cookie(request, SESSION_COOKIE)
    if token:
        identity.end_web_session(session=session, token=token)
    response = see_other("/?done=signed_out")
    clear_cookie(response, request, SESSION_COOKIE)
    return response


def _login_page(
    request: Request,
    *,
    next_url: str,
    username: str = "",
    error: str | None = None,
    error_args: dict[str, int] | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    lockout = {
        "count": FAILURES_PER_ACCOUNT_AND_CLIENT,
        "minutes": int(ACCOUNT_WINDOW.total_seconds() // 60),
    }
    return render(
        request,
        "login.html",
        {
            "section": "login",
            "next_url": next_url,
            "username": username,
            "error": error,
            "error_args": error_args or lockout,
        },
        status_code=status_code,
    )
