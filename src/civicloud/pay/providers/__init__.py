"""Pay's payment-provider adapters: the sandbox, Alipay and WeChat Pay.

Each implements ``civicloud.pay.backends.PaymentProvider``: it builds and signs requests,
verifies what the provider sends back, and reads the provider's statements. None of them
holds a database session or decides anything about money; ``build_providers`` makes the ones
the settings turn on, for ``civicloud.app`` to hand to the service.
"""

from __future__ import annotations

from pathlib import Path

from civicloud.pay.backends import PaymentProvider
from civicloud.pay.providers._common import (
    Clock,
    UrlOpen,
    fen_to_yuan,
    yuan_to_fen,
)
from civicloud.pay.providers.alipay import AlipayProvider
from civicloud.pay.providers.sandbox import (
    Deliver,
    SandboxCheckoutView,
    SandboxNotice,
    SandboxProvider,
    load_or_create_secret,
)
from civicloud.pay.providers.wechatpay import WechatPayProvider
from civicloud.pay.settings import PaySettings


def build_providers(
    settings: PaySettings,
    *,
    sandbox_secret_file: Path,
    sandbox_store: Path | None = None,
    deliver: Deliver | None = None,
    urlopen: UrlOpen | None = None,
    clock: Clock | None = None,
) -> dict[str, PaymentProvider]:
    """The sandbox always, plus Alipay (when ``app_id`` is set) and WeChat Pay (``mchid``)."""
    providers: dict[str, PaymentProvider] = {
        "sandbox": SandboxProvider(
            load_or_create_secret(sandbox_secret_file),
            base_url=settings.public_base_url,
            deliver=deliver,
            clock=clock,
            store=sandbox_store,
        )
    }
    if settings.alipay.app_id:
        providers["alipay"] = AlipayProvider(settings.alipay, urlopen=urlopen, clock=clock)
    if settings.wechatpay.mchid:
        providers["wechatpay"] = WechatPayProvider(settings.wechatpay, urlopen=urlopen, clock=clock)
    return providers


__all__ = [
    "AlipayProvider",
    "Deliver",
    "SandboxCheckoutView",
    "SandboxNotice",
    "SandboxProvider",
    "UrlOpen",
    "WechatPayProvider",
    "build_providers",
    "fen_to_yuan",
    "load_or_create_secret",
    "yuan_to_fen",
]
