"""The composition root: settings → database → services → the FastAPI app (and the CLI's context).

Nothing opens a database or a socket at import time; ``create_app`` and ``build_services`` do,
when called.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager

from fastapi import FastAPI

from civicloud.core.bootstrap import ensure_reference_data
from civicloud.core.config import Settings
from civicloud.core.db import Database
from civicloud.core.errors import CivicloudError, Misconfigured
from civicloud.core.identity import Passwords
from civicloud.core.identity.signin import SignInGuard
from civicloud.core.keyfiles import load_or_create_secret
from civicloud.core.migrate import upgrade
from civicloud.core.principals import principal_cache
from civicloud.core.ratelimit import RateLimiter
from civicloud.core.services import Services
from civicloud.pay import api as pay_api
from civicloud.pay import web as pay_web
from civicloud.pay.errors import LookupThrottled, PaymentsThrottled
from civicloud.pay.payments import PayContext, handle_notification
from civicloud.pay.providers import build_providers
from civicloud.pay.receipts import signer_from_settings
from civicloud.web import pages
from civicloud.web.admission import DEFAULT_POSTGRES_WRITERS, Admission
from civicloud.web.api import api_router
from civicloud.web.api.health import router as health_router
from civicloud.web.docs import install_docs
from civicloud.web.messages import error_text
from civicloud.web.middleware import Metrics, RequestContextMiddleware
from civicloud.web.problems import install_problem_handlers

API_PREFIX = "/api/v1"


def error_message(exc: CivicloudError, language: str) -> str:
    """What a service error says in ``language``: the pages' catalogs serve the CLI too."""
    return error_text(exc, language)


def build_services(settings: Settings) -> Services:
    """Open the database named by ``settings`` and build the shared services."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
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
    upgrade(services.db.engine, audit_key=services.db.audit_key)
    with services.db.unit_of_work() as session:
        ensure_reference_data(session=session)


def build_pay(services: Services) -> PayContext:
    """Pay's providers and receipt signer; the sandbox delivers its notifications in-process."""
    context: PayContext | None = None

    def deliver(body: bytes, headers: Mapping[str, str]) -> None:
        # The sandbox stands for a provider's servers calling our notification endpoint: each
        # notification is its own unit of work, as an HTTP request to it would be.
        assert context is not None  # set below, before any trade exists
        ready = context
        services.db.run(
            lambda session: handle_notification(
                session=session,
                context=ready,
                provider_name="sandbox",
                headers=headers,
                body=body,
            )
        )

    settings = services.settings
    context = PayContext(
        providers=build_providers(
            settings.pay,
            sandbox_secret_file=settings.data_dir / "keys" / "pay-sandbox.key",
            sandbox_store=settings.data_dir / "pay-sandbox-trades.jsonl",
            deliver=deliver,
        ),
        signer=signer_from_settings(settings.pay, data_dir=settings.data_dir),
        settings=settings.pay,
    )
    return context


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
    settings = settings or (services.settings if services else Settings())
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
    app.state.pay = build_pay(services)
    app.state.sign_in_guard = SignInGuard(per_client=settings.auth.failed_sign_ins_per_client)
    app.state.pay_lookup_limiter = RateLimiter(
        settings.pay.lookups_per_minute, error=LookupThrottled, message="too many look-ups"
    )
    app.state.pay_payment_limiter = RateLimiter(
        settings.pay.payments_per_minute,
        error=PaymentsThrottled,
        message="too many payments started from this address",
    )
    app.include_router(pay_api.router, prefix=API_PREFIX)
    app.include_router(pay_web.router)
    pages.install(app, time_zone=settings.web.time_zone)
    install_docs(app)
    install_problem_handlers(app, html_renderer=pages.render_error_page)
    app.add_middleware(
        RequestContextMiddleware,
        max_body_bytes=settings.web.max_body_bytes,
        metrics=app.state.metrics,
    )
    return app
