"""Rendering pages: the Jinja2 environment, the request's language, cookies and CSRF tokens."""

from __future__ import annotations

import gettext
import hashlib
import logging
import secrets
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, tzinfo
from html import escape
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse, Response
from jinja2 import Environment, FileSystemLoader, StrictUndefined, pass_context, select_autoescape
from jinja2.runtime import Context

from civicloud.core.actor import Actor
from civicloud.core.i18n import N_
from civicloud.core.modules import Installed, NavEntry
from civicloud.core.money import format_yuan
from civicloud.core.permissions import matches
from civicloud.core.text import format_bytes
from civicloud.core.zones import local_time
from civicloud.web import charts, i18n, messages
from civicloud.web.deps import (
    CSRF_COOKIE,
    SESSION_COOKIE,
    cookie_name,
    cookie_secure,
    read_cookie,
    services_of,
    session_csrf_token,
)
from civicloud.web.pages import labels

log = logging.getLogger("civicloud.web")

WEB_DIR = Path(__file__).resolve().parent.parent
TEMPLATES_DIR = WEB_DIR / "templates"
STATIC_DIR = WEB_DIR / "static"
#: Page sizes a list offers (``web.lists`` reads them from here: the renderer imports nothing of it).
PAGE_SIZES = (25, 50, 100, 200)
#: The core's own console links; each module adds its own (``Module.nav``).
CORE_NAV: tuple[NavEntry, ...] = (
    NavEntry("overview", "/console", N_("Overview")),
    NavEntry("tenants", "/console/tenants", N_("Tenants")),
    NavEntry("users", "/console/users", N_("Users")),
    NavEntry("roles", "/console/roles", N_("Roles and access")),
    NavEntry("api_keys", "/console/api-keys", N_("API keys")),
    NavEntry("audit", "/console/audit", N_("Audit log")),
    NavEntry("jobs", "/console/jobs", N_("Jobs"), permission="core.job.read", platform=True),
)
LANG_COOKIE = "civicloud_lang"
LANG_COOKIE_SECONDS = 365 * 24 * 3600
#: Pages run no script and load nothing from elsewhere; they may not be framed (clickjacking).
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'none'; object-src 'none'; base-uri 'none'; "
        "form-action 'self'; frame-ancestors 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}


def holds_somewhere(actor: Actor, pattern: str) -> bool:
    """Whether some grant of ``actor`` includes a permission that ``pattern`` names (``pay.*``:
    any of Pay's), wherever the grant reaches."""
    prefix = pattern[:-1] if pattern.endswith(".*") else None
    for grant in actor.grants:
        for held in grant.permissions:
            if matches(held, pattern) or (prefix is not None and held.startswith(prefix)):
                return True
    return False


def may(actor: Actor | None, permission: str, tenant_path: str | None = None) -> bool:
    """Whether ``actor`` holds ``permission`` at ``tenant_path`` (``None``: anywhere) — what a
    page asks before it offers an action. The service still decides; this only keeps a page
    from offering what would be refused."""
    if actor is None:
        return False
    if tenant_path is None:
        return holds_somewhere(actor, permission)
    return actor.can(permission, tenant_path)


def may_follow(actor: Actor, entry: NavEntry) -> bool:
    """Whether ``actor`` is shown the console link ``entry``: its permission held somewhere, or
    platform-wide for a platform page."""
    if entry.permission is None:
        return not entry.platform or actor.is_platform_wide
    if entry.platform:
        return any(
            grant.tenant_path is None and grant.allows(entry.permission) for grant in actor.grants
        )
    return holds_somewhere(actor, entry.permission)


def set_cookie(
    response: Response,
    request: Request,
    name: str,
    value: str,
    *,
    max_age: int | None = None,
    path: str = "/",
) -> None:
    """Set an HttpOnly, SameSite=Lax cookie, ``Secure`` and ``__Host-`` by :func:`cookie_secure`."""
    response.set_cookie(
        cookie_name(request, name, path),
        value,
        max_age=max_age,
        path=path,
        httponly=True,
        samesite="lax",
        secure=cookie_secure(request),
    )


def clear_cookie(response: Response, request: Request, name: str, *, path: str = "/") -> None:
    """Tell the browser to forget a cookie set by :func:`set_cookie`."""
    response.delete_cookie(
        cookie_name(request, name, path),
        path=path,
        httponly=True,
        samesite="lax",
        secure=cookie_secure(request),
    )


def new_csrf_token() -> str:
    """A fresh random CSRF token."""
    return secrets.token_urlsafe(32)


