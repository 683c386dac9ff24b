"""One-time form tokens: a form sent twice acts once, even when the two race; a form whose
action failed may be sent again."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from civicloud.core import once
from civicloud.core.db import utcnow
from civicloud.core.errors import InvalidInput
from civicloud.core.services import Services


def test_a_token_acts_once(db_session: Session) -> None:
    token = once.new_token()
    once.spend(session=db_session, token=token, user_id=None)
    with pytest.raises(once.FormAlreadySent):
        once.spend(session=db_session, token=token, user_id=None)


@pytest.mark.parametrize("token", ["", "short", "has spaces in it and more", "x" * 65, "é" * 30])
def test_a_missing_or_made_up_token_is_refused(db_session: Session, token: str) -> None:
    with pytest.raises(InvalidInput):
        once.spend(session=db_session, token=token, user_id=None)


def test_a_failed_action_leaves_its_token_unspent(core_services: Services) -> None:
    token = once.new_token()

    def refused_action() -> None:
        with core_services.db.unit_of_work() as session:
            once.spend(session=session, token=token, user_id=None)
            raise RuntimeError("the refund was refused")

    with pytest.raises(RuntimeError):
        refused_action()
    with core_services.db.unit_of_work() as session:
        once.spend(session=session, token=token, user_id=None)
    with pytest.raises(once.FormAlreadySent), core_services.db.unit_of_work() as session:
        once.spend(session=session, token=token, user_id=None)


def test_two_submissions_racing_act_once(core_services: Services) -> None:
    token = once.new_token()
    outcomes: list[str] = []
    barrier = threading.Barrier(2)

    def submit() -> None:
        try:
            with core_services.db.unit_of_work() as session:
                barrier.wait(timeout=10)
                once.spend(session=session, token=token, user_id=None)
            outcomes.append("acted")
        except once.FormAlreadySent:
            outcomes.append("already sent")
        except Exception as exc:  # a lost race must be the one error, not another
            outcomes.append(type(exc).__name__)

    threads = [threading.Thread(target=submit) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert sorted(outcomes) == ["acted", "already sent"]


def test_spent_tokens_are_forgotten_after_two_days(db_session: Session) -> None:
    old = once.FormUse(digest="0" * 64, user_id=None, used_at=utcnow() - timedelta(days=3))
    db_session.add(old)
    db_session.flush()
    once.spend(session=db_session, token=once.new_token(), user_id=None)
    left = db_session.scalar(
        select(func.count()).select_from(once.FormUse).where(once.FormUse.digest == "0" * 64)
    )
    assert left == 0
