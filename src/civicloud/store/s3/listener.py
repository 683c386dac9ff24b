"""The S3 port as a platform listener (``Module.listeners``): started by ``civicloud serve``
and ``civicloud demo`` beside the web port, over HTTP or TLS."""

from __future__ import annotations

import datetime as dt
import ipaddress
import ssl
import threading
from pathlib import Path

from civicloud.core.errors import Misconfigured
from civicloud.core.keyfiles import write_private_once
from civicloud.core.listeners import ListenerEnv
from civicloud.store.context import StoreContext, store_settings
from civicloud.store.s3.operations import S3
from civicloud.store.s3.server import S3Server
from civicloud.store.settings import StoreSettings


def self_signed(directory: Path, names: list[str]) -> tuple[Path, Path]:
    """A certificate and key for ``names`` (and loopback) made once in ``directory``."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    cert_path, key_path = directory / "s3-cert.pem", directory / "s3-key.pem"
    if cert_path.exists() and key_path.exists():
        return cert_path, key_path
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "civicloud store")])
    alt: list[x509.GeneralName] = [x509.DNSName(n) for n in names]
    alt += [
        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
        x509.IPAddress(ipaddress.ip_address("::1")),
    ]
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=3650))
        .add_extension(x509.SubjectAlternativeName(alt), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    write_private_once(
        key_path,
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
    )
    if not cert_path.exists():
        written = write_private_once(cert_path, cert.public_bytes(serialization.Encoding.PEM))
        del written
    return cert_path, key_path


def tls_context(settings: StoreSettings, data_dir: Path) -> ssl.SSLContext | None:
    """The S3 port's TLS, as the settings ask."""
    if settings.tls == "off":
        return None
    if settings.tls == "files":
        if settings.tls_cert_file is None or settings.tls_key_file is None:
            raise Misconfigured("store tls is 'files' but tls_cert_file or tls_key_file is unset")
        cert, key = settings.tls_cert_file, settings.tls_key_file
    else:
        names = ["localhost", "s3.localhost", "*.s3.localhost"]
        if settings.domain:
            names += [f"s3.{settings.domain}", f"*.s3.{settings.domain}"]
        cert, key = self_signed(data_dir / "store" / "tls", names)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(str(cert), str(key))
    except (OSError, ssl.SSLError) as exc:
        raise Misconfigured(
            "store tls: the certificate or key cannot be loaded: %(reason)s",
            params={"reason": str(exc)},
        ) from None
    return context


class RunningS3:
    """A started S3 port."""

    def __init__(
        self, context: StoreContext, *, host: str, port: int, tls: ssl.SSLContext | None
    ) -> None:
        self.context = context
        self.server = S3Server(
            (host, port), S3(context), tls=tls, max_connections=context.settings.s3_threads
        )
        self.scheme = "https" if tls is not None else "http"
        self.port = self.server.server_address[1]
        self.host = host
        self._thread = threading.Thread(
            target=self.server.serve_forever,
            kwargs={"poll_interval": 0.2},
            name="store-s3",
            daemon=True,
        )
        self._thread.start()

    @property
    def address(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}"

    def health(self) -> str | None:
        return self.context.backend.health()

    def alive(self) -> bool:
        return self._thread.is_alive()

    def stop(self, timeout: float) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(timeout)
        self.context.log.close()


def start_s3(env: ListenerEnv) -> RunningS3:
    """Start the S3 port on the settings' host and port."""
    settings = store_settings(env.services)
    context = env.context
    if not isinstance(context, StoreContext):
        context = env.services.context("store", StoreContext)
    try:
        return RunningS3(
            context,
            host=settings.s3_host,
            port=settings.s3_port,
            tls=tls_context(settings, env.services.settings.data_dir),
        )
    except OSError as exc:
        raise Misconfigured(
            "the S3 port %(port)s cannot be opened: %(reason)s",
            params={"port": settings.s3_port, "reason": exc.strerror or str(exc)},
        ) from None
