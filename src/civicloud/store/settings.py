"""Store's settings section, ``CIVICLOUD_STORE__*`` (assembled into the installation's settings
by the composition root)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, SecretStr, field_validator

#: S3's limits: one PUT or one part at most 5 GiB, an object at most 5 TiB, parts 1..10,000,
#: every part but the last at least 5 MiB.
GIB = 1 << 30
MIB = 1 << 20


class UpstreamSettings(BaseModel):
    """An upstream S3-compatible cluster that keeps the (encrypted) bytes: Ceph RGW, MinIO, or
    another civicloud. Used when ``backend`` is ``upstream``."""

    endpoint: str = Field(default="", max_length=500)
    region: str = Field(default="us-east-1", max_length=64)
    bucket: str = Field(default="", max_length=63)
    access_key: str = Field(default="", max_length=128)
    secret_key: SecretStr | None = None
    #: Prefix of every key Store writes in the upstream bucket.
    prefix: str = Field(default="civicloud/", max_length=200)
    #: PEM of the CA that signed the upstream's certificate (unset: the system's CAs).
    ca_file: Path | None = None
    verify_tls: bool = True

    @field_validator("endpoint")
    @classmethod
    def _scheme(cls, value: str) -> str:
        if value and not re.match(r"^https?://[^/?#]+/?$", value):
            raise ValueError("upstream endpoint: expected http://HOST:PORT or https://HOST:PORT")
        return value.rstrip("/")


class StoreSettings(BaseModel):
    """The Store module: the S3 port, its TLS, the backend, encryption and limits."""

    #: The S3 listener (``civicloud serve --s3-port``); 0 picks a free port.
    s3_host: str = "127.0.0.1"
    s3_port: int = Field(default=9000, ge=0, le=65535)
    #: ``off``: plain HTTP; ``self-signed``: a certificate made once in the data directory (the
    #: demo, the tests); ``files``: ``tls_cert_file`` and ``tls_key_file``.
    tls: Literal["off", "self-signed", "files"] = "off"
    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None
    #: Virtual-hosted-style addressing: ``BUCKET.s3.DOMAIN`` (empty: path-style only, plus
    #: ``BUCKET.s3.localhost``).
    domain: str = Field(default="", max_length=200, pattern=r"^[a-z0-9.-]*$")
    #: Where clients reach the S3 port (presigned links in the console); empty: derived from
    #: where ``serve`` listens.
    public_url: str = Field(default="", max_length=500)
    #: Objects are encrypted at rest with this cipher; ``SM4-GCM`` for China's national
    #: algorithms.
    cipher: Literal["AES256-GCM", "SM4-GCM"] = "AES256-GCM"
    #: The master key (64 hex characters) that wraps the tenants' data keys; unset: a key file
    #: made in ``<data dir>/store/keys/`` (rotated by ``civicloud store rotate-master-key``).
    master_key: SecretStr | None = None
    backend: Literal["local", "upstream"] = "local"
    upstream: UpstreamSettings = Field(default_factory=UpstreamSettings)
    max_put_bytes: int = Field(default=5 * GIB, ge=MIB)
    max_object_bytes: int = Field(default=5 * 1024 * GIB, ge=MIB)
    min_part_bytes: int = Field(default=5 * MIB, ge=1)
    #: Multipart uploads untouched this long are aborted by ``store.clean_uploads``.
    stale_upload_hours: int = Field(default=72, ge=1, le=24 * 365)
    #: Longest expiry of a presigned link the console makes (S3 allows 7 days).
    max_presign_seconds: int = Field(default=7 * 24 * 3600, ge=60, le=7 * 24 * 3600)
    #: Connections the S3 port serves at once (a thread each; more wait in the backlog). An
    #: idle connection is closed after 15 seconds.
    s3_threads: int = Field(default=256, ge=2, le=4096)
    #: The access log is written in batches at most this often, and at most this many events.
    access_log_seconds: float = Field(default=1.0, ge=0.05, le=60)
    access_log_batch: int = Field(default=500, ge=1, le=100_000)
