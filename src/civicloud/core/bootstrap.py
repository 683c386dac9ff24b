"""Reference data every installation has: built-in regions and roles."""

from __future__ import annotations

from sqlalchemy.orm import Session

from civicloud.core.regions.service import ensure_builtin_regions
from civicloud.core.roles.service import ensure_builtin_roles


def ensure_reference_data(*, session: Session) -> None:
    """Create or refresh the built-in regions and roles (idempotent)."""
    ensure_builtin_regions(session=session)
    ensure_builtin_roles(session=session)
