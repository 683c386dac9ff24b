"""The bundle of long-lived services that the composition root builds once per process."""

from __future__ import annotations

from dataclasses import dataclass

from civicloud.core.config import Settings
from civicloud.core.db import Database
from civicloud.core.identity.passwords import Passwords
from civicloud.core.principals import PrincipalCache


@dataclass
class Services:
    """What ``civicloud.app`` built: settings, the database, password hashing, credential cache."""

    settings: Settings
    db: Database
    passwords: Passwords
    principals: PrincipalCache
