"""Server-rendered pages in Chinese and English: the public portal, sign-in and the operator console.

Pages are thin adapters over the core services, like the API: parse the form, call a service,
redirect (303) or render. ``app.py`` calls :func:`install` and hands :func:`render_error_page`
to the problem handlers, which use it for browsers.
"""

from __future__ import annotations

from zoneinfo import ZoneInfo

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from civicloud.web.i18n import load_translations
from civicloud.web.pages import console, public, tenants
from civicloud.web.pages.guards import install_handlers
from civicloud.web.pages.rendering import STATIC_DIR, Renderer, render_error_page

__all__ = ["install", "render_error_page"]


def install(app: FastAPI, *, time_zone: str = "UTC") -> None:
    """Mount the pages and static files on ``app``, with the translations read once here; the
    pages show times in ``time_zone`` (an IANA name)."""
    app.state.page_renderer = Renderer(load_translations(), time_zone=ZoneInfo(time_zone))
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    app.include_router(public.router)
    app.include_router(console.router)
    app.include_router(tenants.router)
    install_handlers(app)
