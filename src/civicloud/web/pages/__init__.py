"""Server-rendered pages in Chinese and English: the public portal, sign-in and the operator console.

Pages are thin adapters over the core services, like the API: parse the form, call a service,
redirect (303) or render. ``app.py`` calls :func:`install` and hands :func:`render_error_page`
to the problem handlers, which use it for browsers.
"""

from __future__ import annotations

from zoneinfo import ZoneInfo

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from civicloud.core.modules import Installed
from civicloud.web import i18n
from civicloud.web.i18n import load_translations
from civicloud.web.pages import audit, console, jobs, labels, public, tenants
from civicloud.web.pages.guards import install_handlers
from civicloud.web.pages.rendering import STATIC_DIR, Renderer, render_error_page

__all__ = ["install", "render_error_page"]


def install(app: FastAPI, *, time_zone: str = "UTC", modules: Installed | None = None) -> None:
    """Mount the pages and static files on ``app``, with the translations read once here; the
    pages show times in ``time_zone`` (an IANA name). Each installed module brings its
    templates, catalogs, static files (at ``/static/<module>/``), labels and console links."""
    installed = modules or Installed(())
    i18n.add_module_catalogs(m.locales for m in installed if m.locales is not None)
    app.state.page_renderer = Renderer(
        load_translations(),
        time_zone=ZoneInfo(time_zone),
        modules=installed,
    )
    for module in installed:
        labels.add_field_labels(module.labels)
        if module.static is not None:
            # Before the shell's own mount, which would otherwise answer for the module's path.
            app.mount(
                f"/static/{module.name}",
                StaticFiles(directory=module.static),
                name=f"static.{module.name}",
            )
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    app.include_router(public.router)
    app.include_router(console.router)
    app.include_router(audit.router)
    app.include_router(tenants.router)
    app.include_router(jobs.router)
    install_handlers(app)
