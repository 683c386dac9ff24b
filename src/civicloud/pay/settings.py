"""Pay's settings section, ``CIVICLOUD_PAY__*`` (assembled into the installation's settings by
the composition root)."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, Field


class AlipaySettings(BaseModel):
    """Alipay open platform credentials (RSA2); empty ``app_id`` turns the adapter off."""

    app_id: str = ""
    seller_id: str = ""
    gateway: str = "https://openapi.alipay.com/gateway.do"
    #: PEM files: our application private key and Alipay's public key.
    private_key_file: Path | None = None
    alipay_public_key_file: Path | None = None


class WechatPaySettings(BaseModel):
    """WeChat Pay API v3 merchant credentials; empty ``mchid`` turns the adapter off."""

    mchid: str = ""
    appid: str = ""
    api_v3_key: str = ""
    merchant_serial_no: str = ""
    gateway: str = "https://api.mch.weixin.qq.com"
    private_key_file: Path | None = None
    #: Directory of WeChat Pay platform certificates or public keys, named ``<serial>.pem``.
    platform_keys_dir: Path | None = None


class PaySettings(BaseModel):
    """The Pay module."""

    #: Where citizens' browsers and providers' notifications reach this installation.
    public_base_url: str = "http://localhost:8000"
    payment_minutes: int = Field(default=15, ge=1, le=24 * 60)
    #: Citizen look-ups allowed per client address per minute (account numbers must not be
    #: enumerable).
    lookups_per_minute: int = Field(default=30, ge=1)
    #: Payments an anonymous client may start per minute (each holds its bills until it ends).
    payments_per_minute: int = Field(default=10, ge=1)
    #: Ed25519 (default) or SM2 receipt signing key, PEM; made in the data dir when absent.
    receipt_key_file: Path | None = None
    receipt_algorithm: str = Field(default="ed25519", pattern="^(ed25519|sm2)$")
    #: The platform's collection account, the payer of every settlement's bank batch file.
    settlement_bank: str = "civicloud settlement bank"
    settlement_account: str = Field(default="0000000000000000", pattern=r"^[0-9]{6,34}$")
    settlement_account_name: str = "civicloud 代收款专户"
    alipay: AlipaySettings = AlipaySettings()
    wechatpay: WechatPaySettings = WechatPaySettings()
