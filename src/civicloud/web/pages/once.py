"""One-time form tokens for pages (``core.once``): rendered into a consequential form, spent by
its handler beside the action, so that a form sent twice acts once."""

from __future__ import annotations

from fastapi import Request
from sqlalchemy.orm import Session

from civicloud.core import once

FIELD = "form_token"


def form_token(request: Request) -> str:
    """A fresh token for a form this page renders (``request`` for symmetry with CSRF)."""
    del request
    return once.new_token()


def spend_form_token(session: Session, request: Request, token: str) -> None:
    """Spend the form's token in the request's unit of work; raises
    :class:`~civicloud.core.once.FormAlreadySent` for a form sent before."""
    actor = getattr(request.state, "actor", None)
    once.spend(session=session, token=token, user_id=getattr(actor, "user_id", None))
