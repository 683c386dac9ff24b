"""What page routes depend on: the form's CSRF check, the signed-in operator, and form rejections.

``optional_actor`` checks the ``X-CSRF-Token`` header on unsafe requests that a session cookie
authenticates, which suits API calls from scripts. A browser form cannot send headers, so pages
check the form's ``csrf_token`` field instead (the same check,
:func:`civicloud.web.deps.check_csrf`: bound to the session once signed in, a double-submit
cookie before) and only then resolve the session.
"""

from __future__ import annotations

from typing import Annotated
from urllib.parse import urlencode

from fastapi import Depends, FastAPI, Request
from fastapi.responses import RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from civicloud.core.roles import Actor, authenticate_session
from civicloud.web.deps import (
    SAFE_METHODS,
    SESSION_COOKIE,
    SessionDep,
    check_csrf,
    optional_actor,
    read_cookie,
    services_of,
)
from civicloud.web.problems import audit_failure

CSRF_FIELD = "csrf_token"


class LoginRequired(Exception):
    """An anonymous caller asked for an operator page; answered with a redirect to sign in."""

    def __init__(self, next_url: str) -> None:
        super().__init__(next_url)
        self.next_url = next_url


class FormRejected(Exception):
    """A form's values were refused; carries the re-rendered page.

    Raised rather than returned so that the request's unit of work rolls back whatever the
    service did before it refused.
    """

    def __init__(self, response: Response) -> None:
        super().__init__(response.status_code)
        self.response = response


async def checked_form_token(request: Request) -> None:
    """On unsafe requests, refuse (403) a form whose ``csrf_token`` does not match the cookie."""
    if request.method in SAFE_METHODS:
        return
    form = await request.form()
    submitted = form.get(CSRF_FIELD)
    check_csrf(request, submitted if isinstance(submitted, str) else None)


CsrfChecked = Annotated[None, Depends(checked_form_token)]


async def page_actor(request: Request, _csrf: CsrfChecked, session: SessionDep) -> Actor | None:
    """The signed-in caller of a page, or ``None``; form posts have passed the CSRF check first.

    The check reads the form before the unit of work waits for its database slot, so a slow
    sender holds no slot while its form trickles in.
    """
    if request.method not in SAFE_METHODS and getattr(request.state, "actor", None) is None:
        # The form's token has been checked above, so the header check in optional_actor does
        # not apply: resolve the session here and hand optional_actor the result.
        cookie = read_cookie(request, SESSION_COOKIE)
        if cookie:
            cache = services_of(request).principals
            principal = cache.get("session", cookie) or await run_in_threadpool(
                lambda: authenticate_session(session=session, token=cookie, cache=cache)
            )
            if principal is not None:
                request.state.actor = principal.actor
    return await optional_actor(request, session)


PageActorDep = Annotated[Actor | None, Depends(page_actor)]


def signed_in_actor(request: Request, actor: PageActorDep) -> Actor:
    """The signed-in caller; anonymous callers are sent to the sign-in page and back."""
    if actor is None:
        if request.method == "GET":
            query = f"?{request.url.query}" if request.url.query else ""
            raise LoginRequired(request.url.path + query)
        raise LoginRequired("/console")
    return actor


ConsoleActorDep = Annotated[Actor, Depends(signed_in_actor)]


def see_other(url: str) -> RedirectResponse:
    """A 303 redirect: the answer to every successful form post."""
    return RedirectResponse(url, status_code=303)


def install_handlers(app: FastAPI) -> None:
    """Answer :class:`LoginRequired` with a redirect and :class:`FormRejected` with its page."""

    @app.exception_handler(LoginRequired)
    async def _login_required(request: Request, exc: LoginRequired) -> Response:
        await audit_failure(request, 401, "core.not_authenticated")
        return see_other("/login?" + urlencode({"next": exc.next_url}))

    @app.exception_handler(FormRejected)
    async def _form_rejected(request: Request, exc: FormRejected) -> Response:
        await audit_failure(request, exc.response.status_code, "core.form_rejected")
        return exc.response
