"""Fixtures of the money core's tests: a biller and a fake provider."""

from __future__ import annotations

import pytest
from sqlalchemy.orm import Session
from tests.factories.pay_money import FakeProvider, make_biller, provider_name

from civicloud.pay.models import Biller


@pytest.fixture
def biller(db_session: Session) -> Biller:
    """A biller under a fresh root tenant."""
    return make_biller(db_session)


@pytest.fixture
def provider() -> FakeProvider:
    """A fake provider with a name of its own, refunding successfully."""
    return FakeProvider(name=provider_name())