def csrf_token(request: Request) -> str:
    """The token this page's forms carry: the session's, else the CSRF cookie's (or a new one
    that the response will set)."""
    bound = read_cookie(request, SESSION_COOKIE)
    if bound:
        return session_csrf_token(bound)
    token = read_cookie(request, CSRF_COOKIE) or getattr(request.state, "csrf_issued", None)
    if not token:
        token = new_csrf_token()
        request.state.csrf_issued = token
    return str(token)


def page_language(request: Request) -> str:
    """The language of this request's page (``zh`` or ``en``)."""
    cached: str | None = getattr(request.state, "language", None)
    if cached is not None:
        return cached
    language = i18n.choose_language(
        requested=request.query_params.get("lang"),
        cookie=read_cookie(request, LANG_COOKIE),
        accept_language=request.headers.get("accept-language"),
        default=services_of(request).settings.web.default_language,
    )
    request.state.language = language
    return language


def time_formatter(zone: tzinfo) -> Callable[[datetime | None], str]:
    """The pages' ``when`` filter: a stored (UTC) time in ``zone``, with its offset from UTC."""

    def when(value: datetime | None) -> str:
        return local_time(value, zone)

    return when


class Renderer:
    """The pages' Jinja2 environment with both languages' translations installed."""

    def __init__(
        self,
        translations: Mapping[str, gettext.NullTranslations],
        templates_dir: Path = TEMPLATES_DIR,
        time_zone: tzinfo = UTC,
        *,
        modules: Installed | None = None,
    ) -> None:
        self.translations = dict(translations)
        #: The installation's zone: the pages' times, and the days of a list's date filters.
        self.time_zone = time_zone
        installed = modules or Installed(())
        #: Each module's static files, served at ``/static/<module>/``.
        self.static_dirs = {m.name: m.static for m in installed if m.static is not None}
        self.stylesheets = [f"{m.name}/{css}" for m in installed for css in m.stylesheets]
        self.nav = CORE_NAV + tuple(entry for m in installed for entry in m.nav)
        self.home_cards = [(m.name, m.home) for m in installed if m.home is not None]
        module_templates = [m.templates for m in installed if m.templates is not None]
        self.env = Environment(
            # The shell's templates first, then each module's (``<module>/templates/<module>/…``).
            loader=FileSystemLoader([templates_dir, *module_templates]),
            autoescape=select_autoescape(["html"]),
            undefined=StrictUndefined,
            extensions=["jinja2.ext.i18n"],
            trim_blocks=True,
            lstrip_blocks=True,
        )

        # The page's language travels in the template context, so one environment serves both.
        @pass_context
        def _gettext(context: Context, message: str) -> str:
            return self.translations[context["lang"]].gettext(message)

        @pass_context
        def _ngettext(context: Context, singular: str, plural: str, n: int) -> str:
            return self.translations[context["lang"]].ngettext(singular, plural, n)

        # Added to the environment by jinja2.ext.i18n, so the type checker cannot see it.
        self.env.install_gettext_callables(  # type: ignore[attr-defined]
            _gettext, _ngettext, newstyle=True
        )

        @pass_context
        def _error_text(context: Context, summary: Mapping[str, Any]) -> str:
            # A refused form's summary: the service's message in the page's language.
            return messages.translate(
                context["lang"],
                str(summary.get("template") or summary.get("detail", "")),
                summary.get("params"),
                self.translations,
            )

        @pass_context
        def _may(context: Context, permission: str, tenant_path: str | None = None) -> bool:
            # Whether the page's reader may take an action: offer only what they may use.
            return may(context.get("actor"), permission, tenant_path)

        @pass_context
        def _yuan(context: Context, amount_fen: int | None) -> str:
            return "—" if amount_fen is None else format_yuan(int(amount_fen), context["lang"])

        self.env.filters["when"] = time_formatter(time_zone)
        self.env.filters["bytes"] = format_bytes
        self.env.globals.update(
            # ``_()`` formats its result with ``%``; ``tr()`` translates a msgid chosen at run
            # time (a label, a form's error) as it is.
            tr=_gettext,
            error_text=_error_text,
            kind_label=labels.kind_label,
            outcome_label=labels.outcome_label,
            permission_labels=labels.PERMISSION_LABELS,
            static_url=self._static_url,
            native_names=i18n.NATIVE_NAMES,
            module_stylesheets=self.stylesheets,
            console_nav=self._console_nav,
            may=_may,
            yuan=_yuan,
            page_sizes=PAGE_SIZES,
        )
        # chart_series, chart_bars and chart_shares (web/charts.py), in the page's language.
        self.env.globals.update(charts.jinja_globals(self.gettext))
        self._static_versions: dict[str, str] = {}

    def _console_nav(self, actor: Actor | None) -> list[NavEntry]:
        """The console's links that ``actor`` may follow (each module's, by its permission)."""
        if actor is None:
            return []
        return [e for e in self.nav if may_follow(actor, e)]

    def static_file(self, path: str) -> Path:
        """The file behind ``/static/<path>``: a module's (``<module>/…``) or the shell's."""
        first, _, rest = path.partition("/")
        module_dir = self.static_dirs.get(first)
        return module_dir / rest if module_dir is not None and rest else STATIC_DIR / path

    def _static_url(self, path: str) -> str:
        version = self._static_versions.get(path)
        if version is None:
            digest = hashlib.sha256(self.static_file(path).read_bytes()).hexdigest()
            version = self._static_versions[path] = digest[:12]
        return f"/static/{path}?v={version}"

    def gettext(self, language: str, message: str) -> str:
        """``message`` translated into ``language``."""
        return self.translations[language].gettext(message)

    def render(
        self,
        request: Request,
        name: str,
        context: Mapping[str, Any] | None = None,
        *,
        status_code: int = 200,
    ) -> HTMLResponse:
        """Render template ``name`` for ``request`` in its language, setting cookies it needs."""
        language = page_language(request)
        values: dict[str, Any] = {
            "request": request,
            "lang": language,
            "html_lang": i18n.HTML_LANG[language],
            "languages": i18n.LANGUAGES,
            "lang_url": _language_switch_url(request),
            "actor": getattr(request.state, "actor", None),
            "csrf_token": lambda: csrf_token(request),
            "section": "",
        }
        values.update(context or {})
        body = self.env.get_template(name).render(values)
        response = HTMLResponse(body, status_code=status_code, headers=SECURITY_HEADERS)
        # Pages show who is signed in and carry one-time form tokens: never cache them.
        response.headers["Cache-Control"] = "no-store"
        requested = request.query_params.get("lang")
        if requested in i18n.LANGUAGES and requested != read_cookie(request, LANG_COOKIE):
            set_cookie(response, request, LANG_COOKIE, requested, max_age=LANG_COOKIE_SECONDS)
        issued: str | None = getattr(request.state, "csrf_issued", None)
        if issued and issued != read_cookie(request, CSRF_COOKIE):
            set_cookie(response, request, CSRF_COOKIE, issued)
        return response


