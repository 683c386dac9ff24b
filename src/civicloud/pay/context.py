"""Pay's context: its providers, receipt signer and rate limits, built once per process from the
core's services (``Module.context`` of Pay's declaration)."""

from __future__ import annotations

from collections.abc import Mapping

from pydantic import BaseModel

from civicloud.core.ratelimit import RateLimiter
from civicloud.core.services import Services
from civicloud.pay.errors import LookupThrottled, PaymentsThrottled
from civicloud.pay.payments import PayContext, handle_notification
from civicloud.pay.providers import build_providers
from civicloud.pay.receipts import signer_from_settings
from civicloud.pay.settings import PaySettings


def pay_settings(services: Services) -> PaySettings:
    """The installation's ``CIVICLOUD_PAY__*`` section (its defaults when Pay is not listed)."""
    section = services.section("pay")
    return section if isinstance(section, PaySettings) else PaySettings()


def build(services: Services, section: BaseModel | None) -> PayContext:
    """Pay's providers, receipt signer and limits; the sandbox delivers its notifications
    in-process, each in a unit of work of its own."""
    settings = section if isinstance(section, PaySettings) else PaySettings()
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

    data_dir = services.settings.data_dir
    context = PayContext(
        providers=build_providers(
            settings,
            sandbox_secret_file=data_dir / "keys" / "pay-sandbox.key",
            sandbox_store=data_dir / "pay-sandbox-trades.jsonl",
            deliver=deliver,
        ),
        signer=signer_from_settings(settings, data_dir=data_dir),
        settings=settings,
        lookups=RateLimiter(
            settings.lookups_per_minute, error=LookupThrottled, message="too many look-ups"
        ),
        payment_starts=RateLimiter(
            settings.payments_per_minute,
            error=PaymentsThrottled,
            message="too many payments started from this address",
        ),
    )
    return context


def listening(section: BaseModel, public_url: str) -> tuple[BaseModel, list[str]]:
    """Pay's section with its public address derived from where ``serve`` listens, unless the
    installation set it (``CIVICLOUD_PAY__PUBLIC_BASE_URL``): providers send citizens back there
    and receipts' QR codes open it, so it must be where the site is reached. With what to tell
    the person starting the server about it."""
    if not isinstance(section, PaySettings):
        return section, []
    if "public_base_url" not in section.model_fields_set:
        said = (
            f"Public address: {public_url} (CIVICLOUD_PAY__PUBLIC_BASE_URL sets another, "
            "such as the address citizens use behind a proxy)"
        )
        return section.model_copy(update={"public_base_url": public_url}), [said]
    public = section.public_base_url.rstrip("/")
    if public != public_url:
        return section, [
            f"Public address: {public} (CIVICLOUD_PAY__PUBLIC_BASE_URL); pages opened at "
            "another address say so"
        ]
    return section, []
