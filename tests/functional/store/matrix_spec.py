"""Store's part of the authorisation matrix: its API and console routes."""

from __future__ import annotations

import uuid
from collections.abc import Mapping

from tests.factories.core import Side
from tests.functional.matrix import MatrixSpec

from civicloud.core.services import Services


def build(services: Services, side: Side) -> Mapping[str, uuid.UUID]:
    """Nothing yet: Store's routes take bucket names, not ids."""
    del services, side
    return {}


SPEC = MatrixSpec(name="store", build=build)
