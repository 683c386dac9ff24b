"""Forms that act once: a consequential form carries a one-time token, spent when it acts.

A person who presses "Refund" twice, or whose browser sends a form again after a timeout, must
not refund twice. Each such form is rendered with a fresh random token; the handler spends it
in the request's own unit of work (:func:`spend`), beside the action. Spending inserts the
token's digest under a primary key, so:

* a second submission of the same form is refused with :class:`FormAlreadySent` (its page
  says the form was already sent and where to look), whether it comes after the first one
  committed or races it (on PostgreSQL the second insert waits for the first transaction and
  then fails on the key);
* an action that fails rolls back with its unit of work and leaves the token unspent, so the
  corrected form can be sent again.

Tokens are stored as SHA-256 digests with the user who spent them and when. Each spend also
forgets the tokens spent longer ago than :data:`KEEP` (one indexed delete), so the table holds
two days of forms; a page left open longer than that gets a fresh token when it is reloaded.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import uuid
from datetime import datetime, timedelta

from sqlalchemy import String, delete
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, Session, mapped_column

from civicloud.core.db import Base, utcnow
from civicloud.core.errors import Conflict, InvalidInput

#: How long a spent token is remembered.
KEEP = timedelta(days=2)
_TOKEN = re.compile(r"[A-Za-z0-9_-]{20,64}")


class FormAlreadySent(Conflict):
    """The form was already sent, and acted; it does not act again."""

    code = "core.form_already_sent"
    title = "Form already sent"


class FormUse(Base):
    """A one-time form token that has been spent."""

    __tablename__ = "form_use"

    digest: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[uuid.UUID | None]
    used_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)


def new_token() -> str:
    """A fresh one-time token for a form being rendered."""
    return secrets.token_urlsafe(24)


def spend(*, session: Session, token: str, user_id: uuid.UUID | None) -> None:
    """Spend ``token`` in the caller's unit of work; refuse it if it was spent before.

    A missing or malformed token is refused too (:class:`InvalidInput`): a form meant to act
    once that arrives without its token was not made by this installation's page.
    """
    if not _TOKEN.fullmatch(token or ""):
        raise InvalidInput(
            "the form is missing its one-time token; reload the page", field="form_token"
        )
    digest = hashlib.sha256(token.encode()).hexdigest()
    if session.get(FormUse, digest) is not None:
        raise FormAlreadySent("this form was already sent; it acted the first time")
    prune(session=session)
    session.add(FormUse(digest=digest, user_id=user_id))
    try:
        # A racing twin inserted it meanwhile (PostgreSQL waits for it, then fails on the key);
        # the request's unit of work rolls back.
        session.flush()
    except IntegrityError as exc:
        raise FormAlreadySent("this form was already sent; it acted the first time") from exc


def prune(*, session: Session, now: datetime | None = None) -> int:
    """Forget tokens spent longer ago than :data:`KEEP`; the number forgotten."""
    cutoff = (now or utcnow()) - KEEP
    result = session.execute(delete(FormUse).where(FormUse.used_at < cutoff))
    return int(getattr(result, "rowcount", 0) or 0)