def _language_switch_url(request: Request) -> Callable[[str], str]:
    """A function of a language code: this page's address in that language."""

    def url_for_language(code: str) -> str:
        if request.method != "GET":
            # The page answers a form; its address cannot be fetched, so switch on the form's page.
            path = "/login" if request.url.path == "/login" else "/"
            return f"{path}?lang={code}"
        url = request.url.include_query_params(lang=code)
        return f"{url.path}?{url.query}"

    return url_for_language


def get_renderer(request: Request) -> Renderer:
    """The application's page renderer (built by ``pages.install``)."""
    renderer: Renderer = request.app.state.page_renderer
    return renderer


def render(
    request: Request,
    name: str,
    context: Mapping[str, Any] | None = None,
    *,
    status_code: int = 200,
) -> HTMLResponse:
    """Render template ``name`` for ``request`` (see :meth:`Renderer.render`)."""
    return get_renderer(request).render(request, name, context, status_code=status_code)


def render_error_page(
    request: Request,
    status: int,
    detail: str,
    *,
    translated: Callable[[str], str] | None = None,
) -> HTMLResponse:
    """An HTML error page for browsers, in the request's language, with the status preserved;
    ``translated`` gives the error's text in a language, when it has one."""
    try:
        renderer = get_renderer(request)
        language = page_language(request)
        if translated is not None:
            detail = translated(language)
        elif detail in labels.KNOWN_DETAILS:
            detail = renderer.gettext(language, detail)
        return renderer.render(
            request,
            "errors.html",
            {
                "status": status,
                "title": labels.status_title(status),
                "explanation": labels.status_explanation(status),
                "detail": detail,
                "login_next": request.url.path if request.method == "GET" else "/console",
            },
            status_code=status,
        )
    except Exception:  # the error page must never fail into another error
        log.exception("could not render the error page")
        return HTMLResponse(
            f"<!doctype html><title>{status}</title><h1>{status}</h1><p>{escape(detail)}</p>",
            status_code=status,
        )
