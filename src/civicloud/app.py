"""The composition root: settings → database → services → the FastAPI app (and the CLI's context).

Nothing opens a database or a socket at import time; ``create_app`` and ``build_services`` do,
when called.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import APIRouter, FastAPI

from civicloud.core import modules as contract
from civicloud.core.bootstrap import ensure_reference_data
from civicloud.core.config import Settings, assemble_settings
from civicloud.core.db import Database
from civicloud.core.errors import CivicloudError, Misconfigured
from civicloud.core.identity import Passwords
from civicloud.core.identity.signin import SignInGuard
from civicloud.core.keyfiles import load_or_create_secret
from civicloud.core.migrate import upgrade
from civicloud.core.modules import Installed, Module
from civicloud.core.permissions import register_permissions, register_roles
from civicloud.core.principals import principal_cache
from civicloud.core.services import Services
from civicloud.pay import MODULE as PAY
from civicloud.store import MODULE as STORE
from civicloud.traffic import MODULE as TRAFFIC
from civicloud.web import i18n, pages
from civicloud.web.admission import DEFAULT_POSTGRES_WRITERS, Admission
from civicloud.web.api import api_router
from civicloud.web.api.health import router as health_router
from civicloud.web.docs import install_docs
from civicloud.web.messages import error_text
from civicloud.web.middleware import Metrics, RequestContextMiddleware
from civicloud.web.problems import install_problem_handlers

#: The modules of civicloud, in the order the console lists them. Adding a module: its package,
#: one line here, and its migrations (docs/architecture.md, "Adding a module").
MODULES: tuple[Module, ...] = (PAY, STORE, TRAFFIC)


def register_modules(modules: tuple[Module, ...]) -> None:
    """Make the modules' permissions, roles and catalogs known to this process (in memory;
    registering one again changes nothing)."""
    for module in modules:
        register_permissions(dict(module.permissions))
        register_roles(*module.roles)
        if module.locales is not None:
            i18n.add_module_catalogs([module.locales])


register_modules(MODULES)

#: The installation's settings: core's sections and each module's (``CIVICLOUD_<MODULE>__*``).
InstallationSettings: type[Settings] = assemble_settings(
    {module.name: module.settings for module in MODULES if module.settings is not None}
)


def load_settings(**values: Any) -> Settings:
    """The installation's settings from the environment, ``values`` overriding it (by field
    name, module sections included: ``load_settings(pay=PaySettings(…))``)."""
    return InstallationSettings(**values)


def installed_modules(settings: Settings, modules: tuple[Module, ...] = MODULES) -> Installed:
    """The modules this installation runs: the list above less ``CIVICLOUD_DISABLED_MODULES``."""
    try:
        return contract.enabled(modules, settings.switched_off)
    except ValueError as exc:
        raise Misconfigured(
            "CIVICLOUD_DISABLED_MODULES: %(reason)s", params={"reason": str(exc)}
        ) from None


API_PREFIX = "/api/v1"


def error_message(exc: CivicloudError, language: str) -> str:
    """What a service error says in ``language``: the pages' catalogs serve the CLI too."""
    return error_text(exc, language)


def build_services(settings: Settings, *, modules: tuple[Module, ...] | None = None) -> Services:
    """Open the database named by ``settings`` and build the shared services, for the installed
    ``modules`` (by default :data:`MODULES` less those the settings switch off)."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    listed = MODULES if modules is None else modules
    register_modules(listed)
    db = Database.from_url(
        settings.effective_database_url,
        cache_seconds=settings.cache_seconds,
        audit_key=audit_key(settings),
    )
    return Services(
        settings=settings,
        db=db,
        passwords=Passwords(settings.auth),
        principals=principal_cache(db),
        modules=installed_modules(settings, listed),
        branches=tuple(m.migrations for m in listed if m.migrations is not None),
    )


def audit_key(settings: Settings) -> bytes:
    """The key audit records are sealed with: ``CIVICLOUD_AUDIT_KEY``, else ``audit.key`` in the
    data directory (made on first start, mode 0600)."""
    if settings.audit_key is not None:
        configured = settings.audit_key.get_secret_value().encode()
        if len(configured) < 16:
            raise Misconfigured("CIVICLOUD_AUDIT_KEY must be at least 16 characters")
        return configured
    return load_or_create_secret(settings.data_dir / "audit.key", what="the audit key")


def prepare_database(services: Services) -> None:
    """Apply every migration and make sure the reference data (regions, roles) is there."""
    upgrade(services.db.engine, audit_key=services.db.audit_key, branches=services.branches)
    with services.db.unit_of_work() as session:
        ensure_reference_data(session=session)


def admission_for(services: Services) -> Admission:
    """How many requests may hold a unit of work at once (``web.admission``), per settings."""
    web = services.settings.web
    writers = web.db_writers or (1 if services.db.is_sqlite else DEFAULT_POSTGRES_WRITERS)
    return Admission(
        writers=writers,
        readers=web.db_readers,
        wait_seconds=web.queue_seconds,
        max_waiting=web.max_queued,
    )


def create_app(settings: Settings | None = None, *, services: Services | None = None) -> FastAPI:
    """The civicloud web application: the API under ``/api/v1``, pages, health and metrics."""
    settings = settings or (services.settings if services else load_settings())
    services = services or build_services(settings)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield
        services.db.dispose()

    app = FastAPI(
        title="civicloud",
        version="0.1.0",
        summary="A self-hostable government cloud: tenants, identity, audit and its modules.",
        lifespan=lifespan,
        openapi_url="/openapi.json",
        # /docs is served from the installation's own copy of Swagger UI (web.docs), not a CDN.
        docs_url=None,
        redoc_url=None,
    )
    app.state.services = services
    app.state.metrics = Metrics()
    app.state.admission = admission_for(services)
    app.include_router(health_router)
    app.include_router(api_router, prefix=API_PREFIX)
    app.state.sign_in_guard = SignInGuard(per_client=settings.auth.failed_sign_ins_per_client)
    for module in services.modules:
        if module.api is not None:
            app.include_router(_router(module.api), prefix=API_PREFIX)
        if module.pages is not None:
            app.include_router(_router(module.pages))
    pages.install(app, time_zone=settings.web.time_zone, modules=services.modules)
    install_docs(app)
    install_problem_handlers(app, html_renderer=pages.render_error_page)
    app.add_middleware(
        RequestContextMiddleware,
        max_body_bytes=settings.web.max_body_bytes,
        metrics=app.state.metrics,
    )
    return app


def _router(reference: str) -> APIRouter:
    found = contract.resolve(reference)
    if not isinstance(found, APIRouter):
        raise TypeError(f"{reference} is not an APIRouter")
    return found
