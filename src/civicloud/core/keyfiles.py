"""Private key files in the data directory: written once, whole, readable by the owner only.

Signing keys and secrets (the receipt key, the sandbox's secret) are made on first use. Two
processes may start at the same moment; each writes its candidate to a private temporary file
and links it into place, so exactly one wins, both then use the winner's, and no reader ever
sees half a file (a plain create-then-write would let one read an empty file).
"""

from __future__ import annotations

import contextlib
import os
import uuid
from pathlib import Path


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
