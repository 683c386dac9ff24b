"""Private key files in the data directory: written once, whole, readable by the owner only.

Signing keys and secrets (the receipt key, the sandbox's secret) are made on first use. Two
processes may start at the same moment; each writes its candidate to a private temporary file
and links it into place, so exactly one wins, both then use the winner's, and no reader ever
sees half a file (a plain create-then-write would let one read an empty file).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import uuid
from pathlib import Path

from civicloud.core.errors import Misconfigured


def write_private_once(path: Path, content: bytes) -> bool:
    """Write ``content`` to ``path`` (mode 0600, synced to disk) unless it exists already;
    whether this call wrote it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    written = False
    try:
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(content)
            handle.flush()
            os.fsync(handle.fileno())
        # A link, not a rename: a rename would replace a file another process made and may
        # already use.
        with contextlib.suppress(FileExistsError):
            os.link(temporary, path)
            written = True
    finally:
        temporary.unlink(missing_ok=True)
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)  # the new directory entry survives a power cut too
    finally:
        os.close(directory)
    return written


def load_or_create_secret(path: Path, *, what: str, min_bytes: int = 16) -> bytes:
    """The hex secret in ``path``, made (32 random bytes, mode 0600) when absent; ``what`` names
    it in the ``Misconfigured`` error a file holding no usable secret raises (a msgid, translated
    with the error: "the audit key")."""
    if not path.exists():
        write_private_once(path, (secrets.token_hex(32) + "\n").encode("ascii"))
    try:
        secret = bytes.fromhex(path.read_text(encoding="ascii").strip())
    except (ValueError, UnicodeDecodeError) as error:
        raise Misconfigured(
            "%(what_label)s: %(path)s does not hold a hex secret",
            params={"what_label": what, "path": str(path)},
        ) from error
    if len(secret) < min_bytes:
        raise Misconfigured(
            "%(what_label)s: the secret in %(path)s is too short",
            params={"what_label": what, "path": str(path)},
        )
    return secret
